//! CSV: the first row names the columns; every other row must have as many
//! fields. Cells are trimmed; an empty cell is a missing value.

use std::io::Read;
use std::path::Path;

use super::{RawRow, RawTable, SourceError};

/// Reads every record of a CSV file as text.
pub(super) fn read(reader: impl Read, path: &Path) -> Result<RawTable, SourceError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(reader);
    let columns: Vec<String> = reader
        .headers()
        .map_err(|error| syntax(error, path))?
        .iter()
        .map(str::to_owned)
        .collect();
    if columns.iter().all(String::is_empty) {
        return Err(SourceError::Syntax {
            path: path.into(),
            line: 1,
            message: "no header row naming the columns".to_owned(),
        });
    }
    for (i, name) in columns.iter().enumerate() {
        if name.is_empty() || columns[..i].contains(name) {
            return Err(SourceError::Syntax {
                path: path.into(),
                line: 1,
                message: format!("header column {} is empty or repeated: '{name}'", i + 1),
            });
        }
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|error| syntax(error, path))?;
        let line = record.position().map_or(0, csv::Position::line);
        let cells = record
            .iter()
            .map(|cell| (!cell.is_empty()).then(|| Box::from(cell)))
            .collect();
        rows.push(RawRow { line, cells });
    }
    Ok(RawTable { columns, rows })
}

fn syntax(error: csv::Error, path: &Path) -> SourceError {
    let line = error.position().map_or(0, csv::Position::line);
    let message = match error.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("{len} fields, but the header has {expected_len}"),
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_owned(),
        _ => error.to_string(),
    };
    match error.into_kind() {
        csv::ErrorKind::Io(error) => SourceError::Io {
            path: path.into(),
            error,
        },
        _ => SourceError::Syntax {
            path: path.into(),
            line,
            message,
        },
    }
}
