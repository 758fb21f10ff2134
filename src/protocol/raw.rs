//! Raw tensor bytes, as the Triton binary extension and the gRPC
//! `raw_*_contents` fields carry them: row-major, little-endian, no padding;
//! FP16/BF16 as IEEE half / bfloat16 bits; BOOL one byte each; BYTES
//! elements as a 4-byte little-endian length followed by that many bytes.

use std::sync::Arc;

use half::{bf16, f16};

use super::error::{DecodeError, Part};
use super::tensor::Datatype;
use crate::observation::FeatureValue;

/// Decodes `count` elements of `datatype` from `bytes`, which must hold
/// exactly that many.
pub(crate) fn decode(
    tensor: &str,
    datatype: Datatype,
    count: u64,
    bytes: &[u8],
    part: Part,
) -> Result<Vec<FeatureValue>, DecodeError> {
    let Some(size) = datatype.size() else {
        return strings(tensor, count, bytes, part);
    };
    if !bytes.len().is_multiple_of(size) {
        return Err(DecodeError::BadBinary {
            part,
            detail: format!(
                "tensor `{tensor}`: {} bytes are not a whole number of {datatype:?} elements",
                bytes.len()
            ),
        });
    }
    let found = (bytes.len() / size) as u64;
    if found != count {
        return Err(DecodeError::ShapeMismatch {
            tensor: tensor.to_owned(),
            expected: count,
            found,
        });
    }
    let number = |x: f64| FeatureValue::Number(x);
    let values = bytes.chunks_exact(size);
    Ok(match datatype {
        Datatype::Bool => values
            .map(|c| number(f64::from(u8::from(le::<1>(c) != [0]))))
            .collect(),
        Datatype::Uint8 => values
            .map(|c| number(f64::from(u8::from_le_bytes(le(c)))))
            .collect(),
        Datatype::Int8 => values
            .map(|c| number(f64::from(i8::from_le_bytes(le(c)))))
            .collect(),
        Datatype::Uint16 => values
            .map(|c| number(f64::from(u16::from_le_bytes(le(c)))))
            .collect(),
        Datatype::Int16 => values
            .map(|c| number(f64::from(i16::from_le_bytes(le(c)))))
            .collect(),
        Datatype::Fp16 => values
            .map(|c| number(f16::from_le_bytes(le(c)).to_f64()))
            .collect(),
        Datatype::Bf16 => values
            .map(|c| number(bf16::from_le_bytes(le(c)).to_f64()))
            .collect(),
        Datatype::Uint32 => values
            .map(|c| number(f64::from(u32::from_le_bytes(le(c)))))
            .collect(),
        Datatype::Int32 => values
            .map(|c| number(f64::from(i32::from_le_bytes(le(c)))))
            .collect(),
        Datatype::Fp32 => values
            .map(|c| number(f64::from(f32::from_le_bytes(le(c)))))
            .collect(),
        Datatype::Uint64 => values
            .map(|c| number(u64::from_le_bytes(le(c)) as f64))
            .collect(),
        Datatype::Int64 => values
            .map(|c| number(i64::from_le_bytes(le(c)) as f64))
            .collect(),
        Datatype::Fp64 => values.map(|c| number(f64::from_le_bytes(le(c)))).collect(),
        Datatype::Bytes => Vec::new(),
    })
}

/// Length-prefixed strings (lossy UTF-8), exactly `count` of them.
fn strings(
    tensor: &str,
    count: u64,
    bytes: &[u8],
    part: Part,
) -> Result<Vec<FeatureValue>, DecodeError> {
    let bad = |detail: String| DecodeError::BadBinary {
        part,
        detail: format!("BYTES tensor `{tensor}`: {detail}"),
    };
    // Every element takes at least its 4-byte prefix: that caps the count.
    let mut values = Vec::with_capacity(usize::try_from(count).unwrap_or(0).min(bytes.len() / 4));
    let mut rest = bytes;
    while !rest.is_empty() {
        let (prefix, tail) = rest.split_first_chunk::<4>().ok_or_else(|| {
            bad(format!(
                "{} bytes left, too few for a length prefix",
                rest.len()
            ))
        })?;
        let len = usize::try_from(u32::from_le_bytes(*prefix)).unwrap_or(usize::MAX);
        let element = tail.get(..len).ok_or_else(|| {
            bad(format!(
                "an element of {len} bytes with {} bytes left",
                tail.len()
            ))
        })?;
        values.push(FeatureValue::Category(Arc::from(String::from_utf8_lossy(
            element,
        ))));
        rest = tail.get(len..).unwrap_or_default();
    }
    let found = values.len() as u64;
    if found != count {
        return Err(DecodeError::ShapeMismatch {
            tensor: tensor.to_owned(),
            expected: count,
            found,
        });
    }
    Ok(values)
}

/// Copies a chunk into an array; `chunks_exact` guarantees the length.
fn le<const N: usize>(chunk: &[u8]) -> [u8; N] {
    let mut out = [0; N];
    out.iter_mut().zip(chunk).for_each(|(o, c)| *o = *c);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use FeatureValue::{Category, Number};

    #[test]
    fn fixed_size_types_are_little_endian() {
        let bytes: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let values = decode("t", Datatype::Fp32, 2, &bytes, Part::Request);
        assert_eq!(values, Ok(vec![Number(1.5), Number(-2.0)]));
        let half: Vec<u8> = [f16::from_f32(0.5), f16::from_f32(-1.25)]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        assert_eq!(
            decode("t", Datatype::Fp16, 2, &half, Part::Request),
            Ok(vec![Number(0.5), Number(-1.25)])
        );
        let ints = (-3i16).to_le_bytes();
        assert_eq!(
            decode("t", Datatype::Int16, 1, &ints, Part::Request),
            Ok(vec![Number(-3.0)])
        );
    }

    #[test]
    fn sizes_must_match() {
        let kind = |dt, count, bytes: &[u8]| {
            decode("t", dt, count, bytes, Part::Request).map_err(|e| e.kind())
        };
        assert_eq!(kind(Datatype::Fp32, 2, &[0; 7]).err(), Some("bad_binary"));
        assert_eq!(
            kind(Datatype::Fp32, 3, &[0; 8]).err(),
            Some("shape_mismatch")
        );
        assert_eq!(
            kind(Datatype::Fp64, u64::MAX, &[0; 8]).err(),
            Some("shape_mismatch")
        );
    }

    #[test]
    fn strings_are_length_prefixed() {
        let mut bytes = Vec::new();
        for s in ["ab", "", "ü"] {
            bytes.extend_from_slice(&(s.len() as u32).to_le_bytes());
            bytes.extend_from_slice(s.as_bytes());
        }
        let values = decode("t", Datatype::Bytes, 3, &bytes, Part::Response);
        assert_eq!(
            values,
            Ok(vec![
                Category("ab".into()),
                Category("".into()),
                Category("ü".into())
            ])
        );
        let kind = |count, bytes: &[u8]| {
            decode("t", Datatype::Bytes, count, bytes, Part::Request).map_err(|e| e.kind())
        };
        assert_eq!(kind(1, &[9, 0, 0, 0, b'a']).err(), Some("bad_binary"));
        assert_eq!(kind(1, &[0, 0]).err(), Some("bad_binary"));
        assert_eq!(kind(2, &[0, 0, 0, 0]).err(), Some("shape_mismatch"));
        assert_eq!(kind(1, &[255, 255, 255, 255]).err(), Some("bad_binary"));
    }
}
