//! Reference data from files: CSV (a header row names the columns) or JSONL
//! (one JSON object per line), turned into rows of [`FeatureValue`]s for a
//! [`BaselineBuilder`]. The only part of the baseline that does I/O.
//!
//! Column kinds: `--categorical` and `--numeric` force a kind; any other
//! column is numeric when every non-empty value parses as an `f64` (Rust's
//! grammar, so `1e-3`, `inf` and `NaN` count as numbers; NaN and ±Inf are
//! then profiled as invalid), categorical otherwise. Markers such as `NA`
//! are not special: they make a column categorical, which the summary
//! shows. Empty cells, JSON `null` and absent keys are missing values.
//!
//! Both formats are read into memory as text first, because a column's
//! kind is known only after its last value; then converted.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::{Baseline, BaselineBuilder, BaselineError, BuildOptions, FeatureKind, LineageInputs};
use crate::observation::{FeatureValue, Prediction};

mod csv_file;
mod jsonl_file;

/// Which columns to profile, and how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceOptions {
    /// Feature columns in model order; `None` takes every column in file
    /// order except the prediction column.
    pub features: Option<Vec<String>>,
    /// Columns forced categorical (e.g. numeric codes such as zip codes).
    pub categorical: Vec<String>,
    /// Columns forced numeric: a value that is not a number is an error
    /// instead of turning the column categorical.
    pub numeric: Vec<String>,
    /// A column holding the model's prediction: class indices (every value
    /// a non-negative integer) or else numeric scores.
    pub prediction: Option<String>,
}

/// Rows read from a file, ready for a [`BaselineBuilder`].
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Feature names and kinds, in the requested order.
    pub features: Vec<(String, FeatureKind)>,
    /// One row of values per data line, in feature order.
    pub rows: Vec<Vec<FeatureValue>>,
    /// One entry per row when a prediction column was given, else empty.
    pub predictions: Vec<Option<Prediction>>,
    /// Hex SHA-256 of the file's bytes.
    pub sha256: String,
}

/// Why reference data could not be read. Messages name the file, and the
/// line and column when there is one.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The file could not be opened or read.
    #[error("cannot read {}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error (in the message, so not also a `source()`
        /// that `{:#}` would print twice).
        error: std::io::Error,
    },
    /// The file name says neither CSV nor JSONL.
    #[error("cannot tell the format of {}: name it *.csv, *.jsonl or *.ndjson", path.display())]
    Format {
        /// The file.
        path: PathBuf,
    },
    /// A line that is not valid CSV or JSON, or a ragged CSV line.
    #[error("{}:{line}: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// A value that cannot be used where it is.
    #[error("{}:{line}: column '{column}': {message}", path.display())]
    Value {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// The column (CSV header name or JSON key).
        column: String,
        /// What is wrong.
        message: String,
    },
    /// The options name columns the file does not have, or contradict.
    #[error("{}: {message}", path.display())]
    Columns {
        /// The file.
        path: PathBuf,
        /// Every problem found.
        message: String,
    },
}

/// Text cells as read, before kinds are known.
#[derive(Debug, Default)]
struct RawTable {
    columns: Vec<String>,
    rows: Vec<RawRow>,
}

#[derive(Debug)]
struct RawRow {
    line: u64,
    /// By column index; `None` (or past the end) is a missing value.
    cells: Vec<Option<Box<str>>>,
}

/// Hashes every byte the parser reads, so the digest covers exactly the
/// bytes profiled, with one pass over the file.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

/// Reads `path` and builds its baseline: the whole `sidewatch baseline
/// build` minus printing and saving.
pub fn build_from_file(
    model: &str,
    path: &Path,
    options: &SourceOptions,
    build: BuildOptions,
    built_at: SystemTime,
) -> Result<Baseline, BaselineError> {
    let table = read(path, options)?;
    let mut builder = BaselineBuilder::new(model, table.features, build);
    for (i, row) in table.rows.iter().enumerate() {
        builder.add_row(row, table.predictions.get(i).and_then(Option::as_ref));
    }
    builder.finish(LineageInputs::file(path, table.sha256, built_at))
}

/// Reads a CSV or JSONL file (by extension) into a [`Table`].
pub fn read(path: &Path, options: &SourceOptions) -> Result<Table, SourceError> {
    let extension = path
        .extension()
        .and_then(|extension| extension.to_str())
        .map(str::to_ascii_lowercase);
    let is_csv = match extension.as_deref() {
        Some("csv") => true,
        Some("jsonl" | "ndjson") => false,
        _ => return Err(SourceError::Format { path: path.into() }),
    };
    let io = |error| SourceError::Io {
        path: path.into(),
        error,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut reader = HashingReader {
        inner: std::io::BufReader::new(file),
        hasher: Sha256::new(),
    };
    let raw = if is_csv {
        csv_file::read(&mut reader, path)?
    } else {
        jsonl_file::read(&mut reader, path)?
    };
    // Parsers may stop before the end (e.g. trailing blank lines): hash it all.
    std::io::copy(&mut reader, &mut std::io::sink()).map_err(io)?;
    let sha256 = hex::encode(reader.hasher.finalize());
    convert(raw, path, options, sha256)
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buffer)?;
        self.hasher.update(&buffer[..n]);
        Ok(n)
    }
}

/// Selects, types and converts the raw cells.
fn convert(
    raw: RawTable,
    path: &Path,
    options: &SourceOptions,
    sha256: String,
) -> Result<Table, SourceError> {
    let (selected, prediction) = select(&raw.columns, path, options)?;
    let mut features = Vec::with_capacity(selected.len());
    for &column in &selected {
        let name = &raw.columns[column];
        let kind = if options.categorical.contains(name) {
            FeatureKind::Categorical
        } else if options.numeric.contains(name)
            || raw
                .rows
                .iter()
                .all(|row| cell(row, column).is_none_or(is_number))
        {
            FeatureKind::Numeric
        } else {
            FeatureKind::Categorical
        };
        features.push((name.clone(), kind));
    }
    let mut rows = Vec::with_capacity(raw.rows.len());
    for row in &raw.rows {
        let mut values = Vec::with_capacity(selected.len());
        for (&column, (name, kind)) in selected.iter().zip(&features) {
            values.push(match (cell(row, column), kind) {
                (None, _) => FeatureValue::Missing,
                (Some(text), FeatureKind::Categorical) => FeatureValue::Category(Arc::from(text)),
                (Some(text), FeatureKind::Numeric) => match text.parse() {
                    Ok(x) => FeatureValue::Number(x),
                    Err(_) => {
                        return Err(SourceError::Value {
                            path: path.into(),
                            line: row.line,
                            column: name.clone(),
                            message: format!("'{text}' is not a number (the column is --numeric)"),
                        });
                    }
                },
            });
        }
        rows.push(values);
    }
    let predictions = match prediction {
        Some(column) => predictions(&raw, column, path)?,
        None => Vec::new(),
    };
    Ok(Table {
        features,
        rows,
        predictions,
        sha256,
    })
}

fn cell(row: &RawRow, column: usize) -> Option<&str> {
    row.cells.get(column).and_then(Option::as_deref)
}

fn is_number(text: &str) -> bool {
    text.parse::<f64>().is_ok()
}

/// Column indexes of the features (in order) and of the prediction; every
/// inconsistency between the options and the file, reported together.
fn select(
    columns: &[String],
    path: &Path,
    options: &SourceOptions,
) -> Result<(Vec<usize>, Option<usize>), SourceError> {
    let index = |name: &String| columns.iter().position(|column| column == name);
    let mut problems = Vec::new();
    let prediction = options.prediction.as_ref().and_then(|name| {
        let found = index(name);
        if found.is_none() {
            problems.push(format!("there is no prediction column '{name}'"));
        }
        found
    });
    let selected: Vec<usize> = match &options.features {
        Some(names) => {
            let unknown: Vec<&str> = names
                .iter()
                .filter(|name| index(name).is_none())
                .map(String::as_str)
                .collect();
            if !unknown.is_empty() {
                problems.push(format!(
                    "--features names unknown columns: {}",
                    unknown.join(", ")
                ));
            }
            for (i, name) in names.iter().enumerate() {
                if names[..i].contains(name) {
                    problems.push(format!("--features lists '{name}' twice"));
                }
            }
            names.iter().filter_map(index).collect()
        }
        None => (0..columns.len())
            .filter(|&i| Some(i) != prediction)
            .collect(),
    };
    if let Some(column) = prediction.filter(|column| selected.contains(column)) {
        problems.push(format!(
            "'{}' cannot be both a feature and the prediction",
            columns[column]
        ));
    }
    let is_selected = |name: &String| index(name).is_some_and(|i| selected.contains(&i));
    for (flag, names) in [
        ("--categorical", &options.categorical),
        ("--numeric", &options.numeric),
    ] {
        for name in names.iter().filter(|name| !is_selected(name)) {
            problems.push(format!(
                "{flag} names '{name}', which is not a feature column"
            ));
        }
    }
    for name in options
        .categorical
        .iter()
        .filter(|name| options.numeric.contains(name))
    {
        problems.push(format!(
            "'{name}' cannot be both --categorical and --numeric"
        ));
    }
    if problems.is_empty() {
        Ok((selected, prediction))
    } else {
        let message = format!("{} (columns: {})", problems.join("; "), columns.join(", "));
        Err(SourceError::Columns {
            path: path.into(),
            message,
        })
    }
}

/// The prediction column as classes when every value is a `u32`, else as
/// scores when every value is a number; anything else is an error.
fn predictions(
    raw: &RawTable,
    column: usize,
    path: &Path,
) -> Result<Vec<Option<Prediction>>, SourceError> {
    let texts = || raw.rows.iter().map(|row| (row.line, cell(row, column)));
    let classes = texts().all(|(_, text)| text.is_none_or(|text| text.parse::<u32>().is_ok()));
    let mut predictions = Vec::with_capacity(raw.rows.len());
    for (line, text) in texts() {
        let Some(text) = text else {
            predictions.push(None);
            continue;
        };
        let prediction = if classes {
            text.parse().ok().map(|class| Prediction {
                class: Some(class),
                ..Prediction::default()
            })
        } else {
            text.parse().ok().map(|score| Prediction {
                score: Some(score),
                ..Prediction::default()
            })
        };
        match prediction {
            Some(prediction) => predictions.push(Some(prediction)),
            None => {
                return Err(SourceError::Value {
                    path: path.into(),
                    line,
                    column: raw.columns[column].clone(),
                    message: format!(
                        "'{text}' is not a prediction: use class indices (0, 1, …) or numeric scores"
                    ),
                });
            }
        }
    }
    Ok(predictions)
}
