//! The proxy's Prometheus metrics: request counts by model and status,
//! latency histograms, connection and upstream-error counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

use super::latency::{LatencySample, LatencySnapshot, LatencyStats, Series};

/// Label value for requests that match no configured model; keeps the
/// `model` label bounded whatever paths clients send.
pub const UNKNOWN_MODEL: &str = "unknown";

const FIRST_CODE: u16 = 100;
const CODES: usize = 500;

/// Why the upstream call did not produce a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    /// The connection could not be made.
    Connect,
    /// No response head within `limits.request_timeout`.
    Timeout,
    /// The connection broke or the upstream spoke bad HTTP.
    Protocol,
}

/// Counters and latencies of the proxy, written lock-free on the hot path.
#[derive(Debug)]
pub struct ProxyStats {
    models: Vec<Arc<str>>,
    /// `requests[stripe * per_stripe + model * CODES + (code - 100)]`:
    /// striped like the latencies so proxy threads never write one cache line.
    requests: Box<[AtomicU64]>,
    per_stripe: usize,
    latency: LatencyStats,
    connections_open: AtomicI64,
    connections_rejected: AtomicU64,
    upstream_errors: [AtomicU64; 3],
    bodies_too_large: AtomicU64,
}

/// One proxy thread's handle on the process-wide [`ProxyStats`]. Requests
/// clone an `Arc<ThreadStats>`, whose count only that thread writes:
/// cloning the shared `Arc<ProxyStats>` per request made every proxy thread
/// write one reference count, a cache line moving between cores.
#[derive(Debug, Clone)]
pub struct ThreadStats(pub Arc<ProxyStats>);

impl std::ops::Deref for ThreadStats {
    type Target = ProxyStats;

    fn deref(&self) -> &ProxyStats {
        &self.0
    }
}

// === impl ProxyStats ===

impl ProxyStats {
    /// Creates counters for the configured models plus [`UNKNOWN_MODEL`].
    pub fn new(model_names: impl IntoIterator<Item = String>) -> Self {
        let mut models: Vec<Arc<str>> = model_names.into_iter().map(Arc::from).collect();
        models.push(Arc::from(UNKNOWN_MODEL));
        let latency = LatencyStats::new();
        let per_stripe = models.len() * CODES;
        let requests = (0..per_stripe * latency.stripe_count())
            .map(|_| AtomicU64::new(0))
            .collect();
        ProxyStats {
            models,
            requests,
            per_stripe,
            latency,
            connections_open: AtomicI64::new(0),
            connections_rejected: AtomicU64::new(0),
            upstream_errors: Default::default(),
            bodies_too_large: AtomicU64::new(0),
        }
    }

    /// The label index used for requests matching no configured model.
    pub fn unknown_model(&self) -> usize {
        self.models.len() - 1
    }

    /// Counts a finished request and records its latencies.
    pub fn record_request(&self, model: usize, status: u16, sample: LatencySample) {
        let model = model.min(self.unknown_model());
        let code =
            usize::from(status.clamp(FIRST_CODE, FIRST_CODE + CODES as u16 - 1) - FIRST_CODE);
        let stripe = self.latency.stripe_index() * self.per_stripe;
        self.requests[stripe + model * CODES + code].fetch_add(1, Ordering::Relaxed);
        self.latency.record(sample);
    }

    /// Counts a failed upstream call.
    pub fn record_upstream_error(&self, kind: UpstreamErrorKind) {
        self.upstream_errors[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request refused for its body size.
    pub fn record_body_too_large(&self) {
        self.bodies_too_large.fetch_add(1, Ordering::Relaxed);
    }

    /// Tracks a client connection opening (+1) or closing (-1).
    pub fn connection_delta(&self, delta: i64) {
        self.connections_open.fetch_add(delta, Ordering::Relaxed);
    }

    /// Counts a connection refused because `limits.max_connections` was reached.
    pub fn record_connection_rejected(&self) {
        self.connections_rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// Client connections open now.
    pub fn connections_open(&self) -> i64 {
        self.connections_open.load(Ordering::Relaxed)
    }

    /// Total requests answered, over all models and codes.
    pub fn requests_total(&self) -> u64 {
        self.requests
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Requests answered with `status` for model label `model`.
    pub fn requests_with(&self, model: &str, status: u16) -> u64 {
        let Some(m) = self.models.iter().position(|n| &**n == model) else {
            return 0;
        };
        let code = usize::from(status.saturating_sub(FIRST_CODE)).min(CODES - 1);
        self.count(m * CODES + code)
    }

    /// One (model, code) counter summed over the stripes.
    fn count(&self, index: usize) -> u64 {
        self.requests
            .iter()
            .skip(index)
            .step_by(self.per_stripe)
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Merged latency distributions.
    pub fn latency(&self) -> LatencySnapshot {
        self.latency.snapshot()
    }
}

fn encode_histogram(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &Series,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    metric.encode_histogram::<NoLabelSet>(
        series.sum_seconds(),
        series.count(),
        &series.buckets(),
        None,
    )
}

impl Collector for ProxyStats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        {
            let mut family = encoder.encode_descriptor(
                "sidewatch_requests",
                "Requests answered, by model and HTTP status code.",
                None,
                MetricType::Counter,
            )?;
            for (m, model) in self.models.iter().enumerate() {
                for code in 0..CODES {
                    let n = self.count(m * CODES + code);
                    if n == 0 {
                        continue;
                    }
                    let status = (FIRST_CODE as usize + code).to_string();
                    let labels = [("model", &**model), ("code", status.as_str())];
                    family
                        .encode_family(&labels)?
                        .encode_counter::<NoLabelSet, _, f64>(&n, None)?;
                }
            }
        }
        let latency = self.latency();
        encode_histogram(
            &mut encoder,
            "sidewatch_request_duration_seconds",
            "Time from a request's head arriving to its response's last byte.",
            &latency.request,
        )?;
        encode_histogram(
            &mut encoder,
            "sidewatch_upstream_duration_seconds",
            "Time spent in the upstream call, from sending the request to the response's end.",
            &latency.upstream,
        )?;
        encode_histogram(
            &mut encoder,
            "sidewatch_proxy_overhead_seconds",
            "The proxy's own handling time per request: head received to upstream send, plus upstream response head to handing it to the client (excludes socket I/O; scripts/bench measures end-to-end added latency).",
            &latency.overhead,
        )?;
        ConstGauge::new(self.connections_open()).encode(encoder.encode_descriptor(
            "sidewatch_connections_open",
            "Client connections open now.",
            None,
            MetricType::Gauge,
        )?)?;
        {
            let mut metric = encoder.encode_descriptor(
                "sidewatch_connections_rejected",
                "Client connections refused because limits.max_connections was reached.",
                None,
                MetricType::Counter,
            )?;
            metric.encode_counter::<NoLabelSet, _, f64>(
                &self.connections_rejected.load(Ordering::Relaxed),
                None,
            )?;
        }
        {
            let mut family = encoder.encode_descriptor(
                "sidewatch_upstream_errors",
                "Upstream calls that produced no response, by kind.",
                None,
                MetricType::Counter,
            )?;
            for (kind, counter) in ["connect", "timeout", "protocol"]
                .iter()
                .zip(&self.upstream_errors)
            {
                family
                    .encode_family(&[("kind", *kind)])?
                    .encode_counter::<NoLabelSet, _, f64>(&counter.load(Ordering::Relaxed), None)?;
            }
        }
        let mut metric = encoder.encode_descriptor(
            "sidewatch_request_body_too_large",
            "Requests refused with 413 because the body exceeded limits.max_body.",
            None,
            MetricType::Counter,
        )?;
        metric.encode_counter::<NoLabelSet, _, f64>(
            &self.bodies_too_large.load(Ordering::Relaxed),
            None,
        )
    }
}

/// `sidewatch_build_info{version}`: always 1, labelled with the version.
#[derive(Debug, Default)]
pub struct BuildInfo;

impl Collector for BuildInfo {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "sidewatch_build_info",
            "The running sidewatch version; always 1.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(1i64)
            .encode(family.encode_family(&[("version", env!("CARGO_PKG_VERSION"))])?)
    }
}
