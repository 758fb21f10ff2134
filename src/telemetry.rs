//! Telemetry: the sidecar's own metrics and logs, and OpenTelemetry traces
//! ([`otel`]).
//!
//! Hot-path counters are plain atomics and latency cells are striped per
//! thread, so recording never contends; the Prometheus encoding happens at
//! scrape time through [`prometheus_client`] collectors.

pub mod latency;
pub mod metrics;
pub mod otel;

pub use latency::{LatencySample, LatencyStats};
pub use metrics::{ProxyStats, ThreadStats, UpstreamErrorKind};

/// Installs the global `tracing` subscriber; `RUST_LOG` overrides the level.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second call (tests, demo inside a test) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}
