//! One proxied request's spans: a SERVER span for the whole exchange and a
//! CLIENT span for the upstream call under it, with W3C trace context taken
//! from the client and handed on to the model server.
//!
//! The upstream's `traceparent` names the CLIENT span as its parent, so the
//! model server's own spans nest under the upstream call. That header is
//! written when the request head arrives (the tee copies the headers right
//! after), but the CLIENT span starts only when the request is really sent:
//! its id is chosen up front and handed to the SDK through the id generator.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

use http::Version;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, Span};

use super::export::{random_span_id, with_span_id};
use super::route::{Route, method_name, route_of};
use crate::config::{self, UpstreamProtocol};

static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Starts request spans; one per proxy thread, cloned from the pipeline.
#[derive(Debug, Clone)]
pub struct Tracing {
    tracer: SdkTracer,
    propagator: TraceContextPropagator,
    upstream: Arc<UpstreamTarget>,
}

/// The model server, as the CLIENT spans describe it.
#[derive(Debug)]
struct UpstreamTarget {
    /// `http://host:port`, the start of `url.full`.
    base: String,
    host: String,
    port: Option<i64>,
    /// Whether every request goes over h2c, not only gRPC.
    h2c: bool,
}

/// The spans of one request in flight.
#[derive(Debug)]
pub struct RequestSpans {
    tracer: SdkTracer,
    /// The SERVER span, held in a context so it can parent the CLIENT span.
    server: Context,
    /// Chosen up front: the upstream's `traceparent` already names it.
    client_id: SpanId,
    client: Option<Span>,
    name: Cow<'static, str>,
    /// The CLIENT span's attributes, prepared only for sampled requests.
    upstream_attributes: Option<Vec<KeyValue>>,
    /// The `grpc-status` the client got, from headers or trailers.
    grpc_status: Option<i64>,
    /// Set once both spans ended; dropped earlier, the client went away.
    ended: bool,
}

/// Reads trace context from request headers.
struct Headers<'a>(&'a HeaderMap);

/// Writes trace context into request headers.
struct HeadersMut<'a>(&'a mut HeaderMap);

// === impl Tracing ===

impl Tracing {
    /// A span starter for requests forwarded to `upstream`.
    pub(super) fn new(
        tracer: SdkTracer,
        upstream: &config::Upstream,
        protocol: UpstreamProtocol,
    ) -> Tracing {
        let authority = &upstream.authority;
        Tracing {
            tracer,
            propagator: TraceContextPropagator::new(),
            upstream: Arc::new(UpstreamTarget {
                base: format!("{}://{authority}", upstream.scheme),
                host: authority.host().to_owned(),
                port: authority.port_u16().map(i64::from),
                h2c: protocol == UpstreamProtocol::H2c,
            }),
        }
    }

    /// Starts the SERVER span of a request whose head just arrived, and
    /// writes the `traceparent` (and `tracestate`) the upstream will get.
    pub fn start(
        &self,
        parts: &mut Parts,
        client: SocketAddr,
        model: Option<&str>,
        request_id: &HeaderValue,
        grpc: bool,
    ) -> Box<RequestSpans> {
        let parent = self.propagator.extract(&Headers(&parts.headers));
        if !parent.span().span_context().is_valid() {
            // A malformed traceparent starts a new trace; W3C says its
            // tracestate goes with it.
            parts.headers.remove(&TRACESTATE);
        }
        let method = method_name(&parts.method);
        let route = route_of(parts.uri.path(), grpc);
        let name: Cow<'static, str> = match &route {
            Some(Route::Http(template)) => format!("{method} {template}").into(),
            Some(Route::Grpc(path)) => path.clone().into(),
            None => method.into(),
        };
        let mut server = self
            .tracer
            .span_builder(name.clone())
            .with_kind(SpanKind::Server)
            .start_with_context(&self.tracer, &parent);
        let recording = server.is_recording();
        if recording {
            server.set_attributes(server_attributes(
                parts, client, model, request_id, method, route,
            ));
        }
        let context = server.span_context().clone();
        let client_id = random_span_id();
        let outgoing = SpanContext::new(
            context.trace_id(),
            client_id,
            context.trace_flags(),
            true,
            context.trace_state().clone(),
        );
        if outgoing.is_valid() {
            let carrier = Context::new().with_remote_span_context(outgoing);
            self.propagator
                .inject_context(&carrier, &mut HeadersMut(&mut parts.headers));
        } else {
            // Only a provider that was shut down makes invalid spans; the
            // upstream still gets a trace, as without telemetry.
            crate::proxy::headers::ensure_traceparent(&mut parts.headers);
        }
        let upstream_attributes = recording.then(|| {
            let h2 = grpc || self.upstream.h2c;
            let target = &self.upstream;
            let mut attributes = vec![
                KeyValue::new("http.request.method", method),
                KeyValue::new("server.address", target.host.clone()),
                KeyValue::new("url.full", format!("{}{}", target.base, parts.uri.path())),
                KeyValue::new("network.protocol.version", if h2 { "2" } else { "1.1" }),
            ];
            if let Some(port) = target.port {
                attributes.push(KeyValue::new("server.port", port));
            }
            attributes
        });
        Box::new(RequestSpans {
            tracer: self.tracer.clone(),
            server: Context::new().with_span(server),
            client_id,
            client: None,
            name,
            upstream_attributes,
            grpc_status: None,
            ended: false,
        })
    }
}

fn server_attributes(
    parts: &Parts,
    client: SocketAddr,
    model: Option<&str>,
    request_id: &HeaderValue,
    method: &'static str,
    route: Option<Route>,
) -> Vec<KeyValue> {
    let peer = client.ip().to_string();
    let mut attributes = vec![
        KeyValue::new("http.request.method", method),
        KeyValue::new("url.path", parts.uri.path().to_owned()),
        KeyValue::new("url.scheme", "http"),
        KeyValue::new(
            "network.protocol.version",
            match parts.version {
                Version::HTTP_09 => "0.9",
                Version::HTTP_10 => "1.0",
                Version::HTTP_2 => "2",
                Version::HTTP_3 => "3",
                _ => "1.1",
            },
        ),
        KeyValue::new("client.address", peer.clone()),
        KeyValue::new("network.peer.address", peer),
        KeyValue::new("network.peer.port", i64::from(client.port())),
        KeyValue::new(
            "sidewatch.request_id",
            String::from_utf8_lossy(request_id.as_bytes()).into_owned(),
        ),
    ];
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<http::uri::Authority>().ok())
        .or_else(|| parts.uri.authority().cloned());
    if let Some(host) = host {
        attributes.push(KeyValue::new("server.address", host.host().to_owned()));
        if let Some(port) = host.port_u16() {
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
    }
    if let Some(agent) = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        attributes.push(KeyValue::new("user_agent.original", agent.to_owned()));
    }
    if let Some(model) = model {
        attributes.push(KeyValue::new("sidewatch.model", model.to_owned()));
    }
    match route {
        Some(Route::Http(template)) => {
            attributes.push(KeyValue::new("http.route", template));
        }
        Some(Route::Grpc(path)) => {
            let (service, method) = path.split_once('/').unwrap_or((&path, ""));
            attributes.push(KeyValue::new("rpc.system", "grpc"));
            attributes.push(KeyValue::new("rpc.service", service.to_owned()));
            attributes.push(KeyValue::new("rpc.method", method.to_owned()));
        }
        None => {}
    }
    attributes
}

// === impl RequestSpans ===

impl RequestSpans {
    /// Starts the CLIENT span as the request goes to the model server.
    pub fn upstream_started(&mut self) {
        let builder = self
            .tracer
            .span_builder(self.name.clone())
            .with_kind(SpanKind::Client);
        let mut span = with_span_id(self.client_id, || {
            builder.start_with_context(&self.tracer, &self.server)
        });
        if let Some(attributes) = self.upstream_attributes.take() {
            span.set_attributes(attributes);
        }
        self.client = Some(span);
    }

    /// Notes the `grpc-status` in response headers (a trailers-only answer)
    /// or trailers.
    pub fn grpc_status(&mut self, headers: &HeaderMap) {
        if let Some(code) = headers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
        {
            self.grpc_status = Some(code);
        }
    }

    /// Ends both spans as the response's last byte goes to the client
    /// (`complete` is false when the body was cut off). `proxy_error` is the
    /// kind of answer the proxy made itself, if it did.
    pub fn finish(mut self, status: u16, proxy_error: Option<&'static str>, complete: bool) {
        self.end(status, proxy_error, complete);
    }

    /// `status` 0 with no `proxy_error`: no response was ever sent (the
    /// client went away while the upstream call was in flight).
    fn end(&mut self, status: u16, proxy_error: Option<&'static str>, complete: bool) {
        self.ended = true;
        if let Some(mut client) = self.client.take() {
            if client.is_recording() {
                match proxy_error {
                    Some(kind) => {
                        client.set_attribute(KeyValue::new("error.type", kind));
                        client.set_status(Status::error(kind));
                    }
                    None if status == 0 => {
                        client.set_attribute(KeyValue::new("error.type", "cancelled"));
                        client.set_status(Status::error("cancelled"));
                    }
                    None => {
                        client.set_attribute(KeyValue::new(
                            "http.response.status_code",
                            i64::from(status),
                        ));
                        if let Some(code) = self.grpc_status {
                            client.set_attribute(KeyValue::new("rpc.grpc.status_code", code));
                        }
                        // For a client, any 4xx/5xx or gRPC error is a failed call.
                        let grpc_failed = self.grpc_status.is_some_and(|c| c != 0);
                        if status >= 400 || grpc_failed {
                            let kind = match self.grpc_status {
                                Some(code) if grpc_failed => code.to_string(),
                                _ => status.to_string(),
                            };
                            client.set_attribute(KeyValue::new("error.type", kind));
                            client.set_status(Status::error(""));
                        }
                    }
                }
            }
            client.end();
        }
        let server = self.server.span();
        if server.is_recording() {
            if status != 0 {
                server.set_attribute(KeyValue::new(
                    "http.response.status_code",
                    i64::from(status),
                ));
            }
            if let Some(kind) = proxy_error {
                server.set_attribute(KeyValue::new("sidewatch.proxy_error", kind));
            }
            if !complete {
                server.set_attribute(KeyValue::new("sidewatch.response.complete", false));
            }
            if let Some(code) = self.grpc_status {
                server.set_attribute(KeyValue::new("rpc.grpc.status_code", code));
            }
            // A server span fails on 5xx, a failed upstream call, or a gRPC
            // status that means the server failed (gRPC answers all with
            // HTTP 200); an oversized body or a bad argument is the
            // client's error, not ours.
            let grpc_failed = self
                .grpc_status
                .is_some_and(|c| matches!(c, 2 | 4 | 12 | 13 | 14 | 15));
            let failed =
                status >= 500 || grpc_failed || proxy_error.is_some_and(|k| k != "body_too_large");
            if failed {
                let kind: Cow<'static, str> = match (proxy_error, self.grpc_status) {
                    (Some(kind), _) => kind.into(),
                    (None, Some(code)) if grpc_failed => code.to_string().into(),
                    _ => status.to_string().into(),
                };
                server.set_attribute(KeyValue::new("error.type", kind.clone()));
                server.set_status(Status::error(kind));
            }
        }
        server.end();
    }
}

impl Drop for RequestSpans {
    fn drop(&mut self) {
        // hyper drops the handler when the client resets or closes before
        // the response head: end the spans saying so, not as successes.
        if !self.ended {
            self.end(0, None, false);
        }
    }
}

// === impl Headers / HeadersMut ===

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        // The propagator writes an empty `tracestate` for a trace without
        // one; W3C prefers none at all.
        if value.is_empty() {
            self.0.remove(key);
            return;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}
