//! OpenTelemetry export: a sidecar with `telemetry.otlp_endpoint` pointing
//! at an OTLP gRPC receiver written for the test (the collector's tonic
//! services from the OTLP protos), in front of an upstream that records the
//! `traceparent` it got. The tests check span names, kinds, parentage,
//! attributes and status, what the model server is told, sampling, audit log
//! records, and that a collector that is down costs requests nothing.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{DEADLINE, closed_port, next_received, poll, send, sidecar, upstream};
use http::{Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use sidewatch::Sidecar;
use sidewatch::audit::Entry;
use sidewatch::telemetry::otel::RecordMeta;
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// What the test collector received.
#[derive(Clone, Default)]
struct Collector {
    /// Each span with its resource's `service.name`.
    spans: Arc<Mutex<Vec<(String, Span)>>>,
    logs: Arc<Mutex<Vec<(String, LogRecord)>>>,
}

// === impl Collector ===

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().expect("collector lock");
        for resource in request.into_inner().resource_spans {
            let service = service_name(resource.resource.as_ref().map(|r| &r.attributes[..]));
            for scope in resource.scope_spans {
                spans.extend(scope.spans.into_iter().map(|s| (service.clone(), s)));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let mut logs = self.logs.lock().expect("collector lock");
        for resource in request.into_inner().resource_logs {
            let service = service_name(resource.resource.as_ref().map(|r| &r.attributes[..]));
            for scope in resource.scope_logs {
                logs.extend(scope.log_records.into_iter().map(|l| (service.clone(), l)));
            }
        }
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

impl Collector {
    /// Starts an OTLP gRPC receiver on `127.0.0.1:0`.
    async fn start() -> (SocketAddr, Collector) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("collector addr");
        let collector = Collector::default();
        let server = Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .add_service(LogsServiceServer::new(collector.clone()));
        tokio::spawn(server.serve_with_incoming(TcpIncoming::from(listener)));
        (addr, collector)
    }

    /// Waits until both spans of the trace `trace` arrived: (server, client).
    async fn request_spans(&self, trace: &[u8]) -> (String, Span, Span) {
        poll("both spans of the request reached the collector", || {
            let spans = self.spans.lock().expect("collector lock");
            let of_trace: Vec<&(String, Span)> =
                spans.iter().filter(|(_, s)| s.trace_id == trace).collect();
            let server = of_trace
                .iter()
                .find(|(_, s)| s.kind == SpanKind::Server as i32);
            let client = of_trace
                .iter()
                .find(|(_, s)| s.kind == SpanKind::Client as i32);
            let found = match (server, client) {
                (Some((service, server)), Some((_, client))) => {
                    Some((service.clone(), server.clone(), client.clone()))
                }
                _ => None,
            };
            async move { found }
        })
        .await
    }

    fn spans_of(&self, trace: &[u8]) -> usize {
        let spans = self.spans.lock().expect("collector lock");
        spans.iter().filter(|(_, s)| s.trace_id == trace).count()
    }
}

fn service_name(attributes: Option<&[KeyValue]>) -> String {
    attributes
        .and_then(|a| find(a, "service.name"))
        .unwrap_or_default()
}

/// An attribute's value as text (strings as they are, numbers and bools
/// formatted).
fn find(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    match value.value.as_ref()? {
        Value::StringValue(s) => Some(s.clone()),
        Value::IntValue(i) => Some(i.to_string()),
        Value::BoolValue(b) => Some(b.to_string()),
        Value::DoubleValue(d) => Some(d.to_string()),
        other => Some(format!("{other:?}")),
    }
}

fn attr(span: &Span, key: &str) -> Option<String> {
    find(&span.attributes, key)
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Sends an inference request (with `given` as its traceparent) and
/// returns what the model server received, with its traceparent split.
async fn traceparent_upstream(
    sidecar: &Sidecar,
    model: &mut common::Upstream,
    given: Option<&str>,
) -> (common::Received, (String, String, String)) {
    let (parts, _) = send(infer(sidecar, given)).await;
    assert_eq!(parts.status, 200);
    let received = next_received(model).await;
    let split = split_traceparent(
        received.headers["traceparent"]
            .to_str()
            .expect("ascii traceparent"),
    );
    (received, split)
}

/// `(trace id, parent id, flags)` of a W3C traceparent.
fn split_traceparent(value: &str) -> (String, String, String) {
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "traceparent {value:?}");
    assert_eq!(parts[0], "00");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

fn telemetry(collector: SocketAddr, extra: &str) -> String {
    format!(
        "models: [{{ name: iris }}]\n\
         telemetry: {{ otlp_endpoint: 'http://{collector}', service_name: sidewatch-test, \
         export_interval: 50ms, export_timeout: 2s{extra} }}\n"
    )
}

fn infer(sidecar: &Sidecar, traceparent: Option<&str>) -> Request<Full<Bytes>> {
    let mut request = Request::post(format!(
        "http://{}/v2/models/iris/infer",
        sidecar.proxy_addr()
    ))
    .header("content-type", "application/json")
    .header("user-agent", "otel-test/1");
    if let Some(traceparent) = traceparent {
        request = request
            .header("traceparent", traceparent)
            .header("tracestate", "vendor=1");
    }
    request
        .body(Full::new(Bytes::from_static(br#"{"inputs":[]}"#)))
        .expect("request")
}

#[tokio::test]
async fn a_client_trace_continues_through_server_and_upstream_spans() {
    let (collector_addr, collector) = Collector::start().await;
    let mut model = common::ok_upstream(r#"{"outputs":[]}"#).await;
    let sidecar = sidecar(model.addr, &telemetry(collector_addr, "")).await;

    let given = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let (parts, _) = send(infer(&sidecar, Some(&given))).await;
    assert_eq!(parts.status, 200);
    let request_id = parts.headers["x-request-id"]
        .to_str()
        .expect("ascii id")
        .to_owned();
    let received = next_received(&mut model).await;

    let (service, server, client) = collector.request_spans(&unhex(CLIENT_TRACE)).await;
    assert_eq!(service, "sidewatch-test");

    // SERVER span: child of the client's span, HTTP semantic conventions.
    assert_eq!(server.name, "POST /v2/models/{model}/infer");
    assert_eq!(hex_of(&server.parent_span_id), CLIENT_SPAN);
    assert_eq!(
        attr(&server, "http.request.method").as_deref(),
        Some("POST")
    );
    assert_eq!(
        attr(&server, "url.path").as_deref(),
        Some("/v2/models/iris/infer")
    );
    assert_eq!(
        attr(&server, "http.route").as_deref(),
        Some("/v2/models/{model}/infer")
    );
    assert_eq!(
        attr(&server, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(
        attr(&server, "network.protocol.version").as_deref(),
        Some("1.1")
    );
    assert_eq!(
        attr(&server, "client.address").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        attr(&server, "server.address").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        attr(&server, "server.port"),
        Some(sidecar.proxy_addr().port().to_string())
    );
    assert_eq!(
        attr(&server, "user_agent.original").as_deref(),
        Some("otel-test/1")
    );
    assert_eq!(attr(&server, "sidewatch.model").as_deref(), Some("iris"));
    assert_eq!(
        attr(&server, "sidewatch.request_id").as_deref(),
        Some(request_id.as_str())
    );
    assert_eq!(attr(&server, "error.type"), None);
    let status = server.status.clone().unwrap_or_default();
    assert_eq!(status.code, StatusCode::Unset as i32);

    // CLIENT span: child of the SERVER span, describing the upstream call.
    assert_eq!(client.name, server.name);
    assert_eq!(client.parent_span_id, server.span_id);
    assert_eq!(
        attr(&client, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(
        attr(&client, "server.port"),
        Some(model.addr.port().to_string())
    );
    assert_eq!(
        attr(&client, "url.full"),
        Some(format!("http://{}/v2/models/iris/infer", model.addr))
    );
    assert!(client.start_time_unix_nano >= server.start_time_unix_nano);
    assert!(client.end_time_unix_nano <= server.end_time_unix_nano);

    // The model server's parent is the CLIENT span, in the client's trace.
    let upstream_traceparent = received.headers["traceparent"]
        .to_str()
        .expect("ascii traceparent");
    let (trace, parent, flags) = split_traceparent(upstream_traceparent);
    assert_eq!(trace, CLIENT_TRACE);
    assert_eq!(parent, hex_of(&client.span_id));
    assert_eq!(flags, "01");
    assert_eq!(
        received.headers.get("tracestate").map(|v| v.as_bytes()),
        Some(&b"vendor=1"[..])
    );
    sidecar.shutdown().await;
}

#[tokio::test]
async fn the_tee_copies_the_traceparent_the_upstream_got() {
    let (collector_addr, _collector) = Collector::start().await;
    for extra in [String::new(), telemetry(collector_addr, "")] {
        let mut model = common::ok_upstream("{}").await;
        let (sidecar, exchanges) = common::teed_sidecar(model.addr, &extra).await;
        let (parts, _) = send(infer(&sidecar, None)).await;
        assert_eq!(parts.status, 200);
        let received = next_received(&mut model).await;
        let exchange = common::next_exchange(&exchanges).await;
        let sent = received.headers["traceparent"].as_bytes();
        assert_eq!(exchange.request.headers.get("traceparent"), Some(sent));
        let (trace, _, _) = split_traceparent(std::str::from_utf8(sent).expect("ascii"));
        assert_eq!(
            sidewatch::telemetry::otel::trace_id_of(&exchange.request.headers),
            Some(trace)
        );
        sidecar.shutdown().await;
    }
}

#[test]
fn bad_telemetry_keys_are_reported_with_their_paths() {
    let yaml = "upstream: http://127.0.0.1:8080\n\
                telemetry: { otlp_endpoint: 'grpc://x', sampling_ratio: 2, colour: blue }\n";
    let problems = sidewatch::Config::from_yaml(yaml, &Default::default())
        .err()
        .map(|e| e.problems())
        .unwrap_or_default();
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["telemetry.colour"], "{problems:?}");

    let yaml = "upstream: http://127.0.0.1:8080\n\
                telemetry: { otlp_endpoint: 'grpc://x', sampling_ratio: 2, export_audit_logs: true }\n";
    let problems = sidewatch::Config::from_yaml(yaml, &Default::default())
        .err()
        .map(|e| e.problems())
        .unwrap_or_default();
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "telemetry.otlp_endpoint",
            "telemetry.sampling_ratio",
            "telemetry.export_audit_logs"
        ],
        "{problems:?}"
    );
    let config =
        sidewatch::Config::from_yaml("upstream: http://127.0.0.1:8080\n", &Default::default())
            .expect("valid");
    assert_eq!(config.telemetry.otlp_endpoint, None);
}

#[tokio::test]
async fn a_request_without_trace_context_starts_a_trace_of_its_own() {
    let (collector_addr, collector) = Collector::start().await;
    let mut model = common::ok_upstream("{}").await;
    let sidecar = sidecar(model.addr, &telemetry(collector_addr, "")).await;

    let (received, (trace, parent, flags)) = traceparent_upstream(&sidecar, &mut model, None).await;
    assert_eq!(flags, "01", "sampling_ratio defaults to 1");
    assert_eq!(
        received.headers.get("tracestate"),
        None,
        "no empty tracestate"
    );

    let (_, server, client) = collector.request_spans(&unhex(&trace)).await;
    assert!(server.parent_span_id.is_empty(), "a root span");
    assert_eq!(client.parent_span_id, server.span_id);
    assert_eq!(parent, hex_of(&client.span_id));
    sidecar.shutdown().await;
}

#[tokio::test]
async fn an_unsampled_client_trace_is_propagated_but_not_exported() {
    let (collector_addr, collector) = Collector::start().await;
    let mut model = common::ok_upstream("{}").await;
    let sidecar = sidecar(model.addr, &telemetry(collector_addr, "")).await;

    let unsampled_trace = "0af7651916cd43dd8448eb211c80319c";
    let given = format!("00-{unsampled_trace}-b7ad6b7169203331-00");
    let (_, (trace, parent, flags)) =
        traceparent_upstream(&sidecar, &mut model, Some(&given)).await;
    assert_eq!(trace, unsampled_trace);
    assert_eq!(flags, "00", "the client's decision is kept");
    assert_ne!(parent, "b7ad6b7169203331", "the proxy's span is the parent");

    // Spans leave in the order they end: once a later, sampled request's
    // spans arrived, the unsampled one's would have too.
    let sampled = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let (parts, _) = send(infer(&sidecar, Some(&sampled))).await;
    assert_eq!(parts.status, 200);
    collector.request_spans(&unhex(CLIENT_TRACE)).await;
    assert_eq!(collector.spans_of(&unhex(unsampled_trace)), 0);
    sidecar.shutdown().await;
}

/// A gRPC answer with `grpc-status: code` in trailers after one message.
fn grpc_answer(code: &'static str) -> Response<common::TestBody> {
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static(code));
    let frames = vec![
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Frame::data(Bytes::from_static(&[
            0, 0, 0, 0, 0,
        ]))),
        Ok(Frame::trailers(trailers)),
    ];
    Response::builder()
        .header("content-type", "application/grpc")
        .body(StreamBody::new(tokio_stream::iter(frames)).boxed())
        .expect("response")
}

/// Calls `method` of the KServe gRPC service over h2 in the trace `trace`.
async fn grpc_call(sidecar: &Sidecar, method: &str, trace: &str) {
    let request = Request::post(format!(
        "http://{}/inference.GRPCInferenceService/{method}",
        sidecar.proxy_addr()
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .header("traceparent", format!("00-{trace}-{CLIENT_SPAN}-01"))
    .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
    .expect("request");
    let response = tokio::time::timeout(DEADLINE, common::h2_client().request(request))
        .await
        .expect("in time")
        .expect("h2 request");
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.expect("body");
}

#[tokio::test]
async fn sampling_ratio_decides_for_new_traces_and_the_client_for_its_own() {
    let (collector_addr, collector) = Collector::start().await;
    let mut model = common::ok_upstream("{}").await;
    let extra = telemetry(collector_addr, ", sampling_ratio: 0.0");
    let sidecar = sidecar(model.addr, &extra).await;

    let (_, (new_trace, _, flags)) = traceparent_upstream(&sidecar, &mut model, None).await;
    assert_eq!(flags, "00", "a new trace at ratio 0 is not sampled");

    // A client that samples its trace gets its spans whatever the ratio;
    // they arrive after any the unsampled request would have made.
    let sampled = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let (parts, _) = send(infer(&sidecar, Some(&sampled))).await;
    assert_eq!(parts.status, 200);
    collector.request_spans(&unhex(CLIENT_TRACE)).await;
    assert_eq!(collector.spans_of(&unhex(&new_trace)), 0);
    sidecar.shutdown().await;
}

#[tokio::test]
async fn grpc_over_h2_is_named_by_its_method_with_the_status_from_trailers() {
    let (collector_addr, collector) = Collector::start().await;
    let mut model = upstream(|received: common::Received| async move {
        match received.uri.path() {
            "/inference.GRPCInferenceService/ModelInfer" => grpc_answer("0"),
            _ => grpc_answer("13"),
        }
    })
    .await;
    let sidecar = sidecar(model.addr, &telemetry(collector_addr, "")).await;

    grpc_call(&sidecar, "ModelInfer", CLIENT_TRACE).await;
    let received = next_received(&mut model).await;
    let (_, server, client) = collector.request_spans(&unhex(CLIENT_TRACE)).await;
    assert_eq!(server.name, "inference.GRPCInferenceService/ModelInfer");
    assert_eq!(attr(&server, "rpc.system").as_deref(), Some("grpc"));
    assert_eq!(
        attr(&server, "rpc.service").as_deref(),
        Some("inference.GRPCInferenceService")
    );
    assert_eq!(attr(&server, "rpc.method").as_deref(), Some("ModelInfer"));
    assert_eq!(attr(&server, "rpc.grpc.status_code").as_deref(), Some("0"));
    assert_eq!(attr(&client, "rpc.grpc.status_code").as_deref(), Some("0"));
    let unset = StatusCode::Unset as i32;
    assert_eq!(server.status.clone().unwrap_or_default().code, unset);
    assert_eq!(
        attr(&server, "network.protocol.version").as_deref(),
        Some("2")
    );
    assert_eq!(
        attr(&client, "network.protocol.version").as_deref(),
        Some("2")
    );
    assert_eq!(client.parent_span_id, server.span_id);
    let (_, parent, _) = split_traceparent(
        received.headers["traceparent"]
            .to_str()
            .expect("ascii traceparent"),
    );
    assert_eq!(parent, hex_of(&client.span_id));

    // INTERNAL in the trailers of an HTTP 200 is a failed call.
    let failing_trace = "0af7651916cd43dd8448eb211c80319c";
    grpc_call(&sidecar, "ModelReady", failing_trace).await;
    let (_, server, client) = collector.request_spans(&unhex(failing_trace)).await;
    let error = StatusCode::Error as i32;
    assert_eq!(attr(&server, "rpc.grpc.status_code").as_deref(), Some("13"));
    assert_eq!(server.status.clone().unwrap_or_default().code, error);
    assert_eq!(attr(&server, "error.type").as_deref(), Some("13"));
    assert_eq!(client.status.clone().unwrap_or_default().code, error);
    sidecar.shutdown().await;
}

#[tokio::test]
async fn a_client_that_gives_up_ends_the_spans_as_cancelled() {
    let (collector_addr, collector) = Collector::start().await;
    let mut model = upstream(|_| std::future::pending::<Response<common::TestBody>>()).await;
    let sidecar = sidecar(model.addr, &telemetry(collector_addr, "")).await;

    let request = Request::post(format!(
        "http://{}/v2/models/iris/infer",
        sidecar.proxy_addr()
    ))
    .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))
    .body(Full::new(Bytes::from_static(b"{}")))
    .expect("request");
    let client = common::h2_client::<Full<Bytes>>();
    let call = tokio::spawn(async move { client.request(request).await });
    next_received(&mut model).await;
    // The client resets its stream while the model server is still busy.
    call.abort();

    let (_, server, client) = collector.request_spans(&unhex(CLIENT_TRACE)).await;
    assert_eq!(attr(&server, "http.response.status_code"), None);
    assert_eq!(
        attr(&server, "sidewatch.response.complete").as_deref(),
        Some("false")
    );
    let unset = StatusCode::Unset as i32;
    assert_eq!(server.status.clone().unwrap_or_default().code, unset);
    assert_eq!(attr(&client, "error.type").as_deref(), Some("cancelled"));
    let error = StatusCode::Error as i32;
    assert_eq!(client.status.clone().unwrap_or_default().code, error);
    sidecar.shutdown().await;
}

#[tokio::test]
async fn a_failed_upstream_call_marks_both_spans_as_errors() {
    let (collector_addr, collector) = Collector::start().await;
    let sidecar = sidecar(closed_port().await, &telemetry(collector_addr, "")).await;

    let given = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let (parts, _) = send(infer(&sidecar, Some(&given))).await;
    assert_eq!(parts.status, 502);

    let (_, server, client) = collector.request_spans(&unhex(CLIENT_TRACE)).await;
    let error = StatusCode::Error as i32;
    assert_eq!(server.status.clone().unwrap_or_default().code, error);
    assert_eq!(
        attr(&server, "http.response.status_code").as_deref(),
        Some("502")
    );
    assert_eq!(
        attr(&server, "error.type").as_deref(),
        Some("upstream_unreachable")
    );
    assert_eq!(client.status.clone().unwrap_or_default().code, error);
    assert_eq!(
        attr(&client, "error.type").as_deref(),
        Some("upstream_unreachable")
    );
    assert_eq!(attr(&client, "http.response.status_code"), None);
    sidecar.shutdown().await;
}

#[tokio::test]
async fn audit_entries_are_exported_as_log_records_in_their_trace() {
    let (collector_addr, collector) = Collector::start().await;
    let model = common::ok_upstream("{}").await;
    let sidecar = sidecar(
        model.addr,
        &telemetry(collector_addr, ", export_audit_logs: true"),
    )
    .await;
    let logs = sidecar.audit_logs().expect("export_audit_logs is on");

    let entry = Entry {
        request_id: "req-42".into(),
        trace_id: Some(CLIENT_TRACE.into()),
        model: Some("iris".into()),
        route: "POST /v2/models/iris/infer".into(),
        status: 200,
        ..Entry::default()
    };
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    logs.export(
        &entry,
        RecordMeta {
            seq: Some(7),
            time: None,
            traceparent: Some(&traceparent),
        },
    );

    let (service, record) = poll("the audit record reached the collector", || {
        let found = collector
            .logs
            .lock()
            .expect("collector lock")
            .first()
            .cloned();
        async move { found }
    })
    .await;
    assert_eq!(service, "sidewatch-test");
    assert_eq!(record.event_name, "sidewatch.audit");
    assert_eq!(hex_of(&record.trace_id), CLIENT_TRACE);
    assert_eq!(hex_of(&record.span_id), CLIENT_SPAN);
    assert_eq!(
        find(&record.attributes, "sidewatch.request_id").as_deref(),
        Some("req-42")
    );
    assert_eq!(
        find(&record.attributes, "sidewatch.model").as_deref(),
        Some("iris")
    );
    assert_eq!(
        find(&record.attributes, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(
        find(&record.attributes, "sidewatch.audit.seq").as_deref(),
        Some("7")
    );
    let body = match record.body.and_then(|b| b.value) {
        Some(Value::StringValue(body)) => body,
        other => panic!("body is not a string: {other:?}"),
    };
    let parsed: Entry = serde_json::from_str(&body).expect("the body is the entry's JSON");
    assert_eq!(parsed, entry);
    sidecar.shutdown().await;
}

#[tokio::test]
async fn the_live_audit_log_exports_each_request_in_its_trace() {
    let (collector_addr, collector) = Collector::start().await;
    let model = common::ok_upstream("{}").await;
    let dir = std::env::temp_dir().join(format!(
        "sidewatch-otel-audit-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    let (secret, _) = sidewatch::audit::generate_keys(&dir.join("keys")).expect("keys");
    let extra = format!(
        "{}audit: {{ dir: '{}', signing_key: '{}' }}\n",
        telemetry(collector_addr, ", export_audit_logs: true"),
        dir.join("log").display(),
        secret.display()
    );
    let sidecar = sidecar(model.addr, &extra).await;
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let (parts, _) = send(infer(&sidecar, Some(&traceparent))).await;
    assert_eq!(parts.status, 200);
    let request_id = parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("request id")
        .to_owned();

    let (_, server, client) = collector.request_spans(&unhex(CLIENT_TRACE)).await;
    let record = poll("the request's audit entry reached the collector", || {
        let found = collector
            .logs
            .lock()
            .expect("collector lock")
            .iter()
            .map(|(_, record)| record.clone())
            .find(|r| find(&r.attributes, "sidewatch.request_id").as_deref() == Some(&request_id));
        async move { found }
    })
    .await;
    // Linked to the upstream call's span, in the client's trace.
    assert_eq!(hex_of(&record.trace_id), CLIENT_TRACE);
    assert_eq!(record.span_id, client.span_id);
    assert_eq!(client.parent_span_id, server.span_id);
    let body = match record.body.and_then(|b| b.value) {
        Some(Value::StringValue(body)) => body,
        other => panic!("body is not a string: {other:?}"),
    };
    let entry: Entry = serde_json::from_str(&body).expect("the body is the entry's JSON");
    assert_eq!(entry.request_id, request_id);
    assert_eq!(entry.trace_id.as_deref(), Some(CLIENT_TRACE));
    assert_eq!(entry.route, "POST /v2/models/iris/infer");
    assert_eq!(entry.status, 200);
    sidecar.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_collector_that_refuses_connections_neither_fails_nor_slows_requests() {
    requests_ignore_the_collector(closed_port().await, true).await;
}

#[tokio::test]
async fn a_collector_that_never_answers_neither_fails_nor_slows_requests() {
    // Connections complete in the kernel's backlog, but nothing ever reads
    // them: each export waits out telemetry.export_timeout.
    let black_hole = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    requests_ignore_the_collector(black_hole.local_addr().expect("addr"), false).await;
    drop(black_hole);
}

/// Sends 40 requests through a sidecar exporting to `collector`, which is
/// not working: all must succeed without waiting on an export, and the
/// metrics must show the spans dropped (and, when the collector refuses
/// connections quickly enough, `refused`, the failed exports).
async fn requests_ignore_the_collector(collector: SocketAddr, refused: bool) {
    let model = common::ok_upstream("{}").await;
    // A tiny queue, so the spans of 40 requests overflow it while the
    // exporter is stuck.
    let sidecar = sidecar(model.addr, &telemetry(collector, ", queue: 4")).await;

    let client = common::http1_client::<Full<Bytes>>();
    let mut slowest = Duration::ZERO;
    for _ in 0..40 {
        let started = Instant::now();
        let response = tokio::time::timeout(DEADLINE, client.request(infer(&sidecar, None)))
            .await
            .expect("in time")
            .expect("request through the proxy");
        assert_eq!(response.status(), 200);
        response.into_body().collect().await.expect("body");
        slowest = slowest.max(started.elapsed());
    }
    // An export attempt waits up to telemetry.export_timeout (2s); a
    // request that waited on one would take at least that long.
    assert!(
        slowest < Duration::from_secs(1),
        "slowest request took {slowest:?}"
    );

    let metric = |text: &str, name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let dropped = poll("the dropped spans show in the metrics", || async {
        let (_, text) = common::admin_get(&sidecar, "/metrics").await;
        let dropped = metric(&text, r#"sidewatch_otel_dropped_total{signal="spans"}"#);
        let failed = metric(
            &text,
            r#"sidewatch_otel_export_failed_total{signal="spans"}"#,
        );
        let exported = metric(&text, r#"sidewatch_otel_exported_total{signal="spans"}"#);
        assert_eq!(exported, 0.0, "nothing reached a collector");
        (dropped > 0.0 && (failed > 0.0 || !refused)).then_some(dropped + failed)
    })
    .await;
    assert!(dropped <= 80.0, "{dropped} of 80 spans dropped or failed");

    let stopping = Instant::now();
    sidecar.shutdown().await;
    // Flushing gives up after export_timeout per signal, whatever the queue.
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "shutdown took {:?}",
        stopping.elapsed()
    );
}
