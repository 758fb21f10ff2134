//! The proxy: accepts clients, forwards to the model server, and tees each
//! exchange to the mirror without making the client wait for it.
//!
//! A request flows `listener` → `handler` (headers, tee, upstream call) →
//! `upstream`; the response body flows back through a `tee` wrapper that
//! records metrics when it ends. `error` turns every failure into a response.

pub mod error;
pub mod handler;
pub mod headers;
pub mod limit;
pub mod listener;
pub mod route;
pub mod tee;
pub mod upstream;

use std::sync::Arc;

use crate::config::{Config, Limits};
use crate::mirror::MirrorSender;
use crate::telemetry::{ProxyStats, ThreadStats};

pub use listener::{DrainReport, Workers, serve};

/// State shared by every connection and request.
#[derive(Debug)]
pub struct Shared {
    upstream: upstream::Upstream,
    limits: Limits,
    routes: route::Routes,
    /// The process-wide counters through this thread's own handle, which
    /// requests clone.
    stats: Arc<ThreadStats>,
    /// This thread's own handle: cloning it per request touches no shared
    /// counter, where cloning the sender itself would.
    mirror: Option<Arc<MirrorSender>>,
    max_payload: usize,
    /// Request spans, when `telemetry.otlp_endpoint` is set; `None` costs
    /// the hot path one branch.
    tracing: Option<crate::telemetry::otel::Tracing>,
}

impl Shared {
    /// Builds the proxy's state; `mirror` is `None` when the tee is off.
    pub fn new(config: &Config, stats: Arc<ProxyStats>, mirror: Option<MirrorSender>) -> Self {
        Shared {
            upstream: upstream::Upstream::new(
                &config.upstream,
                config.upstream_protocol,
                config.limits.request_timeout,
            ),
            limits: config.limits.clone(),
            routes: route::Routes::new(&config.models),
            stats: Arc::new(ThreadStats(stats)),
            mirror: mirror.map(Arc::new),
            max_payload: config.mirror.max_payload,
            tracing: None,
        }
    }

    /// Starts a span pair per request (OTLP export is configured).
    pub fn with_tracing(mut self, tracing: Option<crate::telemetry::otel::Tracing>) -> Self {
        self.tracing = tracing;
        self
    }
}
