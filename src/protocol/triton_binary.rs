//! The Triton binary tensor data extension of the KServe v2 REST protocol.
//!
//! A request or response carrying the header
//! `Inference-Header-Content-Length: N` has its first `N` bytes as the usual
//! JSON document and the rest as raw tensor data: each tensor with
//! `"parameters": {"binary_data_size": K}` takes the next `K` bytes, in the
//! order the tensors are listed (see [`raw`](super::raw) for the encoding).

use super::error::{DecodeError, Part};
use crate::mirror::HeaderCopy;

/// The header that marks a binary body and gives its JSON part's length.
pub(crate) const HEADER_LENGTH: &str = "inference-header-content-length";

/// The binary tail of a body, handed out tensor by tensor.
#[derive(Debug)]
pub(crate) struct BinaryData<'a> {
    rest: Option<&'a [u8]>,
    part: Part,
}

/// Splits a body into its JSON header and, for binary bodies, the tensor
/// data that follows it.
pub(crate) fn split<'a>(
    headers: &HeaderCopy,
    body: &'a [u8],
    part: Part,
) -> Result<(&'a [u8], BinaryData<'a>), DecodeError> {
    let Some(value) = headers.get(HEADER_LENGTH) else {
        return Ok((body, BinaryData { rest: None, part }));
    };
    let bad = |detail: String| DecodeError::BadBinary { part, detail };
    let length: usize = std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| {
            bad(format!(
                "{HEADER_LENGTH} is not a length: {:?}",
                String::from_utf8_lossy(value)
            ))
        })?;
    if length > body.len() {
        return Err(bad(format!(
            "{HEADER_LENGTH} is {length} but the body has {} bytes",
            body.len()
        )));
    }
    let (json, rest) = body.split_at(length);
    Ok((
        json,
        BinaryData {
            rest: Some(rest),
            part,
        },
    ))
}

// === impl BinaryData ===

impl<'a> BinaryData<'a> {
    /// The next `size` bytes, for the tensor named `tensor`.
    pub fn take(&mut self, tensor: &str, size: u64) -> Result<&'a [u8], DecodeError> {
        let part = self.part;
        let rest = self.rest.ok_or_else(|| DecodeError::BadBinary {
            part,
            detail: format!(
                "tensor `{tensor}` has binary_data_size but there is no {HEADER_LENGTH} header"
            ),
        })?;
        let available = rest.len();
        let data = usize::try_from(size)
            .ok()
            .and_then(|n| rest.get(..n))
            .ok_or_else(|| DecodeError::BadBinary {
                part,
                detail: format!("tensor `{tensor}` needs {size} bytes but {available} are left"),
            })?;
        self.rest = rest.get(data.len()..);
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(length: &str) -> HeaderCopy {
        let mut headers = http::HeaderMap::new();
        if let Ok(value) = length.parse() {
            headers.insert(HEADER_LENGTH, value);
        }
        HeaderCopy::copy_from(&headers)
    }

    #[test]
    fn splits_header_and_hands_out_tensors_in_order() {
        let body = b"{}abcdef";
        let (json, mut data) = split(&headers("2"), body, Part::Request).expect("a binary body");
        assert_eq!(json, b"{}");
        assert_eq!(data.take("a", 2), Ok(&b"ab"[..]));
        assert_eq!(data.take("b", 4), Ok(&b"cdef"[..]));
        assert_eq!(data.take("c", 1).map_err(|e| e.kind()), Err("bad_binary"));
    }

    #[test]
    fn bad_lengths_are_errors() {
        let kind = |h: &str| {
            split(&headers(h), b"{}", Part::Response)
                .map(|_| ())
                .map_err(|e| e.kind())
        };
        assert_eq!(kind("3"), Err("bad_binary"));
        assert_eq!(kind("x"), Err("bad_binary"));
        assert_eq!(kind("2"), Ok(()));
        let (_, mut plain) =
            split(&HeaderCopy::default(), b"{}", Part::Request).expect("a JSON body");
        assert_eq!(plain.take("a", 0).map_err(|e| e.kind()), Err("bad_binary"));
    }
}
