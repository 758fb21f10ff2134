//! Tensors of the KServe v2 protocol (REST, binary and gRPC alike): their
//! datatypes, shape checks, JSON elements, and how input tensors become rows
//! and an output tensor becomes predictions.
//!
//! **Rows.** The first dimension is the batch: a tensor of shape `[B, ...]`
//! gives `B` rows of `product(...)` values (a scalar tensor is one row of one
//! value). Input tensors become a [`Table`]:
//!
//! - several tensors are *named* columns: a tensor of width 1 (`[B]` or
//!   `[B, 1]`) is the column of its name, a wider one gives the columns
//!   `{name}_0..{name}_{W-1}`; all must share `B`;
//! - a single tensor of width 1 whose name is a configured feature is that
//!   named column;
//! - any other single tensor is *positional* (`[B, F]` gives `F` columns,
//!   named by the schema, else `input_0..input_{F-1}`).
//!
//! **Shapes** are checked against the data actually present before any row
//! is built: negative dimensions and products that overflow are
//! `bad_shape`, a product that differs from the element count is
//! `shape_mismatch`. Nothing is ever allocated from a declared shape.

use std::sync::Arc;

use serde_json::Value;

use super::ModelSchema;
use super::error::DecodeError;
use super::prediction;
use super::table::{Table, column_name};
use crate::observation::{FeatureValue, Prediction};

/// A KServe v2 tensor datatype.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Datatype {
    Bool,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Int8,
    Int16,
    Int32,
    Int64,
    Fp16,
    Bf16,
    Fp32,
    Fp64,
    Bytes,
}

/// A decoded tensor: its values in row-major order, shape checked.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tensor {
    /// The tensor's name.
    pub name: String,
    /// The tensor's datatype.
    pub datatype: Datatype,
    /// Rows (the first dimension; 1 for a scalar).
    pub batch: usize,
    /// Values per row.
    pub width: usize,
    /// `batch * width` values.
    pub values: Vec<FeatureValue>,
}

// === impl Datatype ===

impl Datatype {
    /// Parses a datatype name as the protocol spells it.
    pub fn parse(tensor: &str, name: &str) -> Result<Datatype, DecodeError> {
        Ok(match name {
            "BOOL" => Datatype::Bool,
            "UINT8" => Datatype::Uint8,
            "UINT16" => Datatype::Uint16,
            "UINT32" => Datatype::Uint32,
            "UINT64" => Datatype::Uint64,
            "INT8" => Datatype::Int8,
            "INT16" => Datatype::Int16,
            "INT32" => Datatype::Int32,
            "INT64" => Datatype::Int64,
            "FP16" => Datatype::Fp16,
            "BF16" => Datatype::Bf16,
            "FP32" => Datatype::Fp32,
            "FP64" => Datatype::Fp64,
            "BYTES" => Datatype::Bytes,
            _ => {
                return Err(DecodeError::UnknownDatatype {
                    tensor: tensor.to_owned(),
                    datatype: name.to_owned(),
                });
            }
        })
    }

    /// Bytes per element in raw form; `None` for BYTES (length-prefixed).
    pub fn size(self) -> Option<usize> {
        match self {
            Datatype::Bool | Datatype::Uint8 | Datatype::Int8 => Some(1),
            Datatype::Uint16 | Datatype::Int16 | Datatype::Fp16 | Datatype::Bf16 => Some(2),
            Datatype::Uint32 | Datatype::Int32 | Datatype::Fp32 => Some(4),
            Datatype::Uint64 | Datatype::Int64 | Datatype::Fp64 => Some(8),
            Datatype::Bytes => None,
        }
    }

    /// Whether values are whole numbers (booleans count as 0/1).
    pub fn is_integer(self) -> bool {
        !matches!(
            self,
            Datatype::Fp16 | Datatype::Bf16 | Datatype::Fp32 | Datatype::Fp64 | Datatype::Bytes
        )
    }

    /// The range of an integer type, as floats.
    fn range(self) -> Option<(f64, f64)> {
        Some(match self {
            Datatype::Bool => (0.0, 1.0),
            Datatype::Uint8 => (0.0, f64::from(u8::MAX)),
            Datatype::Uint16 => (0.0, f64::from(u16::MAX)),
            Datatype::Uint32 => (0.0, f64::from(u32::MAX)),
            Datatype::Uint64 => (0.0, u64::MAX as f64),
            Datatype::Int8 => (f64::from(i8::MIN), f64::from(i8::MAX)),
            Datatype::Int16 => (f64::from(i16::MIN), f64::from(i16::MAX)),
            Datatype::Int32 => (f64::from(i32::MIN), f64::from(i32::MAX)),
            Datatype::Int64 => (i64::MIN as f64, i64::MAX as f64),
            _ => return None,
        })
    }
}

/// The element count a shape declares, checked: no negative dimension, no
/// overflow.
pub(crate) fn element_count(tensor: &str, shape: &[i64]) -> Result<u64, DecodeError> {
    let bad = |detail: String| DecodeError::BadShape {
        tensor: tensor.to_owned(),
        detail,
    };
    shape.iter().try_fold(1u64, |count, &dim| {
        let dim = u64::try_from(dim).map_err(|_| bad(format!("negative dimension {dim}")))?;
        count
            .checked_mul(dim)
            .ok_or_else(|| bad(format!("{shape:?} has more elements than can be counted")))
    })
}

// === impl Tensor ===

impl Tensor {
    /// A tensor from its values, checked against the declared shape.
    pub fn new(
        name: String,
        datatype: Datatype,
        shape: &[i64],
        values: Vec<FeatureValue>,
    ) -> Result<Tensor, DecodeError> {
        let expected = element_count(&name, shape)?;
        let found = values.len() as u64;
        if expected != found {
            return Err(DecodeError::ShapeMismatch {
                tensor: name,
                expected,
                found,
            });
        }
        // The product equals `values.len()`, so every dimension fits a usize.
        let (batch, width) = match shape.split_first() {
            None => (1, 1),
            Some((&b, rest)) => {
                let width = element_count(&name, rest)?;
                (
                    usize::try_from(b).unwrap_or(0),
                    usize::try_from(width).unwrap_or(0),
                )
            }
        };
        if batch > 0 && width == 0 {
            return Err(DecodeError::BadShape {
                tensor: name,
                detail: "a zero-sized dimension in a non-empty batch".to_owned(),
            });
        }
        Ok(Tensor {
            name,
            datatype,
            batch,
            width,
            values,
        })
    }

    /// The values of each row.
    pub fn rows(&self) -> impl Iterator<Item = &[FeatureValue]> {
        self.values.chunks(self.width.max(1)).take(self.batch)
    }

    /// One prediction per row (see [`prediction`]).
    pub fn predictions(&self) -> Vec<Option<Prediction>> {
        let integer = self.datatype.is_integer();
        self.rows()
            .map(|row| prediction::from_values(row, integer))
            .collect()
    }
}

/// The elements of JSON `data` (flat or nested, row-major) as values of
/// `datatype`.
pub(crate) fn json_values(
    tensor: &str,
    datatype: Datatype,
    data: &Value,
) -> Result<Vec<FeatureValue>, DecodeError> {
    let mut flat = Vec::new();
    flatten(data, &mut flat);
    flat.into_iter()
        .enumerate()
        .map(|(index, v)| {
            json_element(datatype, v).map_err(|detail| DecodeError::BadValue {
                tensor: tensor.to_owned(),
                index,
                detail,
            })
        })
        .collect()
}

/// Leaves of nested arrays, in order. Depth is bounded by the JSON parser's
/// recursion limit.
fn flatten<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| flatten(item, out)),
        leaf => out.push(leaf),
    }
}

fn json_element(datatype: Datatype, value: &Value) -> Result<FeatureValue, String> {
    match (datatype, value) {
        (Datatype::Bytes, Value::String(s)) => Ok(FeatureValue::Category(Arc::from(s.as_str()))),
        (Datatype::Bytes, other) => Err(format!("expected a string, found {}", type_name(other))),
        (Datatype::Bool, Value::Bool(b)) => Ok(FeatureValue::Number(f64::from(u8::from(*b)))),
        (_, Value::Number(n)) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            match datatype.range() {
                Some(_) if x.fract() != 0.0 => Err(format!("{n} is not a whole number")),
                Some((lo, hi)) if x < lo || x > hi => {
                    Err(format!("{n} is out of range for {datatype:?}"))
                }
                _ => Ok(FeatureValue::Number(x)),
            }
        }
        (Datatype::Fp16 | Datatype::Bf16 | Datatype::Fp32 | Datatype::Fp64, Value::String(s)) => {
            special_float(s)
                .map(FeatureValue::Number)
                .ok_or_else(|| format!("{s:?} is not a number"))
        }
        (_, other) => Err(format!("expected a number, found {}", type_name(other))),
    }
}

/// NaN and infinities, which JSON cannot spell as numbers.
fn special_float(s: &str) -> Option<f64> {
    match s.to_ascii_lowercase().as_str() {
        "nan" => Some(f64::NAN),
        "inf" | "+inf" | "infinity" | "+infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Input tensors as a table of rows (see the module docs).
pub(crate) fn inputs_table(
    tensors: Vec<Tensor>,
    schema: &ModelSchema,
) -> Result<Table, DecodeError> {
    let Some(first) = tensors.first() else {
        return Err(DecodeError::MissingInput {
            detail: "no input tensors".to_owned(),
        });
    };
    let batch = first.batch;
    if let Some(t) = tensors.iter().find(|t| t.batch != batch) {
        return Err(DecodeError::BatchMismatch {
            what: format!("input `{}`", t.name),
            expected: batch,
            found: t.batch,
        });
    }
    let by_name = tensors.len() > 1 || (first.width == 1 && schema.features.contains(&first.name));
    if !by_name {
        let rows = first.rows().map(<[FeatureValue]>::to_vec).collect();
        return Ok(Table::positional("input", rows));
    }
    let mut names = Vec::new();
    for t in &tensors {
        if t.width == 1 {
            names.push(t.name.clone());
        } else {
            names.extend((0..t.width).map(|j| column_name(&t.name, j)));
        }
    }
    let mut rows: Vec<Vec<FeatureValue>> = (0..batch)
        .map(|_| Vec::with_capacity(names.len()))
        .collect();
    for t in &tensors {
        for (row, values) in rows.iter_mut().zip(t.rows()) {
            row.extend_from_slice(values);
        }
    }
    Ok(Table::named(names, rows))
}

/// The output to predict from: the schema's `output`, else the first one.
pub(crate) fn output_index<'a>(
    mut names: impl Iterator<Item = &'a str>,
    schema: &ModelSchema,
) -> Result<usize, DecodeError> {
    match &schema.output {
        Some(wanted) => names
            .position(|n| n == wanted)
            .ok_or_else(|| DecodeError::MissingOutput {
                detail: format!("no output named `{wanted}`"),
            }),
        None => names
            .next()
            .map(|_| 0)
            .ok_or_else(|| DecodeError::MissingOutput {
                detail: "no outputs".to_owned(),
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FeatureValue::Number;

    fn numbers(n: usize) -> Vec<FeatureValue> {
        (0..n).map(|i| Number(i as f64)).collect()
    }

    #[test]
    fn shapes_are_checked_against_the_data() {
        let ok = Tensor::new("t".into(), Datatype::Fp32, &[2, 3], numbers(6));
        assert_eq!(ok.map(|t| (t.batch, t.width)).ok(), Some((2, 3)));
        let kind = |shape: &[i64], n| {
            Tensor::new("t".into(), Datatype::Fp32, shape, numbers(n)).map_err(|e| e.kind())
        };
        assert_eq!(kind(&[2, 3], 5).err(), Some("shape_mismatch"));
        assert_eq!(kind(&[-1, 3], 3).err(), Some("bad_shape"));
        assert_eq!(kind(&[i64::MAX, i64::MAX], 1).err(), Some("bad_shape"));
        assert_eq!(kind(&[1 << 40, 1 << 20], 0).err(), Some("shape_mismatch"));
        assert_eq!(kind(&[1 << 40, 0], 0).err(), Some("bad_shape"));
        assert_eq!(kind(&[0, 4], 0).map(|_| ()).ok(), Some(()));
        assert_eq!(kind(&[], 1).map(|_| ()).ok(), Some(()));
    }

    #[test]
    fn json_elements_are_checked_per_datatype() {
        let v: Value = serde_json::json!([[1, 2], [3, 300]]);
        assert_eq!(
            json_values("t", Datatype::Int8, &v)
                .map_err(|e| e.kind())
                .err(),
            Some("bad_value")
        );
        assert_eq!(
            json_values("t", Datatype::Int16, &v).map(|v| v.len()).ok(),
            Some(4)
        );
        let f: Value = serde_json::json!([1.5, "NaN", "-inf"]);
        let values = json_values("t", Datatype::Fp32, &f).unwrap_or_default();
        assert!(
            values
                .get(1)
                .and_then(FeatureValue::as_number)
                .is_some_and(f64::is_nan)
        );
        assert_eq!(
            json_values("t", Datatype::Int32, &f)
                .map_err(|e| e.kind())
                .err(),
            Some("bad_value")
        );
        let b: Value = serde_json::json!([true, false, 1]);
        assert_eq!(
            json_values("t", Datatype::Bool, &b).ok(),
            Some(vec![Number(1.0), Number(0.0), Number(1.0)])
        );
    }
}
