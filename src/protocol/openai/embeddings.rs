//! `/v1/embeddings`: each returned vector is one observation whose features
//! are its components, positional (`dim_0..dim_{D-1}`, or the schema's
//! names). Vectors come as JSON numbers or, with `encoding_format:
//! "base64"` (the default of the official Python client), as base64 of
//! little-endian `f32`s. The rows exist only in the response: a response
//! that is absent or not 2xx gives no observations, one that cannot be
//! decoded fails the whole exchange. Observations have no prediction (the
//! vector is the output); the version is the response's `model`.

use serde_json::Value;

use crate::mirror::Exchange;
use crate::observation::FeatureValue;
use crate::protocol::error::{DecodeError, Part};
use crate::protocol::table::Table;
use crate::protocol::{Parts, body, value};

/// Decodes an embeddings exchange.
pub(crate) fn decode(exchange: &Exchange) -> Result<Parts, DecodeError> {
    let Some(body) = body::response(exchange)? else {
        return Ok(Parts {
            table: Table::positional("dim", Vec::new()),
            version: None,
            answer: Ok(None),
        });
    };
    let response: Value = body::json(Part::Response, body)?;
    let data = response
        .get("data")
        .ok_or_else(|| DecodeError::MissingField {
            part: Part::Response,
            field: "data".to_owned(),
        })?
        .as_array()
        .ok_or_else(|| invalid("data", "expected a list".to_owned()))?;
    let rows = data
        .iter()
        .enumerate()
        .map(|(i, item)| vector(i, item.get("embedding")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Parts {
        table: Table::positional("dim", rows),
        version: response
            .get("model")
            .and_then(Value::as_str)
            .map(str::to_owned),
        answer: Ok(None),
    })
}

fn vector(index: usize, embedding: Option<&Value>) -> Result<Vec<FeatureValue>, DecodeError> {
    let field = || format!("data[{index}].embedding");
    match embedding {
        Some(array @ Value::Array(_)) => {
            let mut values = Vec::new();
            value::flatten(array, &mut values);
            Ok(values)
        }
        Some(Value::String(encoded)) => {
            let bytes =
                base64(encoded).ok_or_else(|| invalid(&field(), "not base64".to_owned()))?;
            if !bytes.len().is_multiple_of(4) {
                return Err(invalid(
                    &field(),
                    format!("{} bytes are not whole f32s", bytes.len()),
                ));
            }
            Ok(bytes
                .chunks_exact(4)
                .map(|c| {
                    let mut b = [0; 4];
                    b.iter_mut().zip(c).for_each(|(o, i)| *o = *i);
                    FeatureValue::Number(f64::from(f32::from_le_bytes(b)))
                })
                .collect())
        }
        Some(_) => Err(invalid(
            &field(),
            "expected a list or a base64 string".to_owned(),
        )),
        None => Err(DecodeError::MissingField {
            part: Part::Response,
            field: field(),
        }),
    }
}

/// Standard or URL-safe base64, padding optional.
fn base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 2);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn invalid(field: &str, detail: String) -> DecodeError {
    DecodeError::InvalidField {
        part: Part::Response,
        field: field.to_owned(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes() {
        assert_eq!(base64("aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(base64("AACAPw"), Some(1.0f32.to_le_bytes().to_vec()));
        assert_eq!(base64("a*b"), None);
    }
}
