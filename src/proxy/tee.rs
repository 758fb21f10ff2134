//! The tee: body wrappers that copy frames as they stream past, and the
//! cell that joins the request and response halves into one [`Exchange`].
//!
//! The two halves finish on different tasks (hyper's client connection
//! polls the request body, the server connection polls the response body),
//! so each half holds an `Arc<ExchangeCell>` and fills a write-once slot;
//! whichever half lets go last drops the cell, and the drop offers the
//! assembled exchange to the mirror. Each slot's lock is only ever taken
//! by one half and then by the dropper, never contended, and the proxy
//! never waits for monitoring.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::limit::BodyLimit;
use crate::mirror::{
    BodyCopy, Exchange, HeaderCopy, MirrorSender, RequestHead, ResponseHead, Timings,
};
use crate::telemetry::{LatencySample, ThreadStats};

/// Errors crossing the body wrappers.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A body copy in progress, capped at `max` bytes.
#[derive(Debug)]
pub struct Capture {
    buf: BytesMut,
    max: usize,
    size: u64,
}

/// One exchange being assembled from its two halves.
#[derive(Debug)]
pub struct ExchangeCell {
    sink: Arc<MirrorSender>,
    request_id: String,
    client: std::net::SocketAddr,
    model: Option<Arc<str>>,
    request: Option<RequestHead>,
    received: Instant,
    received_at: std::time::SystemTime,
    // Each half fills its slot once, on the thread that runs the
    // connection; an uncontended lock is cheaper than `OnceLock`'s
    // once-state machine.
    request_body: Mutex<Option<BodyCopy>>,
    response: Mutex<Option<ResponseHalf>>,
}

#[derive(Debug)]
struct ResponseHalf {
    head: ResponseHead,
    body: BodyCopy,
    trailers: Option<HeaderCopy>,
    upstream_sent: Option<Instant>,
    first_byte: Option<Instant>,
    first_body_byte: Option<Instant>,
    done: Instant,
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
    head: ResponseHead,
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
    /// Starts a copy of at most `max` bytes, pre-sized from a length hint.
    pub fn new(max: usize, hint: Option<u64>) -> Self {
        let reserve = hint.map_or(0, |n| n.min(max as u64) as usize);
        Capture {
            buf: BytesMut::with_capacity(reserve),
            max,
            size: 0,
        }
    }

    /// Copies what fits of one frame and counts all of it.
    pub fn push(&mut self, data: &[u8]) {
        self.size += data.len() as u64;
        let room = self.max - self.buf.len();
        if room > 0 {
            self.buf.extend_from_slice(&data[..data.len().min(room)]);
        }
    }

    /// Ends the copy.
    pub fn finish(self, complete: bool) -> BodyCopy {
        BodyCopy {
            truncated: self.size > self.buf.len() as u64,
            bytes: self.buf.freeze(),
            size: self.size,
            complete,
        }
    }
}

// === impl ExchangeCell ===

impl ExchangeCell {
    /// Opens an exchange for a request whose head just arrived.
    pub fn new(
        sink: Arc<MirrorSender>,
        request_id: String,
        client: std::net::SocketAddr,
        model: Option<Arc<str>>,
        request: RequestHead,
        received: Instant,
    ) -> Self {
        ExchangeCell {
            sink,
            request_id,
            client,
            model,
            request: Some(request),
            received,
            received_at: std::time::SystemTime::now(),
            request_body: Mutex::new(None),
            response: Mutex::new(None),
        }
    }
}

impl Drop for ExchangeCell {
    fn drop(&mut self) {
        let Some(request) = self.request.take() else {
            return;
        };
        let response = self.response.get_mut().ok().and_then(Option::take);
        let mut timings = Timings {
            received_at: self.received_at,
            received: self.received,
            upstream_sent: None,
            first_byte: None,
            first_body_byte: None,
            done: None,
        };
        let (head, body, trailers, proxy_error) = match response {
            Some(half) => {
                timings.upstream_sent = half.upstream_sent;
                timings.first_byte = half.first_byte;
                timings.first_body_byte = half.first_body_byte;
                timings.done = Some(half.done);
                (Some(half.head), half.body, half.trailers, half.proxy_error)
            }
            None => (None, BodyCopy::default(), None, None),
        };
        self.sink.offer(Exchange {
            request_id: std::mem::take(&mut self.request_id),
            serial: 0,
            client: self.client,
            model: self.model.take(),
            request,
            request_body: self
                .request_body
                .get_mut()
                .ok()
                .and_then(Option::take)
                .unwrap_or_default(),
            response: head,
            response_body: body,
            response_trailers: trailers,
            timings,
            proxy_error,
        });
    }
}

/// Hands the request body copy, finished, to its exchange (once).
fn settle(capture: &mut Option<(Capture, Arc<ExchangeCell>)>, complete: bool) {
    if let Some((capture, cell)) = capture.take()
        && let Ok(mut slot) = cell.request_body.lock()
    {
        slot.get_or_insert(capture.finish(complete));
    }
}

// === impl RequestTap ===

impl<B: Body> RequestTap<B> {
    /// Wraps a request body; `tee` carries the copy limit and the cell.
    /// `refused` is raised when the limit trips, for callers whose
    /// transport does not carry the body error back (HTTP/2 resets).
    pub fn new(
        inner: B,
        limit: BodyLimit,
        refused: Option<Arc<AtomicBool>>,
        tee: Option<(usize, Arc<ExchangeCell>)>,
    ) -> Self {
        let hint = inner.size_hint().exact();
        RequestTap {
            inner,
            limit,
            refused,
            capture: tee.map(|(max, cell)| (Capture::new(max, hint), cell)),
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
    /// Wraps a response body. `tee` is the cell and copy limit when the tee
    /// is on, with the response head as the client will see it.
    pub fn new(
        inner: B,
        meta: ResponseMeta,
        tee: Option<(usize, Arc<ExchangeCell>, ResponseHead)>,
    ) -> Self {
        let hint = inner.size_hint().exact();
        ResponseTap {
            inner,
            meta: Some(meta),
            tee: tee.map(|(max, cell, head)| ResponseTee {
                capture: Capture::new(max, hint),
                first_body_byte: None,
                head,
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
        let half = ResponseHalf {
            head: tee.head,
            body: tee.capture.finish(complete),
            trailers: tee.trailers,
            upstream_sent: meta.upstream_sent,
            first_byte: meta.first_byte,
            first_body_byte: tee.first_body_byte,
            done,
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
                if tee.first_body_byte.is_none() && !data.is_empty() {
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
