//! What the tee hands to monitoring: one request and its response, copied
//! as they streamed through the proxy.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use http::{Method, StatusCode, Uri, Version};

use super::HeaderCopy;

/// A copy of one proxied request/response pair.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The `x-request-id` (the client's, or one the proxy generated).
    pub request_id: String,
    /// A number no other exchange of this process has, given by the
    /// consumer that needs one to tell exchanges apart (the audit feed);
    /// 0 until then.
    pub serial: u64,
    /// The peer address of the client connection.
    pub client: SocketAddr,
    /// The configured model the path matched, if any.
    pub model: Option<Arc<str>>,
    /// Request line and headers as the client sent them (plus the request id).
    pub request: RequestHead,
    /// The request body, up to `mirror.max_payload`.
    pub request_body: BodyCopy,
    /// Status and headers the client received; `None` if the exchange ended first.
    pub response: Option<ResponseHead>,
    /// The response body, up to `mirror.max_payload`.
    pub response_body: BodyCopy,
    /// Response trailers (gRPC status lives here).
    pub response_trailers: Option<HeaderCopy>,
    /// When each stage happened.
    pub timings: Timings,
    /// Set when the proxy answered itself instead of the upstream.
    pub proxy_error: Option<&'static str>,
}

// === impl Exchange ===

impl Exchange {
    /// Bytes of the body and header copies: what the queue's byte budget
    /// counts (a body without a length hint may hold up to twice its
    /// length in capacity).
    pub fn payload_len(&self) -> usize {
        self.request_body.bytes.len()
            + self.response_body.bytes.len()
            + self.request.headers.byte_len()
            + self.response.as_ref().map_or(0, |r| r.headers.byte_len())
            + self
                .response_trailers
                .as_ref()
                .map_or(0, HeaderCopy::byte_len)
    }
}

/// An exchange as the tee hands it over: each side's head and body copies
/// still in the one buffer they were written to. The mirror worker turns
/// it into an [`Exchange`], so the proxy thread makes two allocations for
/// the copies instead of six and never parses the request target again.
#[derive(Debug)]
pub struct RawExchange {
    /// The peer address of the client connection.
    pub client: SocketAddr,
    /// The configured model the path matched, if any.
    pub model: Option<Arc<str>>,
    /// HTTP method.
    pub method: Method,
    /// Protocol version the client spoke.
    pub version: Version,
    /// Request target, headers (with the request id) and body.
    pub request: RawCopy,
    /// Status, headers and body the client received; `None` if the
    /// exchange ended first.
    pub response: Option<(StatusCode, RawCopy)>,
    /// Response trailers (gRPC status lives here).
    pub response_trailers: Option<HeaderCopy>,
    /// When each stage happened, on the monotonic clock.
    pub stages: Stages,
    /// Set when the proxy answered itself instead of the upstream.
    pub proxy_error: Option<&'static str>,
}

/// When each stage of an exchange happened, on the monotonic clock. The
/// proxy thread records these; the worker places them on the wall clock
/// ([`Timings`]) when it assembles the exchange, so the proxy reads one
/// clock fewer an exchange.
#[derive(Debug, Clone, Copy)]
pub struct Stages {
    /// When the request head arrived.
    pub received: Instant,
    /// When the request was handed to the upstream client.
    pub upstream_sent: Option<Instant>,
    /// When the upstream's response head arrived.
    pub first_byte: Option<Instant>,
    /// When the first response body bytes passed (for streams: the first
    /// event or token).
    pub first_body_byte: Option<Instant>,
    /// When the response's last byte was passed to the client.
    pub done: Option<Instant>,
}

/// One side's copies in one buffer: the request target (requests only),
/// the header entries as [`super::write_headers`] lays them out, then the
/// body's first `mirror.max_payload` bytes.
#[derive(Debug, Default)]
pub struct RawCopy {
    /// Target, headers and body, back to back.
    pub buf: BytesMut,
    /// Bytes of the request target at the start.
    pub target_len: usize,
    /// Bytes of target and headers together; the body follows.
    pub head_len: usize,
    /// Total body bytes that passed, copied or not.
    pub body_size: u64,
    /// True when the body reached its end.
    pub complete: bool,
}

// === impl RawExchange ===

impl RawExchange {
    /// Bytes of the copies: target, headers and bodies (what the queue's
    /// byte budget counts, as for an [`Exchange`]).
    pub fn payload_len(&self) -> usize {
        self.request.buf.len()
            + self.response.as_ref().map_or(0, |(_, r)| r.buf.len())
            + self
                .response_trailers
                .as_ref()
                .map_or(0, HeaderCopy::byte_len)
    }

    /// The exchange with its fields split out of the two buffers, without
    /// copying them.
    pub fn into_exchange(self) -> Exchange {
        let (target, headers, request_body) = self.request.split();
        let uri = Uri::from_maybe_shared(target).unwrap_or_else(|_| Uri::from_static("/"));
        // The handler set the id before the head was copied.
        let request_id = headers
            .get_str("x-request-id")
            .unwrap_or_default()
            .to_owned();
        let (response, response_body) = match self.response {
            Some((status, copy)) => {
                let (_, headers, body) = copy.split();
                (Some(ResponseHead { status, headers }), body)
            }
            None => (None, BodyCopy::default()),
        };
        Exchange {
            request_id,
            serial: 0,
            client: self.client,
            model: self.model,
            request: RequestHead {
                method: self.method,
                uri,
                version: self.version,
                headers,
            },
            request_body,
            response,
            response_body,
            response_trailers: self.response_trailers,
            timings: self.stages.timed(SystemTime::now(), Instant::now()),
            proxy_error: self.proxy_error,
        }
    }
}

// === impl RawCopy ===

impl RawCopy {
    /// Target, headers and body as slices of the one buffer.
    fn split(self) -> (Bytes, HeaderCopy, BodyCopy) {
        let buf = self.buf.freeze();
        let head_len = self.head_len.min(buf.len());
        let target_len = self.target_len.min(head_len);
        let body = buf.slice(head_len..);
        let copied = body.len() as u64;
        (
            buf.slice(..target_len),
            HeaderCopy::from_written(buf.slice(target_len..head_len)),
            BodyCopy {
                bytes: body,
                size: self.body_size,
                truncated: self.body_size > copied,
                complete: self.complete,
            },
        )
    }
}

// === impl Stages ===

impl Stages {
    /// The stages of a request whose head arrived at `received`.
    pub fn received(received: Instant) -> Self {
        Stages {
            received,
            upstream_sent: None,
            first_byte: None,
            first_body_byte: None,
            done: None,
        }
    }

    /// When the exchange ended (or began, if it never ended).
    pub fn ended(&self) -> Instant {
        self.done.unwrap_or(self.received)
    }

    /// Whole-request latency, if the response finished.
    pub fn total(&self) -> Option<Duration> {
        self.done
            .map(|d| d.saturating_duration_since(self.received))
    }

    /// Time from sending upstream to the response head.
    pub fn time_to_first_byte(&self) -> Option<Duration> {
        Some(
            self.first_byte?
                .saturating_duration_since(self.upstream_sent?),
        )
    }

    /// The timings, with `received_at` placed on the wall clock by a
    /// reading of both clocks at one moment, `wall` at `at`.
    pub fn timed(self, wall: SystemTime, at: Instant) -> Timings {
        let ago = at.saturating_duration_since(self.received);
        Timings {
            received_at: wall.checked_sub(ago).unwrap_or(wall),
            stages: self,
        }
    }
}

/// The request line and headers.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// HTTP method.
    pub method: Method,
    /// Path and query as received (HTTP/2 requests carry scheme and authority too).
    pub uri: Uri,
    /// Protocol version the client spoke.
    pub version: Version,
    /// Headers as received.
    pub headers: HeaderCopy,
}

/// The status line and headers of a response.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    /// Status code.
    pub status: StatusCode,
    /// Headers as sent to the client.
    pub headers: HeaderCopy,
}

/// A body as copied by the tee.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodyCopy {
    /// The first `mirror.max_payload` bytes.
    pub bytes: Bytes,
    /// Total bytes that passed, copied or not.
    pub size: u64,
    /// True when `size` exceeded what was copied.
    pub truncated: bool,
    /// True when the body reached its end (not cut off by an error or hang-up).
    pub complete: bool,
}

/// Stage times of an exchange, anchored on the wall clock.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    /// Wall-clock time the request head arrived, for records and reports.
    pub received_at: SystemTime,
    /// Every stage, on the monotonic clock.
    pub stages: Stages,
}

impl Timings {
    /// The times of a request whose head just arrived, no later stage yet.
    pub fn received(received_at: SystemTime, received: Instant) -> Self {
        Stages::received(received).timed(received_at, received)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_are_placed_on_the_wall_clock_by_one_reading_of_both_clocks() {
        let at = Instant::now();
        let received = at.checked_sub(Duration::from_secs(3)).expect("an instant");
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let mut stages = Stages::received(received);
        stages.done = Some(at);
        let timings = stages.timed(wall, at);
        assert_eq!(
            timings.received_at,
            SystemTime::UNIX_EPOCH + Duration::from_secs(97)
        );
        assert_eq!(timings.stages.received, received);
        assert_eq!(timings.stages.total(), Some(Duration::from_secs(3)));
        // A reading taken before the request (clocks read out of order)
        // places it at the reading, not in the future.
        let early = Stages::received(at + Duration::from_secs(1)).timed(wall, at);
        assert_eq!(early.received_at, wall);
    }
}
