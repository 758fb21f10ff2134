//! Rows of values as a decoder found them, and binding them onto a model's
//! configured features.
//!
//! Decoders produce a [`Table`] whose columns are either *named* (several
//! 1-D tensors, JSON objects, columnar inputs) or *positional* (one `[B, F]`
//! tensor, lists of lists, embedding vectors). Binding maps it onto the
//! schema's feature order:
//!
//! - named columns match features by name; a configured feature that is
//!   absent becomes [`FeatureValue::Missing`]; names the schema does not
//!   have are reported as extra;
//! - positional column `j` is the schema's feature `j`; columns past the
//!   schema's last feature are extra, named `{prefix}_{j}`;
//! - a schema without features takes the table's names (positional columns
//!   are named `{prefix}_0..{prefix}_{F-1}`), so the pipeline can freeze them.
//!
//! Numbers in categorical features become categories (`3.0` → `"3"`).

use std::collections::HashMap;
use std::sync::Arc;

use super::ModelSchema;
use crate::observation::FeatureValue;

/// How a table's columns are named.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Names {
    /// By position; unnamed columns are called `{prefix}_{j}`.
    Positional(&'static str),
    /// One name per column.
    Named(Vec<String>),
}

/// Rows of values; for named tables every row has one value per name,
/// positional rows may be ragged (short rows are padded with `Missing`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Table {
    /// How the columns are named.
    pub names: Names,
    /// One vector of values per row.
    pub rows: Vec<Vec<FeatureValue>>,
}

/// A table bound to a schema.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Bound {
    /// Feature names, in the order of each row's values.
    pub features: Vec<String>,
    /// Names found that the schema does not configure.
    pub extra: Vec<String>,
    /// One value per feature per row.
    pub rows: Vec<Vec<FeatureValue>>,
}

// === impl Table ===

impl Table {
    /// A table whose columns are named by position.
    pub fn positional(prefix: &'static str, rows: Vec<Vec<FeatureValue>>) -> Table {
        Table {
            names: Names::Positional(prefix),
            rows,
        }
    }

    /// A table with named columns.
    pub fn named(names: Vec<String>, rows: Vec<Vec<FeatureValue>>) -> Table {
        Table {
            names: Names::Named(names),
            rows,
        }
    }

    /// Maps the table onto the schema's features (see the module docs).
    pub fn bind(self, schema: &ModelSchema) -> Bound {
        let mut bound = match self.names {
            Names::Positional(prefix) => positional(prefix, self.rows, &schema.features),
            Names::Named(names) => named(&names, self.rows, &schema.features),
        };
        let categorical: Vec<bool> = bound
            .features
            .iter()
            .map(|f| schema.categorical.iter().any(|c| c == f))
            .collect();
        if categorical.contains(&true) {
            for row in &mut bound.rows {
                for (value, _) in row.iter_mut().zip(&categorical).filter(|(_, c)| **c) {
                    if let FeatureValue::Number(x) = value {
                        *value = FeatureValue::Category(category_label(*x));
                    }
                }
            }
        }
        bound
    }
}

/// The name of positional column `j`.
pub(crate) fn column_name(prefix: &str, j: usize) -> String {
    format!("{prefix}_{j}")
}

fn positional(prefix: &str, rows: Vec<Vec<FeatureValue>>, features: &[String]) -> Bound {
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let (features, extra) = if features.is_empty() {
        let names = (0..width).map(|j| column_name(prefix, j)).collect();
        (names, Vec::new())
    } else {
        let extra = (features.len()..width)
            .map(|j| column_name(prefix, j))
            .collect();
        (features.to_vec(), extra)
    };
    let n = features.len();
    let rows = rows
        .into_iter()
        .map(|mut row| {
            row.truncate(n);
            row.resize(n, FeatureValue::Missing);
            row
        })
        .collect();
    Bound {
        features,
        extra,
        rows,
    }
}

fn named(names: &[String], rows: Vec<Vec<FeatureValue>>, features: &[String]) -> Bound {
    let mut first: HashMap<&str, usize> = HashMap::with_capacity(names.len());
    let mut found = Vec::with_capacity(names.len());
    for (j, name) in names.iter().enumerate() {
        if !first.contains_key(name.as_str()) {
            first.insert(name, j);
            found.push(name.clone());
        }
    }
    let (features, extra) = if features.is_empty() {
        (found, Vec::new())
    } else {
        let extra = found
            .into_iter()
            .filter(|n| !features.contains(n))
            .collect();
        (features.to_vec(), extra)
    };
    let columns: Vec<Option<usize>> = features
        .iter()
        .map(|f| first.get(f.as_str()).copied())
        .collect();
    let rows = rows
        .into_iter()
        .map(|row| {
            columns
                .iter()
                .map(|c| {
                    c.and_then(|j| row.get(j))
                        .cloned()
                        .unwrap_or(FeatureValue::Missing)
                })
                .collect()
        })
        .collect();
    Bound {
        features,
        extra,
        rows,
    }
}

/// The category a number stands for: integers without a fraction part.
fn category_label(x: f64) -> Arc<str> {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        Arc::from(format!("{}", x as i64))
    } else {
        Arc::from(format!("{x}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FeatureValue::{Category, Missing, Number};

    fn schema(features: &[&str], categorical: &[&str]) -> ModelSchema {
        ModelSchema {
            features: features.iter().map(|s| s.to_string()).collect(),
            categorical: categorical.iter().map(|s| s.to_string()).collect(),
            ..ModelSchema::new("m")
        }
    }

    #[test]
    fn positional_columns_take_schema_names_and_report_extras() {
        let table = Table::positional("input", vec![vec![Number(1.0), Number(2.0), Number(3.0)]]);
        let bound = table.bind(&schema(&["a", "b"], &[]));
        assert_eq!(bound.features, ["a", "b"]);
        assert_eq!(bound.extra, ["input_2"]);
        assert_eq!(bound.rows, [vec![Number(1.0), Number(2.0)]]);
    }

    #[test]
    fn positional_without_schema_names_columns_and_pads_ragged_rows() {
        let table = Table::positional(
            "dim",
            vec![vec![Number(1.0)], vec![Number(1.0), Number(2.0)]],
        );
        let bound = table.bind(&schema(&[], &[]));
        assert_eq!(bound.features, ["dim_0", "dim_1"]);
        assert_eq!(bound.rows[0], [Number(1.0), Missing]);
    }

    #[test]
    fn named_columns_map_by_name_with_missing_and_extra() {
        let names = vec!["b".to_owned(), "x".to_owned(), "b".to_owned()];
        let table = Table::named(names, vec![vec![Number(2.0), Number(9.0), Number(7.0)]]);
        let bound = table.bind(&schema(&["a", "b"], &[]));
        assert_eq!(bound.features, ["a", "b"]);
        assert_eq!(bound.extra, ["x"]);
        assert_eq!(bound.rows, [vec![Missing, Number(2.0)]]);
    }

    #[test]
    fn numbers_in_categorical_features_become_labels() {
        let table = Table::positional("input", vec![vec![Number(3.0), Number(0.5)]]);
        let bound = table.bind(&schema(&["c", "d"], &["c", "d"]));
        assert_eq!(
            bound.rows[0],
            [Category("3".into()), Category("0.5".into())]
        );
    }
}
