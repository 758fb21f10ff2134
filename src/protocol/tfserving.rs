//! TensorFlow Serving / KServe v1 REST:
//! `POST /v1/models/{m}[/versions/{v}]:predict`.
//!
//! Requests in the row format `{"instances": [...]}` have one row per
//! element: a list (flattened, positional columns `input_0..`), a scalar
//! (one positional column), or an object `{feature: value}` (named columns;
//! a list value of length `W > 1` gives `{feature}_0..{feature}_{W-1}`).
//! The columnar format `{"inputs": ...}` is an object of name → list over
//! rows (named columns; all lists must have the same length), or a list of
//! rows (positional), or a single value (one row).
//!
//! Responses `{"predictions": [...]}` (or `{"outputs": ...}`) give one
//! prediction per element (see [`prediction`](super::prediction)). When a
//! prediction is an object, or `outputs` is an object of named outputs, the
//! output used is the schema's `output`, else the first of
//! [`PREFERRED_OUTPUTS`] present, else the first name in sorted order.

use serde_json::{Map, Value};

use super::error::{DecodeError, Part};
use super::table::{Table, column_name};
use super::{Answer, ModelSchema, Parts, body, value};
use crate::mirror::Exchange;
use crate::observation::{FeatureValue, Prediction};

/// Output names preferred, in order, when the schema names none.
pub const PREFERRED_OUTPUTS: [&str; 6] = [
    "probabilities",
    "probs",
    "scores",
    "logits",
    "predictions",
    "outputs",
];

/// What a `/v1/models/...:predict` path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Route<'a> {
    /// The model's name.
    pub model: &'a str,
    /// The version, when the path has one.
    pub version: Option<&'a str>,
}

/// Parses a `/v1/models/{m}[/versions/{v}]:predict` path.
pub(crate) fn route(path: &str) -> Option<Route<'_>> {
    let rest = path.strip_prefix("/v1/models/")?.strip_suffix(":predict")?;
    let segments: Vec<&str> = rest.split('/').collect();
    let route = match segments.as_slice() {
        [model] => Route {
            model,
            version: None,
        },
        [model, "versions", version] => Route {
            model,
            version: Some(version),
        },
        [model, "labels", _] => Route {
            model,
            version: None,
        },
        _ => return None,
    };
    (!route.model.is_empty()).then_some(route)
}

/// Decodes a predict exchange.
pub(crate) fn decode(exchange: &Exchange, schema: &ModelSchema) -> Result<Parts, DecodeError> {
    let path = exchange.request.uri.path();
    let route = route(path).ok_or_else(|| DecodeError::NotInference {
        path: path.to_owned(),
    })?;
    let request: Value = body::json(Part::Request, body::request(exchange)?)?;
    let table = if let Some(instances) = request.get("instances") {
        rows(instances)?
    } else if let Some(inputs) = request.get("inputs") {
        match inputs {
            Value::Object(columns) => columnar(columns)?,
            Value::Array(_) => rows(inputs)?,
            single => rows(&Value::Array(vec![single.clone()]))?,
        }
    } else {
        return Err(DecodeError::MissingField {
            part: Part::Request,
            field: "instances".to_owned(),
        });
    };
    Ok(Parts {
        table,
        version: route.version.map(str::to_owned),
        answer: response(exchange, schema),
    })
}

/// Row format: one row per element.
fn rows(instances: &Value) -> Result<Table, DecodeError> {
    let Value::Array(items) = instances else {
        return Err(invalid("instances", "expected a list of rows"));
    };
    let objects = items.iter().filter(|i| i.is_object()).count();
    if objects == 0 {
        let rows = items
            .iter()
            .map(|item| {
                let mut row = Vec::new();
                value::flatten(item, &mut row);
                row
            })
            .collect();
        return Ok(Table::positional("input", rows));
    }
    if objects != items.len() {
        return Err(invalid("instances", "rows mix objects and values"));
    }
    let rows = items
        .iter()
        .map(|item| {
            item.as_object()
                .map(|object| object.iter().flat_map(|(k, v)| entry(k, v)).collect())
                .unwrap_or_default()
        })
        .collect();
    Ok(named(rows))
}

/// Columnar format: name → list over rows.
fn columnar(columns: &Map<String, Value>) -> Result<Table, DecodeError> {
    let mut batch: Option<(usize, &str)> = None;
    let mut rows: Vec<Vec<(String, FeatureValue)>> = Vec::new();
    for (name, column) in columns {
        let cells = match column {
            Value::Array(cells) => cells.as_slice(),
            single => std::slice::from_ref(single),
        };
        match batch {
            None => {
                batch = Some((cells.len(), name));
                rows.resize_with(cells.len(), Vec::new);
            }
            Some((expected, _)) if expected != cells.len() => {
                return Err(DecodeError::BatchMismatch {
                    what: format!("input `{name}`"),
                    expected,
                    found: cells.len(),
                });
            }
            Some(_) => {}
        }
        for (row, cell) in rows.iter_mut().zip(cells) {
            row.extend(entry(name, cell));
        }
    }
    Ok(named(rows))
}

/// The named columns one `name: value` entry gives.
fn entry(name: &str, cell: &Value) -> Vec<(String, FeatureValue)> {
    let mut values = Vec::new();
    value::flatten(cell, &mut values);
    if values.len() == 1 {
        values.into_iter().map(|v| (name.to_owned(), v)).collect()
    } else {
        values
            .into_iter()
            .enumerate()
            .map(|(j, v)| (column_name(name, j), v))
            .collect()
    }
}

/// Rows of `(name, value)` pairs as a named table: the union of the names
/// in first-seen order, `Missing` where a row lacks one.
fn named(pairs: Vec<Vec<(String, FeatureValue)>>) -> Table {
    let mut names: Vec<String> = Vec::new();
    let mut index = std::collections::HashMap::new();
    for (name, _) in pairs.iter().flatten() {
        if !index.contains_key(name) {
            index.insert(name.clone(), names.len());
            names.push(name.clone());
        }
    }
    let rows = pairs
        .into_iter()
        .map(|row| {
            let mut values = vec![FeatureValue::Missing; names.len()];
            for (name, value) in row {
                if let Some(slot) = index.get(&name).and_then(|&j| values.get_mut(j)) {
                    *slot = value;
                }
            }
            values
        })
        .collect();
    Table::named(names, rows)
}

fn response(exchange: &Exchange, schema: &ModelSchema) -> Result<Option<Answer>, DecodeError> {
    let Some(body) = body::response(exchange)? else {
        return Ok(None);
    };
    let response: Value = body::json(Part::Response, body)?;
    let output = response
        .get("predictions")
        .or_else(|| response.get("outputs"))
        .ok_or_else(|| DecodeError::MissingField {
            part: Part::Response,
            field: "predictions".to_owned(),
        })?;
    let predictions = match output {
        Value::Array(items) => items
            .iter()
            .map(|i| row_prediction(i, schema))
            .collect::<Result<_, _>>()?,
        Value::Object(named) => match select(named, schema)? {
            Value::Array(items) => items.iter().map(value::prediction).collect(),
            single => vec![value::prediction(single)],
        },
        single => vec![value::prediction(single)],
    };
    Ok(Some(Answer {
        predictions,
        version: None,
    }))
}

fn row_prediction(item: &Value, schema: &ModelSchema) -> Result<Option<Prediction>, DecodeError> {
    match item {
        Value::Object(named) => Ok(value::prediction(select(named, schema)?)),
        other => Ok(value::prediction(other)),
    }
}

/// The output to use among named ones (see the module docs).
fn select<'a>(
    named: &'a Map<String, Value>,
    schema: &ModelSchema,
) -> Result<&'a Value, DecodeError> {
    let found = match &schema.output {
        Some(wanted) => named.get(wanted),
        None => PREFERRED_OUTPUTS
            .iter()
            .find_map(|name| named.get(*name))
            .or_else(|| named.values().next()),
    };
    found.ok_or_else(|| DecodeError::MissingOutput {
        detail: match &schema.output {
            Some(wanted) => format!("no output named `{wanted}`"),
            None => "no outputs".to_owned(),
        },
    })
}

fn invalid(field: &str, detail: &str) -> DecodeError {
    DecodeError::InvalidField {
        part: Part::Request,
        field: field.to_owned(),
        detail: detail.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_name_model_and_version() {
        assert_eq!(
            route("/v1/models/m:predict"),
            Some(Route {
                model: "m",
                version: None
            })
        );
        assert_eq!(
            route("/v1/models/m/versions/2:predict").and_then(|r| r.version),
            Some("2")
        );
        assert_eq!(route("/v1/models/m"), None);
        assert_eq!(route("/v1/models/:predict"), None);
        assert_eq!(route("/v1/models/m:classify"), None);
    }
}
