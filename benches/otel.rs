//! What OpenTelemetry costs a request when OTLP export is on: the three
//! calls the handler makes (`start`: extract the client's context, start the
//! SERVER span, write the upstream's `traceparent`; `upstream_started`: the
//! CLIENT span; `finish`: end both and queue them for export), for a new
//! sampled trace, a client's sampled trace and a client's unsampled one.
//! The `off` case is what the handler does without an endpoint
//! (`ensure_traceparent`); every case includes building the request head,
//! so differences from `off` are the spans' cost.
//!
//! Spans are exported to an in-process OTLP receiver that discards them;
//! the bench prints how many the export queue had to drop (if many, the
//! sampled cases are flattered, since a dropped span is cheaper).
//!
//! Run: `cargo bench --bench otel`.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use criterion::{Criterion, criterion_group, criterion_main};
use http::request::Parts;
use http::{HeaderValue, Request};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use sidewatch::config::{Config, Overrides};
use sidewatch::proxy::headers::ensure_traceparent;
use sidewatch::telemetry::otel::Otel;

/// An OTLP receiver that accepts and forgets.
struct Sink;

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        _: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn head(traceparent: Option<&'static str>) -> Parts {
    let mut request = Request::post("/v2/models/iris/infer")
        .header("host", "127.0.0.1:8000")
        .header("content-type", "application/json")
        .header("user-agent", "bench/1");
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    let (parts, ()) = request.body(()).expect("request").into_parts();
    parts
}

fn spans(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let collector: SocketAddr = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(Sink))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        addr
    });
    let yaml = format!(
        "upstream: http://127.0.0.1:8080\nmodels: [{{ name: iris }}]\n\
         telemetry: {{ otlp_endpoint: 'http://{collector}', export_interval: 100ms, queue: 65536 }}\n"
    );
    let config = Config::from_yaml(&yaml, &Overrides::default()).expect("config");
    let otel = Otel::start(&config)
        .expect("otel starts")
        .expect("an endpoint is set");
    let tracing = otel.tracing().clone();
    let client: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
    let request_id = HeaderValue::from_static("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");

    let mut group = c.benchmark_group("otel");
    group.bench_function("off", |b| {
        b.iter(|| {
            let mut parts = head(None);
            ensure_traceparent(&mut parts.headers);
            black_box(parts);
        })
    });
    let cases = [
        ("new_trace_sampled", None),
        (
            "client_sampled",
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        ),
        (
            "client_unsampled",
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),
        ),
    ];
    for (name, traceparent) in cases {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut parts = head(traceparent);
                let mut spans = tracing.start(&mut parts, client, Some("iris"), &request_id, false);
                spans.upstream_started();
                spans.finish(200, None, true);
                black_box(parts);
            })
        });
    }
    group.finish();

    let stats = otel.stats();
    println!(
        "spans exported: {}, dropped (queue full): {}, failed: {}",
        stats.spans.exported.load(Ordering::Relaxed),
        stats.spans.dropped.load(Ordering::Relaxed),
        stats.spans.failed.load(Ordering::Relaxed),
    );
    drop(tracing);
    otel.shutdown();
}

criterion_group!(benches, spans);
criterion_main!(benches);
