//! Any JSON API, with features and the prediction named by JSON pointers
//! (RFC 6901) in a [`JsonSpec`].
//!
//! - **Rows**: the array at `rows` in the request, one row per element; the
//!   whole body is one row when `rows` is unset.
//! - **Features**: each feature's value is at its pointer relative to the
//!   row; a feature without a pointer in `features` is at `/<name>`
//!   (escaped). The names are the schema's features, else the spec's, else
//!   taken from the row itself: an object's keys (sorted), or positional
//!   `input_j` for a list, or one positional value for a scalar.
//! - **Prediction** (optional): with `response_rows`, element `i` of that
//!   array is row `i`'s answer and `prediction` points into it (`""` is the
//!   element itself). Without it, the value at `prediction` is the answer of
//!   a one-row request; for a batch it must be an array with one element per
//!   row. See [`prediction`](super::prediction) for how values are read.

use serde_json::Value;

use super::error::{DecodeError, Part};
use super::table::Table;
use super::{Answer, JsonSpec, ModelSchema, Parts, body, value};
use crate::mirror::Exchange;
use crate::observation::FeatureValue;

/// Decodes an exchange with the schema's JSON spec (the default spec when
/// it has none: whole body one row, features at `/<name>`, no prediction).
pub(crate) fn decode(exchange: &Exchange, schema: &ModelSchema) -> Result<Parts, DecodeError> {
    let default = JsonSpec::default();
    let spec = schema.json.as_ref().unwrap_or(&default);
    let request: Value = body::json(Part::Request, body::request(exchange)?)?;
    let rows: Vec<&Value> = match &spec.rows {
        Some(pointer) => array_at(&request, pointer, Part::Request)?.iter().collect(),
        None => vec![&request],
    };
    let names: Vec<String> = if !schema.features.is_empty() {
        schema.features.clone()
    } else {
        spec.features.iter().map(|f| f.name.clone()).collect()
    };
    let table = if names.is_empty() {
        discovered(&rows)
    } else {
        let pointers = names
            .iter()
            .map(|name| pointer_for(spec, name))
            .collect::<Result<Vec<_>, _>>()?;
        let values = rows
            .iter()
            .map(|row| {
                pointers
                    .iter()
                    .map(|p| row.pointer(p).map_or(FeatureValue::Missing, value::scalar))
                    .collect()
            })
            .collect();
        Table::named(names, values)
    };
    let count = rows.len();
    Ok(Parts {
        table,
        version: None,
        answer: response(exchange, spec, count),
    })
}

/// Names from the rows themselves, when none are configured.
fn discovered(rows: &[&Value]) -> Table {
    if rows.iter().all(|r| r.is_object()) && !rows.is_empty() {
        let mut names: Vec<String> = Vec::new();
        for row in rows {
            for key in row.as_object().into_iter().flat_map(|o| o.keys()) {
                if !names.contains(key) {
                    names.push(key.clone());
                }
            }
        }
        let values = rows
            .iter()
            .map(|row| {
                names
                    .iter()
                    .map(|n| row.get(n).map_or(FeatureValue::Missing, value::scalar))
                    .collect()
            })
            .collect();
        return Table::named(names, values);
    }
    let values = rows
        .iter()
        .map(|row| {
            let mut values = Vec::new();
            value::flatten(row, &mut values);
            values
        })
        .collect();
    Table::positional("input", values)
}

fn pointer_for(spec: &JsonSpec, name: &str) -> Result<String, DecodeError> {
    match spec.features.iter().find(|f| f.name == name) {
        Some(f) => checked(&f.pointer, Part::Request).map(str::to_owned),
        None => Ok(format!("/{}", value::pointer_token(name))),
    }
}

/// A pointer must be empty or start with `/`.
fn checked(pointer: &str, part: Part) -> Result<&str, DecodeError> {
    if pointer.is_empty() || pointer.starts_with('/') {
        Ok(pointer)
    } else {
        Err(DecodeError::InvalidField {
            part,
            field: pointer.to_owned(),
            detail: "a JSON pointer must be empty or start with `/`".to_owned(),
        })
    }
}

fn at<'a>(document: &'a Value, pointer: &str, part: Part) -> Result<&'a Value, DecodeError> {
    document
        .pointer(checked(pointer, part)?)
        .ok_or_else(|| DecodeError::MissingField {
            part,
            field: pointer.to_owned(),
        })
}

fn array_at<'a>(
    document: &'a Value,
    pointer: &str,
    part: Part,
) -> Result<&'a Vec<Value>, DecodeError> {
    at(document, pointer, part)?
        .as_array()
        .ok_or_else(|| DecodeError::InvalidField {
            part,
            field: pointer.to_owned(),
            detail: "expected a list of rows".to_owned(),
        })
}

fn response(
    exchange: &Exchange,
    spec: &JsonSpec,
    rows: usize,
) -> Result<Option<Answer>, DecodeError> {
    let Some(pointer) = &spec.prediction else {
        return Ok(None);
    };
    let Some(body) = body::response(exchange)? else {
        return Ok(None);
    };
    let response: Value = body::json(Part::Response, body)?;
    let predictions = match &spec.response_rows {
        Some(rows_pointer) => array_at(&response, rows_pointer, Part::Response)?
            .iter()
            .map(|row| at(row, pointer, Part::Response).map(value::prediction))
            .collect::<Result<Vec<_>, _>>()?,
        None => {
            let answer = at(&response, pointer, Part::Response)?;
            match answer {
                _ if rows == 1 => vec![value::prediction(answer)],
                Value::Array(items) => items.iter().map(value::prediction).collect(),
                single => vec![value::prediction(single)],
            }
        }
    };
    Ok(Some(Answer {
        predictions,
        version: None,
    }))
}
