//! JSONL: one JSON object per line, keys are columns (in the order first
//! seen, not sorted), blank lines skipped. `null` and absent keys are
//! missing values; numbers, strings and booleans are kept as their text;
//! arrays and objects are refused, since a feature is one scalar.

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

use super::{RawRow, RawTable, SourceError};

/// An object's members in document order (serde_json's own map sorts them
/// unless a crate-wide feature is on, and file order is the default
/// feature order).
struct Members(Vec<(String, Value)>);

/// Reads every line of a JSONL file as text cells.
pub(super) fn read(reader: impl Read, path: &Path) -> Result<RawTable, SourceError> {
    let mut table = RawTable::default();
    for (index, line) in BufReader::new(reader).lines().enumerate() {
        let number = index as u64 + 1;
        let syntax = |message: String| SourceError::Syntax {
            path: path.into(),
            line: number,
            message,
        };
        let line = line.map_err(|error| match error.kind() {
            std::io::ErrorKind::InvalidData => syntax("not valid UTF-8".to_owned()),
            _ => SourceError::Io {
                path: path.into(),
                error,
            },
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let Members(members) = serde_json::from_str(&line).map_err(|error| {
            // Each line is parsed alone, so serde's "line 1" would mislead.
            syntax(error.to_string().replace(" at line 1 column", " at column"))
        })?;
        let mut cells: Vec<Option<Box<str>>> = vec![None; table.columns.len()];
        for (key, value) in members {
            let column = match table.columns.iter().position(|column| *column == key) {
                Some(column) => column,
                None => {
                    table.columns.push(key.clone());
                    cells.push(None);
                    table.columns.len() - 1
                }
            };
            if cells[column].is_some() {
                return Err(syntax(format!("key '{key}' appears twice")));
            }
            cells[column] = match value {
                Value::Null => None,
                Value::Bool(flag) => Some(flag.to_string().into()),
                Value::Number(number) => Some(number.to_string().into()),
                Value::String(text) => {
                    let text = text.trim();
                    (!text.is_empty()).then(|| text.into())
                }
                Value::Array(_) | Value::Object(_) => {
                    return Err(SourceError::Value {
                        path: path.into(),
                        line: number,
                        column: key,
                        message: "arrays and objects are not features; flatten them first"
                            .to_owned(),
                    });
                }
            };
        }
        table.rows.push(RawRow {
            line: number,
            cells,
        });
    }
    Ok(table)
}

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Members, D::Error> {
        struct MembersVisitor;

        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }

        deserializer.deserialize_map(MembersVisitor)
    }
}
