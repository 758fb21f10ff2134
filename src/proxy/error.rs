//! Failures the proxy answers itself, turned into responses in one place:
//! JSON bodies for HTTP clients, `grpc-status` trailers-only responses for
//! gRPC clients.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;

/// The request body grew past `limits.max_body` while streaming.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds limits.max_body of {limit} bytes")]
pub struct BodyTooLarge {
    /// The configured limit.
    pub limit: u64,
}

/// Why the proxy could not relay an upstream response.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The upstream refused or could not be reached.
    #[error("upstream {upstream} is unreachable: {reason}")]
    UpstreamUnreachable {
        /// Host and port of the upstream.
        upstream: String,
        /// The innermost cause.
        reason: String,
    },
    /// The upstream did not answer in time.
    #[error("upstream did not respond within limits.request_timeout ({})", humantime::format_duration(*.0))]
    UpstreamTimeout(Duration),
    /// The upstream connection failed mid-exchange.
    #[error("upstream failed: {0}")]
    UpstreamFailed(String),
    /// The request body was too large.
    #[error(transparent)]
    BodyTooLarge(#[from] BodyTooLarge),
    /// Too many client connections.
    #[error("sidewatch is at limits.max_connections ({0}); retry later")]
    TooManyConnections(usize),
}

impl ProxyError {
    /// Stable snake_case identifier, used in error bodies and exchanges.
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyError::UpstreamUnreachable { .. } => "upstream_unreachable",
            ProxyError::UpstreamTimeout(_) => "upstream_timeout",
            ProxyError::UpstreamFailed(_) => "upstream_failed",
            ProxyError::BodyTooLarge(_) => "body_too_large",
            ProxyError::TooManyConnections(_) => "too_many_connections",
        }
    }

    /// HTTP status for plain HTTP clients.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::UpstreamUnreachable { .. } | ProxyError::UpstreamFailed(_) => {
                StatusCode::BAD_GATEWAY
            }
            ProxyError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::TooManyConnections(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// gRPC status code for gRPC clients.
    pub fn grpc_code(&self) -> u8 {
        match self {
            ProxyError::UpstreamUnreachable { .. } | ProxyError::TooManyConnections(_) => 14,
            ProxyError::UpstreamTimeout(_) => 4,
            ProxyError::UpstreamFailed(_) => 14,
            ProxyError::BodyTooLarge(_) => 8,
        }
    }

    /// Builds the response a client of the given kind understands.
    pub fn to_response(&self, grpc: bool) -> Response<Full<Bytes>> {
        if grpc {
            self.grpc_response()
        } else {
            json_error(self.status(), &self.to_string(), self.kind())
        }
    }

    /// A gRPC "trailers-only" response: HTTP 200 with the status in headers.
    fn grpc_response(&self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::new()));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert(
            "grpc-status",
            HeaderValue::from(u16::from(self.grpc_code())),
        );
        if let Ok(message) = HeaderValue::from_str(&percent_encode(&self.to_string())) {
            headers.insert("grpc-message", message);
        }
        response
    }
}

/// A JSON error body in the project's shape: `{"error": ..., "kind": ...}`.
pub fn json_error(status: StatusCode, message: &str, kind: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "error": message, "kind": kind }).to_string();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// gRPC's percent-encoding of `grpc-message` (printable ASCII except `%`).
fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_errors_are_trailers_only_responses() {
        let response = ProxyError::UpstreamTimeout(Duration::from_secs(1)).to_response(true);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["grpc-status"], "4");
        assert!(
            response.headers()["grpc-message"]
                .to_str()
                .is_ok_and(|m| m.contains("request_timeout"))
        );
    }

    #[test]
    fn http_errors_are_json_with_a_kind() {
        let response = ProxyError::BodyTooLarge(BodyTooLarge { limit: 10 }).to_response(false);
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    }

    #[test]
    fn grpc_message_is_percent_encoded() {
        assert_eq!(percent_encode("100% é"), "100%25 %C3%A9");
    }
}
