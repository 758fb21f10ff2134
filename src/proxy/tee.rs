//! The tee: body wrappers that copy frames as they stream past, and the
//! cell that joins the request and response halves into one [`Exchange`].
//!
//! The two halves finish on different tasks (hyper's client connection
//! polls the request body, the server connection polls the response body),
//! so each half holds an `Arc<ExchangeCell>` and fills a write-once slot;
//! whichever half lets go last drops the cell, and the drop offers the
//! exchange to the mirror. Each slot's lock is only ever taken by one half
//! and then by the dropper, never contended, and the proxy never waits for
//! monitoring.
//!
//! Each half copies its head and then its body into one buffer (a
//! [`Capture`]), and the mirror worker splits the buffers into the
//! [`Exchange`](crate::mirror::Exchange)'s fields: every allocation made
//! here is freed on another core, so the fewer the better.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, Method, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::limit::BodyLimit;
use crate::mirror::{
    BodyCopy, HeaderCopy, MirrorSender, RawCopy, RawExchange, Stages, write_headers,
};
use crate::telemetry::{LatencySample, ThreadStats};

/// Errors crossing the body wrappers.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One side's copy in progress: its head, if any, then up to `max` bytes
/// of its body, in one buffer.
#[derive(Debug)]
pub struct Capture {
    buf: BytesMut,
    target_len: usize,
    head_len: usize,
    max: usize,
    size: u64,
}

/// One exchange being assembled from its two halves.
#[derive(Debug)]
pub struct ExchangeCell {
    sink: Arc<MirrorSender>,
    client: std::net::SocketAddr,
    model: Option<Arc<str>>,
    method: Method,
    version: Version,
    received: Instant,
    // Each half fills its slot once, on the thread that runs the
    // connection; an uncontended lock is cheaper than `OnceLock`'s
    // once-state machine.
    request: Mutex<Option<RawCopy>>,
    response: Mutex<Option<ResponseHalf>>,
}

#[derive(Debug)]
struct ResponseHalf {
    status: StatusCode,
    copy: RawCopy,
    trailers: Option<HeaderCopy>,
    /// Every stage of the exchange: the response ends last.
    stages: Stages,
    proxy_error: Option<&'static str>,
}

pin_project! {
    /// The request body on its way upstream: enforces `limits.max_body`
    /// and, when the tee is on, copies what passes.
    pub struct RequestTap<B: Body> {
        #[pin]
        inner: B,
        limit: BodyLimit,
        refused: Option<Arc<AtomicBool>>,
        capture: Option<(Capture, Arc<ExchangeCell>)>,
    }

    impl<B: Body> PinnedDrop for RequestTap<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // hyper never polls a body that is empty from the start, so
            // "complete" is whether the body had ended, not whether we saw it end.
            let complete = this.inner.is_end_stream();
            settle(this.capture, complete);
        }
    }
}

/// What a finished response reports to metrics and the tee.
#[derive(Debug)]
pub struct ResponseMeta {
    /// Counters to record into, through this thread's own handle.
    pub stats: Arc<ThreadStats>,
    /// Model label index.
    pub model: usize,
    /// Status sent to the client.
    pub status: u16,
    /// When the request head arrived.
    pub received: Instant,
    /// When the request went upstream, if it did.
    pub upstream_sent: Option<Instant>,
    /// When the upstream's head arrived, if it did.
    pub first_byte: Option<Instant>,
    /// The proxy's own handling time, outside the upstream call and socket
    /// I/O; `None` for answers the proxy made itself (then all of it counts).
    pub overhead: Option<std::time::Duration>,
    /// Set when the proxy answered itself.
    pub proxy_error: Option<&'static str>,
    /// The request's spans, when OTLP export is on; ended with the response.
    pub spans: Option<Box<crate::telemetry::otel::RequestSpans>>,
}

struct ResponseTee {
    capture: Capture,
    first_body_byte: Option<Instant>,
    status: StatusCode,
    trailers: Option<HeaderCopy>,
    cell: Arc<ExchangeCell>,
}

pin_project! {
    /// The response body on its way to the client: records metrics when it
    /// ends and, when the tee is on, copies what passes.
    pub struct ResponseTap<B: Body> {
        #[pin]
        inner: B,
        meta: Option<ResponseMeta>,
        tee: Option<ResponseTee>,
    }

    impl<B: Body> PinnedDrop for ResponseTap<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            let complete = this.inner.is_end_stream();
            finish_response(this.meta, this.tee, complete);
        }
    }
}

// === impl Capture ===

impl Capture {
    /// Starts a body copy of at most `max` bytes, pre-sized from a length hint.
    pub fn new(max: usize, hint: Option<u64>) -> Self {
        Self::with_head(max, hint, 0)
    }

    /// Starts a request's copy: its target and headers (as the handler
    /// leaves them for the tee), then room for its body.
    pub fn request(max: usize, hint: Option<u64>, uri: &Uri, headers: &HeaderMap) -> Self {
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        // HTTP/1.1's origin form is one exact copy. HTTP/2 requests carry
        // scheme and authority and are formatted, except `*`, which would
        // format as `http://host*` and not parse back.
        let absolute = (uri.scheme().is_some() || uri.authority().is_some())
            .then(|| uri.to_string())
            .filter(|_| path != "*");
        let target = absolute.as_deref().unwrap_or(path).as_bytes();
        let mut capture = Self::with_head(max, hint, target.len() + head_guess(headers));
        capture.buf.extend_from_slice(target);
        capture.target_len = target.len();
        capture.write_head(headers, hint);
        capture
    }

    /// Starts a response's copy: its headers, then room for its body.
    pub fn response(max: usize, hint: Option<u64>, headers: &HeaderMap) -> Self {
        let mut capture = Self::with_head(max, hint, head_guess(headers));
        capture.write_head(headers, hint);
        capture
    }

    /// Writes the headers after the target, then makes sure the body's
    /// room survived: a head longer than its guess took some of it, and
    /// the body's first frame would otherwise reallocate the whole buffer.
    fn write_head(&mut self, headers: &HeaderMap, hint: Option<u64>) {
        write_headers(headers, &mut self.buf);
        self.head_len = self.buf.len();
        self.buf.reserve(body_room(self.max, hint));
    }

    fn with_head(max: usize, hint: Option<u64>, head: usize) -> Self {
        Capture {
            buf: crate::mirror::buffer(head + body_room(max, hint)),
            target_len: 0,
            head_len: 0,
            max,
            size: 0,
        }
    }

    /// Copies what fits of one frame and counts all of it.
    pub fn push(&mut self, data: &[u8]) {
        self.size += data.len() as u64;
        let room = self.max - (self.buf.len() - self.head_len);
        if room > 0 {
            self.buf.extend_from_slice(&data[..data.len().min(room)]);
        }
    }

    /// Ends the copy: the body alone.
    pub fn finish(self, complete: bool) -> BodyCopy {
        let mut bytes = self.buf.freeze();
        bytes.advance(self.head_len);
        BodyCopy {
            truncated: self.size > bytes.len() as u64,
            bytes,
            size: self.size,
            complete,
        }
    }

    /// Ends the copy: head and body, for the mirror worker to split.
    fn into_raw(self, complete: bool) -> RawCopy {
        RawCopy {
            buf: self.buf,
            target_len: self.target_len,
            head_len: self.head_len,
            body_size: self.size,
            complete,
        }
    }
}

/// Room for a body of `hint` bytes, at most `max`.
fn body_room(max: usize, hint: Option<u64>) -> usize {
    hint.map_or(0, |n| n.min(max as u64) as usize)
}

/// Bytes a head's copy usually takes. Measuring it exactly costs a second
/// pass over the headers (about 450 instructions an exchange); a guess that
/// falls short costs one reallocation of the head.
fn head_guess(headers: &HeaderMap) -> usize {
    const PER_HEADER: usize = 48;
    headers.len() * PER_HEADER
}

// === impl ExchangeCell ===

impl ExchangeCell {
    /// Opens an exchange for a request whose head just arrived: the cell,
    /// and the request's copy with the head in it, which must reach the
    /// cell through a [`RequestTap`] or [`settle`]. `body_hint` sizes the
    /// room for at most `max_payload` bytes of body.
    pub fn open(
        sink: Arc<MirrorSender>,
        client: std::net::SocketAddr,
        model: Option<Arc<str>>,
        head: &http::request::Parts,
        received: Instant,
        max_payload: usize,
        body_hint: Option<u64>,
    ) -> (Capture, Arc<Self>) {
        let capture = Capture::request(max_payload, body_hint, &head.uri, &head.headers);
        let cell = ExchangeCell {
            sink,
            client,
            model,
            method: head.method.clone(),
            version: head.version,
            received,
            request: Mutex::new(None),
            response: Mutex::new(None),
        };
        (capture, Arc::new(cell))
    }
}

impl Drop for ExchangeCell {
    fn drop(&mut self) {
        // Built in the batch's slot: the closure borrows the cell's fields,
        // not the sink.
        self.sink.offer_raw_with(|| {
            let half = self.response.get_mut().ok().and_then(Option::take);
            let (response, trailers, stages, proxy_error) = match half {
                Some(half) => (
                    Some((half.status, half.copy)),
                    half.trailers,
                    half.stages,
                    half.proxy_error,
                ),
                None => (None, None, Stages::received(self.received), None),
            };
            RawExchange {
                client: self.client,
                model: self.model.take(),
                method: std::mem::take(&mut self.method),
                version: self.version,
                request: self
                    .request
                    .get_mut()
                    .ok()
                    .and_then(Option::take)
                    .unwrap_or_default(),
                response,
                response_trailers: trailers,
                stages,
                proxy_error,
            }
        });
    }
}

/// Hands the request's copy, finished, to its exchange (once). The handler
/// calls it for a request whose body it refuses before any tap sees it.
pub fn settle(capture: &mut Option<(Capture, Arc<ExchangeCell>)>, complete: bool) {
    if let Some((capture, cell)) = capture.take()
        && let Ok(mut slot) = cell.request.lock()
    {
        slot.get_or_insert(capture.into_raw(complete));
    }
}

// === impl RequestTap ===

impl<B: Body> RequestTap<B> {
    /// Wraps a request body; `tee` carries the request's copy (its head
    /// already in) and the cell. `refused` is raised when the limit trips,
    /// for callers whose transport does not carry the body error back
    /// (HTTP/2 resets).
    pub fn new(
        inner: B,
        limit: BodyLimit,
        refused: Option<Arc<AtomicBool>>,
        tee: Option<(Capture, Arc<ExchangeCell>)>,
    ) -> Self {
        RequestTap {
            inner,
            limit,
            refused,
            capture: tee,
        }
    }
}

impl<B> Body for RequestTap<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let frame = match ready!(this.inner.as_mut().poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            Some(Err(error)) => {
                settle(this.capture, false);
                return Poll::Ready(Some(Err(error.into())));
            }
            None => {
                settle(this.capture, true);
                return Poll::Ready(None);
            }
        };
        if let Some(data) = frame.data_ref() {
            if let Err(too_large) = this.limit.check(data) {
                if let Some(refused) = this.refused {
                    refused.store(true, Ordering::Release);
                }
                settle(this.capture, false);
                return Poll::Ready(Some(Err(Box::new(too_large))));
            }
            if let Some((capture, _)) = this.capture.as_mut() {
                capture.push(data);
            }
        }
        if this.inner.is_end_stream() {
            settle(this.capture, true);
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

// === impl ResponseTap ===

impl<B: Body> ResponseTap<B> {
    /// Wraps a response body. `tee`, when the tee is on, is the response's
    /// copy (started by [`Capture::response`] with the headers as the
    /// client will see them), its status and the cell.
    pub fn new(
        inner: B,
        meta: ResponseMeta,
        tee: Option<(Capture, StatusCode, Arc<ExchangeCell>)>,
    ) -> Self {
        ResponseTap {
            inner,
            meta: Some(meta),
            tee: tee.map(|(capture, status, cell)| ResponseTee {
                capture,
                first_body_byte: None,
                status,
                trailers: None,
                cell,
            }),
        }
    }
}

fn finish_response(meta: &mut Option<ResponseMeta>, tee: &mut Option<ResponseTee>, complete: bool) {
    let Some(mut meta) = meta.take() else {
        return;
    };
    let done = Instant::now();
    meta.stats.record_request(
        meta.model,
        meta.status,
        LatencySample {
            request: done.saturating_duration_since(meta.received),
            upstream: meta
                .upstream_sent
                .map(|t| done.saturating_duration_since(t)),
            overhead: meta
                .overhead
                .unwrap_or_else(|| done.saturating_duration_since(meta.received)),
        },
    );
    if let Some(tee) = tee.take() {
        let first_body_byte = tee
            .first_body_byte
            .or_else(|| (tee.capture.size > 0).then_some(done));
        let half = ResponseHalf {
            status: tee.status,
            copy: tee.capture.into_raw(complete),
            trailers: tee.trailers,
            stages: Stages {
                received: meta.received,
                upstream_sent: meta.upstream_sent,
                first_byte: meta.first_byte,
                first_body_byte,
                done: Some(done),
            },
            proxy_error: meta.proxy_error,
        };
        if let Ok(mut slot) = tee.cell.response.lock() {
            slot.get_or_insert(half);
        }
    }
    if let Some(spans) = meta.spans.take() {
        spans.finish(meta.status, meta.proxy_error, complete);
    }
}

impl<B> Body for ResponseTap<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let frame = match ready!(this.inner.as_mut().poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            Some(Err(error)) => {
                finish_response(this.meta, this.tee, false);
                return Poll::Ready(Some(Err(error.into())));
            }
            None => {
                finish_response(this.meta, this.tee, true);
                return Poll::Ready(None);
            }
        };
        if let Some(tee) = this.tee.as_mut() {
            if let Some(data) = frame.data_ref() {
                // A body in one frame passes its first byte with its last:
                // `finish_response` reads the clock once for both.
                if tee.first_body_byte.is_none() && !data.is_empty() && !this.inner.is_end_stream()
                {
                    tee.first_body_byte = Some(Instant::now());
                }
                tee.capture.push(data);
            } else if let Some(trailers) = frame.trailers_ref() {
                tee.trailers = Some(HeaderCopy::copy_from(trailers));
            }
        }
        if !frame.is_data()
            && let Some(spans) = this.meta.as_mut().and_then(|m| m.spans.as_mut())
            && let Some(trailers) = frame.trailers_ref()
        {
            spans.grpc_status(trailers);
        }
        if this.inner.is_end_stream() {
            finish_response(this.meta, this.tee, true);
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_copies_up_to_the_cap_and_counts_everything() {
        let mut capture = Capture::new(5, Some(8));
        capture.push(b"abc");
        capture.push(b"defgh");
        let copy = capture.finish(true);
        assert_eq!(&copy.bytes[..], b"abcde");
        assert_eq!(copy.size, 8);
        assert!(copy.truncated);
        assert!(copy.complete);
    }

    fn head(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, http::HeaderValue::from_static(value));
        }
        map
    }

    fn raw(capture: Capture, complete: bool) -> RawExchange {
        RawExchange {
            client: std::net::SocketAddr::from(([127, 0, 0, 1], 1)),
            model: None,
            method: Method::PUT,
            version: Version::HTTP_11,
            request: capture.into_raw(complete),
            response: None,
            response_trailers: None,
            stages: Stages::received(Instant::now()),
            proxy_error: None,
        }
    }

    #[test]
    fn a_request_copy_splits_into_target_headers_and_body() {
        let headers = head(&[
            ("x-request-id", "abc"),
            ("x-a", "1"),
            ("x-a", "2"),
            ("content-type", "application/json"),
        ]);
        let uri: Uri = "/v2/models/m/infer?x=1&y=%20".parse().unwrap();
        let mut capture = Capture::request(5, Some(8), &uri, &headers);
        capture.push(b"abc");
        capture.push(b"defgh");
        let exchange = raw(capture, true).into_exchange();
        assert_eq!(exchange.request.uri, uri);
        assert_eq!(exchange.request_id, "abc");
        assert_eq!(exchange.request.method, Method::PUT);
        assert_eq!(exchange.request.headers, HeaderCopy::copy_from(&headers));
        // The cap is on the body alone, not on head and body together.
        assert_eq!(&exchange.request_body.bytes[..], b"abcde");
        assert_eq!(exchange.request_body.size, 8);
        assert!(exchange.request_body.truncated && exchange.request_body.complete);
        assert!(exchange.response.is_none());
    }

    #[test]
    fn an_absolute_target_and_an_empty_body_survive_the_split() {
        for text in [
            "http://model:8080/v2/health/ready",
            "https://user@model/p?q",
            "*",
            "/",
        ] {
            let uri: Uri = text.parse().unwrap();
            let capture = Capture::request(1024, None, &uri, &head(&[("x-request-id", "r")]));
            let exchange = raw(capture, false).into_exchange();
            assert_eq!(exchange.request.uri, uri, "{text}");
            assert!(exchange.request_body.bytes.is_empty());
            assert!(!exchange.request_body.truncated && !exchange.request_body.complete);
        }
    }

    #[test]
    fn a_long_head_does_not_take_the_body_room() {
        let token = "x".repeat(4000);
        let mut headers = head(&[("x-request-id", "r")]);
        headers.insert("authorization", token.parse().unwrap());
        let uri = Uri::from_static("/p");
        let mut capture = Capture::request(1 << 20, Some(1024), &uri, &headers);
        let reserved = capture.buf.capacity();
        assert!(reserved >= capture.head_len + 1024);
        capture.push(&[b'b'; 1024]);
        assert_eq!(
            capture.buf.capacity(),
            reserved,
            "the body reallocated the buffer"
        );
    }

    #[test]
    fn an_http2_asterisk_target_keeps_its_path() {
        let uri = Uri::builder()
            .scheme("http")
            .authority("model:8080")
            .path_and_query("*")
            .build()
            .unwrap();
        let capture = Capture::request(16, None, &uri, &head(&[("x-request-id", "r")]));
        assert_eq!(raw(capture, true).into_exchange().request.uri.path(), "*");
    }

    #[test]
    fn a_response_copy_splits_and_a_missing_request_copy_is_empty() {
        let headers = head(&[("content-type", "text/plain"), ("server", "t")]);
        let mut capture = Capture::response(1024, Some(2), &headers);
        capture.push(b"ok");
        let mut raw = raw(Capture::new(0, None), true);
        raw.request = RawCopy::default();
        raw.response = Some((StatusCode::CREATED, capture.into_raw(true)));
        let exchange = raw.into_exchange();
        let response = exchange.response.expect("response");
        assert_eq!(response.status, StatusCode::CREATED);
        assert_eq!(response.headers, HeaderCopy::copy_from(&headers));
        assert_eq!(&exchange.response_body.bytes[..], b"ok");
        assert_eq!(exchange.request.uri, Uri::from_static("/"));
        assert!(exchange.request.headers.is_empty() && exchange.request_id.is_empty());
    }

    #[test]
    fn capture_with_zero_cap_only_counts() {
        let mut capture = Capture::new(0, None);
        capture.push(b"abc");
        let copy = capture.finish(false);
        assert!(copy.bytes.is_empty());
        assert_eq!(copy.size, 3);
        assert!(copy.truncated && !copy.complete);
    }
}
