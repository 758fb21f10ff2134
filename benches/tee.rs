//! The tee's cost per exchange: the body copy alone, each body wrapper with
//! the tee off and on, and a whole exchange (both wrappers, offered to a
//! real mirror queue drained by a `Discard` worker thread).
//!
//! Bodies are polled to the end with a no-op waker: `Full` and an iterator
//! stream are always ready, so no runtime is involved. Tee-on cases include
//! what the handler does for the tee (cloning the heads into the exchange);
//! the difference from the tee-off case is the tee's cost.
//!
//! Run: `cargo bench --bench tee`.

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{Either, Full, StreamBody};
use sidewatch::mirror::{self, Discard, MirrorSender};
use sidewatch::proxy::limit::BodyLimit;
use sidewatch::proxy::tee::{Capture, ExchangeCell, RequestTap, ResponseMeta, ResponseTap, settle};
use sidewatch::telemetry::{ProxyStats, ThreadStats};

// The binary's allocator: the cost of handing an exchange's memory to the
// mirror thread depends on it (glibc serialises cross-thread frees).
#[global_allocator]
static ALLOCATOR: sidewatch::allocator::Mimalloc = sidewatch::allocator::Mimalloc;

const KIB: usize = 1024;
const MAX_BODY: u64 = 16 * 1024 * 1024;
const MAX_PAYLOAD: usize = 1024 * 1024;

type Frames = tokio_stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>;
type RequestBody = Either<Full<Bytes>, StreamBody<Frames>>;

/// A request body as the benches feed it: one frame, or 1 KiB frames.
#[derive(Clone, Copy)]
enum Shape {
    OneKib,
    SixteenFrames,
}

/// What a tee-on exchange needs, shared by all iterations.
struct Fixture {
    chunk: Bytes,
    /// The request head as the handler has it when it opens the tee.
    request: http::request::Parts,
    response_headers: HeaderMap,
    /// A proxy thread's handle on the counters, as `Shared` holds it.
    stats: Arc<ThreadStats>,
    model: Arc<str>,
    client: SocketAddr,
}

// === impl Fixture ===

impl Fixture {
    fn new() -> Self {
        let mut request_headers = HeaderMap::new();
        for (name, value) in [
            ("host", "127.0.0.1:8000"),
            ("user-agent", "bench/1.0"),
            ("accept", "*/*"),
            ("content-type", "application/json"),
            ("content-length", "1024"),
            ("x-request-id", "0f6c2b1e-3d4a-4c5b-8e9f-a0b1c2d3e4f5"),
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            ("x-forwarded-for", "127.0.0.1"),
            ("x-forwarded-proto", "http"),
        ] {
            request_headers.insert(name, HeaderValue::from_static(value));
        }
        let mut response_headers = HeaderMap::new();
        for (name, value) in [
            ("server", "nginx/1.22.1"),
            ("date", "Wed, 25 Nov 2026 19:00:00 GMT"),
            ("content-type", "application/json"),
            ("content-length", "1024"),
            ("x-request-id", "0f6c2b1e-3d4a-4c5b-8e9f-a0b1c2d3e4f5"),
        ] {
            response_headers.insert(name, HeaderValue::from_static(value));
        }
        Fixture {
            chunk: Bytes::from(vec![b'x'; KIB]),
            request: {
                let (mut parts, ()) = http::Request::post("/v2/models/bench/infer")
                    .body(())
                    .expect("a valid request")
                    .into_parts();
                parts.headers = request_headers;
                parts
            },
            response_headers,
            stats: Arc::new(ThreadStats(Arc::new(ProxyStats::new(vec![
                "bench".to_string(),
            ])))),
            model: Arc::from("bench"),
            client: SocketAddr::from(([127, 0, 0, 1], 40000)),
        }
    }

    /// Opens an exchange as the handler does: the cell and the request's
    /// copy, head included.
    fn open(&self, sink: &Arc<MirrorSender>, shape: Shape) -> (Capture, Arc<ExchangeCell>) {
        let hint = matches!(shape, Shape::OneKib).then_some(KIB as u64);
        let model = Some(self.model.clone());
        ExchangeCell::open(
            sink.clone(),
            self.client,
            model,
            &self.request,
            Instant::now(),
            MAX_PAYLOAD,
            hint,
        )
    }

    /// A request body behind its tap: `Full` (exact length, like a
    /// request with `content-length`) or a 16-frame stream (no length).
    /// With the tee on, the tap's copy already holds the request head, as
    /// the handler's does.
    fn request_tap(
        &self,
        shape: Shape,
        tee: Option<(Capture, Arc<ExchangeCell>)>,
    ) -> RequestTap<RequestBody> {
        let body = match shape {
            Shape::OneKib => Either::Left(Full::new(self.chunk.clone())),
            Shape::SixteenFrames => Either::Right(StreamBody::new(tokio_stream::iter(
                (0..16)
                    .map(|_| Ok(Frame::data(self.chunk.clone())))
                    .collect::<Vec<_>>(),
            ))),
        };
        let limit = BodyLimit::new(MAX_BODY, false);
        RequestTap::new(body, limit, None, tee)
    }

    fn response_tap(&self, cell: Option<Arc<ExchangeCell>>) -> ResponseTap<Full<Bytes>> {
        let now = Instant::now();
        let meta = ResponseMeta {
            stats: self.stats.clone(),
            model: 0,
            status: 200,
            received: now,
            upstream_sent: Some(now),
            first_byte: Some(now),
            overhead: Some(Duration::from_micros(5)),
            proxy_error: None,
            spans: None,
        };
        let body = Full::new(self.chunk.clone());
        let tee = cell.map(|cell| {
            let hint = body.size_hint().exact();
            let capture = Capture::response(MAX_PAYLOAD, hint, &self.response_headers);
            (capture, StatusCode::OK, cell)
        });
        ResponseTap::new(body, meta, tee)
    }
}

/// Polls a body to its end; every body here is always ready.
fn drain<B: Body<Data = Bytes>>(body: B) -> usize
where
    B::Error: std::fmt::Debug,
{
    let mut body = pin!(body);
    let mut cx = Context::from_waker(Waker::noop());
    let mut bytes = 0;
    loop {
        match body.as_mut().poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => bytes += frame.data_ref().map_or(0, |d| d.len()),
            Poll::Ready(Some(Err(error))) => panic!("body failed: {error:?}"),
            Poll::Ready(None) => return bytes,
            Poll::Pending => panic!("bench bodies are always ready"),
        }
    }
}

/// Runs `f` with a mirror whose worker discards, then reports what it saw,
/// so a queue that overflowed (and made tee-on cheaper) is not hidden.
fn with_mirror(name: &str, f: impl FnOnce(&Arc<MirrorSender>)) {
    let (sink, workers) = mirror::start(65_536, usize::MAX, vec![Box::new(Discard)]);
    let sink = Arc::new(sink);
    f(&sink);
    let stats = sink.stats().clone();
    drop(sink);
    workers.finish(Instant::now() + Duration::from_secs(10));
    if stats.offered() == 0 {
        return; // filtered out on the command line
    }
    let dropped: u64 = stats.dropped_by_reason().map(|(_, n)| n).sum();
    eprintln!(
        "{name}: mirror offered {}, consumed {}, dropped {dropped}",
        stats.offered(),
        stats.consumed()
    );
}

fn capture(c: &mut Criterion) {
    let chunk = vec![b'x'; KIB];
    let mut group = c.benchmark_group("capture");
    group.throughput(Throughput::Elements(1));
    group.bench_function("1KiB in 1 frame", |b| {
        b.iter(|| {
            let mut capture = Capture::new(MAX_PAYLOAD, Some(KIB as u64));
            capture.push(black_box(&chunk));
            black_box(capture.finish(true))
        })
    });
    group.bench_function("16KiB in 16 frames", |b| {
        b.iter(|| {
            let mut capture = Capture::new(MAX_PAYLOAD, Some(16 * KIB as u64));
            for _ in 0..16 {
                capture.push(black_box(&chunk));
            }
            black_box(capture.finish(true))
        })
    });
    group.finish();
}

fn taps(c: &mut Criterion) {
    let fx = Fixture::new();
    let mut group = c.benchmark_group("tap");
    group.throughput(Throughput::Elements(1));
    for (label, shape) in [("1KiB", Shape::OneKib), ("16x1KiB", Shape::SixteenFrames)] {
        group.bench_function(format!("request {label} tee off"), |b| {
            b.iter(|| drain(fx.request_tap(shape, None)))
        });
        with_mirror(&format!("request {label} tee on"), |sink| {
            group.bench_function(format!("request {label} tee on"), |b| {
                b.iter(|| drain(fx.request_tap(shape, Some(fx.open(sink, shape)))))
            });
        });
    }
    group.bench_function("response 1KiB tee off", |b| {
        b.iter(|| drain(fx.response_tap(None)))
    });
    with_mirror("response 1KiB tee on", |sink| {
        group.bench_function("response 1KiB tee on", |b| {
            b.iter(|| {
                let tee = fx.open(sink, Shape::OneKib);
                let cell = tee.1.clone();
                settle(&mut Some(tee), true);
                drain(fx.response_tap(Some(cell)))
            })
        });
    });
    group.finish();
}

/// One whole exchange: request and response bodies, then the cell's
/// hand-off to the mirror when both halves let go.
fn exchange(c: &mut Criterion) {
    let fx = Fixture::new();
    let mut group = c.benchmark_group("exchange");
    group.throughput(Throughput::Elements(1));
    let run =
        |group: &mut BenchmarkGroup<'_, WallTime>, name: &str, sink: Option<&Arc<MirrorSender>>| {
            group.bench_function(name, |b| {
                b.iter(|| {
                    let tee = sink.map(|s| fx.open(s, Shape::OneKib));
                    let cell = tee.as_ref().map(|(_, cell)| cell.clone());
                    let sent = drain(fx.request_tap(Shape::OneKib, tee));
                    let received = drain(fx.response_tap(cell));
                    sent + received
                })
            });
        };
    run(&mut group, "1KiB POST tee off", None);
    with_mirror("exchange 1KiB POST tee on", |sink| {
        run(&mut group, "1KiB POST tee on", Some(sink));
    });
    // As the proxy threads send: in batches, handed over when full.
    with_mirror("exchange 1KiB POST tee on, batched", |sink| {
        sink.batch_on_this_thread();
        run(&mut group, "1KiB POST tee on, batched", Some(sink));
        mirror::stop_batching_on_this_thread();
    });
    // No worker: the queue fills and every exchange is dropped (and freed)
    // on this thread. The gap to "tee on" is the hand-off to another thread.
    let (sink, _workers) = mirror::start(1, usize::MAX, Vec::new());
    let sink = Arc::new(sink);
    run(&mut group, "1KiB POST tee on, freed here", Some(&sink));
    group.finish();
}

criterion_group!(benches, capture, taps, exchange);
criterion_main!(benches);
