//! Getting at the copied bodies: which copies can be decoded, and JSON
//! parsing with errors that say which half was wrong.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::error::Category;

use super::error::{DecodeError, Part};
use crate::mirror::{BodyCopy, Exchange, HeaderCopy};

/// The request body, if it was copied whole.
pub(crate) fn request(exchange: &Exchange) -> Result<&Bytes, DecodeError> {
    whole(&exchange.request_body, Part::Request)
}

/// The response body worth decoding: `None` when there is no response, its
/// status is not 2xx, or it is empty (nothing to predict from); an error when
/// the copy was cut.
pub(crate) fn response(exchange: &Exchange) -> Result<Option<&Bytes>, DecodeError> {
    let Some(head) = &exchange.response else {
        return Ok(None);
    };
    if !head.status.is_success() {
        return Ok(None);
    }
    let body = whole(&exchange.response_body, Part::Response)?;
    Ok((!body.is_empty()).then_some(body))
}

/// The bytes of a copy that holds a whole body.
fn whole(copy: &BodyCopy, part: Part) -> Result<&Bytes, DecodeError> {
    if copy.truncated {
        return Err(DecodeError::Truncated {
            part,
            copied: copy.bytes.len(),
            size: copy.size,
        });
    }
    if !copy.complete {
        return Err(DecodeError::Incomplete { part });
    }
    Ok(&copy.bytes)
}

/// Parses JSON into `T`: syntax errors are `malformed_json`, a document of
/// the wrong form is `invalid_field`.
pub(crate) fn json<T: DeserializeOwned>(part: Part, bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(DecodeError::EmptyBody { part });
    }
    serde_json::from_slice(bytes).map_err(|error| match error.classify() {
        Category::Data => DecodeError::InvalidField {
            part,
            field: "body".to_owned(),
            detail: error.to_string(),
        },
        Category::Io | Category::Syntax | Category::Eof => DecodeError::MalformedJson {
            part,
            detail: error.to_string(),
        },
    })
}

/// The request's `content-type`, if it is readable.
pub(crate) fn content_type(headers: &HeaderCopy) -> Option<&str> {
    headers.get_str(http::header::CONTENT_TYPE.as_str())
}
