//! The admin server on its own port: `/metrics`, `/healthz`, `/readyz`,
//! `/v1/stats`, `/v1/drift`, `/v1/anomalies`, `/v1/alerts` and `/v1/feedback`. It reads
//! snapshots and atomics only, so a scrape never slows the proxy; posting
//! feedback takes each model's join-store lock briefly per item.
//!
//! DESIGN §8 wants mutating endpoints (`POST /v1/feedback`) behind an admin
//! token; that arrives with `security.auth.admin_tokens`. Until then the
//! admin port must only be reachable from trusted networks.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::alert::AlertRegistry;
use crate::mirror::MirrorStats;
use crate::monitor::{MonitorView, feedback};
use crate::proxy::error::json_error;
use crate::telemetry::ProxyStats;
use crate::telemetry::latency::Series;
use crate::telemetry::metrics::BuildInfo;

const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the admin endpoints read.
#[derive(Debug)]
pub struct AdminState {
    registry: Registry,
    stats: Arc<ProxyStats>,
    mirror: Option<Arc<MirrorStats>>,
    monitor: Option<MonitorView>,
    health_url: Uri,
    health_timeout: Duration,
    health_client: Client<HttpConnector, Empty<Bytes>>,
    draining: AtomicBool,
    alerts: Option<Arc<AlertRegistry>>,
}

impl AdminState {
    /// Registers every subsystem's metrics and prepares the readiness probe.
    pub fn new(
        stats: Arc<ProxyStats>,
        mirror: Option<Arc<MirrorStats>>,
        monitor: Option<MonitorView>,
        health_url: Uri,
        request_timeout: Duration,
    ) -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(BuildInfo));
        registry.register_collector(Box::new(stats.clone()));
        if let Some(mirror) = &mirror {
            registry.register_collector(Box::new(mirror.clone()));
        }
        if let Some(monitor) = &monitor {
            for collector in monitor.collectors() {
                registry.register_collector(collector);
            }
        }
        let health_client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .build(HttpConnector::new());
        AdminState {
            registry,
            stats,
            mirror,
            monitor,
            health_url,
            health_timeout: request_timeout.min(Duration::from_secs(2)),
            health_client,
            draining: AtomicBool::new(false),
            alerts: None,
        }
    }

    /// Adds a collector to `/metrics`.
    pub fn with_collector(
        mut self,
        collector: Box<dyn prometheus_client::collector::Collector>,
    ) -> Self {
        self.registry.register_collector(collector);
        self
    }

    /// Serves `/v1/alerts` and the alert metrics from the engine's registry.
    pub fn with_alerts(mut self, alerts: Arc<AlertRegistry>) -> Self {
        self.registry.register_collector(Box::new(alerts.clone()));
        self.alerts = Some(alerts);
        self
    }

    /// Marks the sidecar as shutting down, so `/readyz` turns away new traffic.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// The Prometheus text exposition of every metric.
    pub fn metrics_text(&self) -> String {
        let mut text = String::new();
        if let Err(error) =
            prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
        {
            tracing::warn!(%error, "Encoding metrics failed.");
        }
        text
    }

    /// The `/v1/stats` document.
    pub fn stats_json(&self) -> serde_json::Value {
        let latency = self.stats.latency();
        let series = |s: &Series| {
            json!({
                "count": s.count(),
                "p50": s.quantile_seconds(0.5),
                "p90": s.quantile_seconds(0.9),
                "p99": s.quantile_seconds(0.99),
                "p999": s.quantile_seconds(0.999),
                "max": s.max_seconds(),
            })
        };
        let mirror = match &self.mirror {
            Some(m) => json!({
                "enabled": true,
                "queue_depth": m.queue_depth(),
                "offered": m.offered(),
                "consumed": m.consumed(),
                "dropped": m
                    .dropped_by_reason()
                    .map(|(reason, n)| (reason.to_owned(), json!(n)))
                    .collect::<serde_json::Map<_, _>>(),
            }),
            None => json!({ "enabled": false }),
        };
        json!({
            "requests": self.stats.requests_total(),
            "connections_open": self.stats.connections_open(),
            "latency_seconds": {
                "request": series(&latency.request),
                "upstream": series(&latency.upstream),
                "overhead": series(&latency.overhead),
            },
            "mirror": mirror,
        })
    }

    async fn readiness(&self) -> Response<Full<Bytes>> {
        if self.draining.load(Ordering::Acquire) {
            return json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "sidewatch is shutting down",
                "shutting_down",
            );
        }
        let request = Request::get(self.health_url.clone()).body(Empty::new());
        let Ok(request) = request else {
            return json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "bad health URL",
                "upstream_not_ready",
            );
        };
        let outcome =
            tokio::time::timeout(self.health_timeout, self.health_client.request(request)).await;
        let reason = match outcome {
            Ok(Ok(response)) if response.status().is_success() => {
                return json_response(StatusCode::OK, &json!({ "status": "ready" }));
            }
            Ok(Ok(response)) => format!("answered {}", response.status()),
            Ok(Err(error)) => format!("failed: {}", innermost(&error)),
            Err(_) => format!(
                "did not answer within {}",
                humantime::format_duration(self.health_timeout)
            ),
        };
        json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("upstream health check GET {} {reason}", self.health_url),
            "upstream_not_ready",
        )
    }

    async fn route(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        match (request.method(), request.uri().path()) {
            (&Method::GET, "/metrics") => {
                let mut response = Response::new(Full::new(Bytes::from(self.metrics_text())));
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE));
                response
            }
            (&Method::GET, "/healthz") => json_response(StatusCode::OK, &json!({ "status": "ok" })),
            (&Method::GET, "/readyz") => self.readiness().await,
            (&Method::GET, "/v1/stats") => json_response(StatusCode::OK, &self.stats_json()),
            (&Method::GET, "/v1/drift") => match &self.monitor {
                Some(monitor) => match serde_json::to_value(monitor.reports()) {
                    Ok(body) => json_response(StatusCode::OK, &body),
                    Err(error) => json_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &format!("cannot encode the drift report: {error}"),
                        "internal",
                    ),
                },
                None => json_error(
                    StatusCode::NOT_FOUND,
                    "monitoring is off (mirror.enabled is false)",
                    "monitoring_off",
                ),
            },
            (&Method::GET, "/v1/anomalies") => match &self.monitor {
                Some(monitor) => match serde_json::to_value(monitor.anomalies()) {
                    Ok(body) => json_response(StatusCode::OK, &body),
                    Err(error) => json_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &format!("cannot encode the anomaly report: {error}"),
                        "internal",
                    ),
                },
                None => json_error(
                    StatusCode::NOT_FOUND,
                    "monitoring is off (mirror.enabled is false)",
                    "monitoring_off",
                ),
            },
            (&Method::GET, "/v1/alerts") => match &self.alerts {
                Some(alerts) => match serde_json::to_value(alerts.document()) {
                    Ok(body) => json_response(StatusCode::OK, &body),
                    Err(error) => json_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &format!("cannot encode the alerts: {error}"),
                        "internal",
                    ),
                },
                None => json_error(
                    StatusCode::NOT_FOUND,
                    "no alert rules are configured (alerts.rules)",
                    "alerts_off",
                ),
            },
            (&Method::POST, "/v1/feedback") => self.feedback(request).await,
            (&Method::GET, "/v1/feedback") => {
                match self.monitor.as_ref().and_then(|m| m.feedback()) {
                    Some(hub) => json_response(StatusCode::OK, &hub.summary()),
                    None => feedback_off(self.monitor.is_some()),
                }
            }
            (_, "/v1/feedback") => json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "only GET and POST are allowed here",
                "method_not_allowed",
            ),
            (
                _,
                "/metrics" | "/healthz" | "/readyz" | "/v1/stats" | "/v1/drift" | "/v1/anomalies"
                | "/v1/alerts",
            ) => json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "only GET is allowed here",
                "method_not_allowed",
            ),
            (_, path) => json_error(
                StatusCode::NOT_FOUND,
                &format!("no admin endpoint at {path}"),
                "not_found",
            ),
        }
    }
}

impl AdminState {
    /// `POST /v1/feedback`: ground truth for earlier predictions.
    async fn feedback(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let Some(hub) = self.monitor.as_ref().and_then(|m| m.feedback()) else {
            return feedback_off(self.monitor.is_some());
        };
        let too_large = || {
            json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "a feedback body may hold at most {} bytes; split the batch",
                    feedback::MAX_BODY
                ),
                "body_too_large",
            )
        };
        let declared = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > feedback::MAX_BODY as u64) {
            return too_large();
        }
        let body = match Limited::new(request.into_body(), feedback::MAX_BODY)
            .collect()
            .await
        {
            Ok(body) => body.to_bytes(),
            Err(error) if error.is::<http_body_util::LengthLimitError>() => return too_large(),
            Err(error) => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    &format!("cannot read the request body: {error}"),
                    "bad_body",
                );
            }
        };
        let (status, body) = hub.answer(&body);
        json_response(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            &body,
        )
    }
}

fn feedback_off(monitoring: bool) -> Response<Full<Bytes>> {
    let message = if monitoring {
        "feedback is off (feedback.enabled is false)"
    } else {
        "monitoring is off (mirror.enabled is false)"
    };
    json_error(StatusCode::NOT_FOUND, message, "feedback_off")
}

fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Serves the admin API until `stop` flips.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(state.route(request).await) }
                    });
                    let mut builder = hyper::server::conn::http1::Builder::new();
                    builder.timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(10));
                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                });
            }
            _ = stop.changed() => break,
        }
    }
}
