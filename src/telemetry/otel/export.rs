//! What sits between the SDK's batch processors and the OTLP exporters:
//! an admission gate that drops (and counts) when the export queue is full,
//! export counters, and the span-id generator the request spans rely on.
//!
//! The SDK's batch processors already drop instead of blocking when their
//! queue is full, but keep the count to themselves. The gate admits at most
//! `queue` items that have not yet reached an export call, which is never
//! fewer than the SDK's channel holds, so the SDK never drops silently: every
//! drop happens here, where it is counted.

use std::cell::Cell;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry::{Context, InstrumentationScope};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter, LogProcessor, SdkLogRecord};
use opentelemetry_sdk::trace::{IdGenerator, Span, SpanData, SpanExporter, SpanProcessor};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;

/// Export counters for one signal (spans or log records).
#[derive(Debug, Default)]
pub struct SignalStats {
    /// Items the collector accepted.
    pub exported: AtomicU64,
    /// Items in export calls that failed (collector down, timeout, refusal).
    pub failed: AtomicU64,
    /// Items dropped because the export queue was full.
    pub dropped: AtomicU64,
}

/// Export counters of the OTLP pipeline, for `/metrics`.
#[derive(Debug, Default)]
pub struct OtelStats {
    /// Spans.
    pub spans: SignalStats,
    /// Audit records exported as log records.
    pub logs: SignalStats,
}

/// Admits items into an export queue of bounded size.
#[derive(Debug)]
pub(super) struct Gate {
    waiting: AtomicUsize,
    limit: usize,
    stats: Arc<OtelStats>,
    logs: bool,
    /// Whether the last export failed: a change is logged once, not every
    /// failed batch of a collector that stays down.
    failing: AtomicBool,
}

/// A span processor that lets the inner (batch) processor see a span only
/// when the gate admits it.
#[derive(Debug)]
pub(super) struct GatedSpans<P> {
    pub(super) inner: P,
    pub(super) gate: Arc<Gate>,
}

/// A log processor that lets the inner (batch) processor see a record only
/// when the gate admits it.
#[derive(Debug)]
pub(super) struct GatedLogs<P> {
    pub(super) inner: P,
    pub(super) gate: Arc<Gate>,
}

/// An exporter that releases the gate and counts what it exported.
#[derive(Debug)]
pub(super) struct Counted<E> {
    pub(super) inner: E,
    pub(super) gate: Arc<Gate>,
}

/// Random ids, except that the next span id on a thread can be chosen in
/// advance with [`with_span_id`].
///
/// The proxy must tell the upstream its upstream-call span's id (in
/// `traceparent`) before the tee copies the request headers, but should
/// start that span only when the request is really sent; the SDK's span
/// builder ignores a given id, so the id generator supplies it.
#[derive(Debug, Default)]
pub(super) struct Ids;

thread_local! {
    static NEXT_SPAN_ID: Cell<Option<SpanId>> = const { Cell::new(None) };
}

/// A fresh random span id (never the invalid all-zero one).
pub(super) fn random_span_id() -> SpanId {
    SpanId::from(fastrand::u64(1..))
}

/// Runs `start` with `id` as the next span id generated on this thread.
pub(super) fn with_span_id<T>(id: SpanId, start: impl FnOnce() -> T) -> T {
    NEXT_SPAN_ID.set(Some(id));
    let started = start();
    // A provider that was shut down makes no id; don't leak this one into
    // an unrelated span later.
    NEXT_SPAN_ID.set(None);
    started
}

// === impl Ids ===

impl IdGenerator for Ids {
    fn new_trace_id(&self) -> TraceId {
        TraceId::from(fastrand::u128(1..))
    }

    fn new_span_id(&self) -> SpanId {
        NEXT_SPAN_ID.take().unwrap_or_else(random_span_id)
    }
}

// === impl Gate ===

impl Gate {
    /// A gate for `limit` items; `logs` picks which counters it feeds.
    pub(super) fn new(limit: usize, stats: Arc<OtelStats>, logs: bool) -> Arc<Gate> {
        Arc::new(Gate {
            waiting: AtomicUsize::new(0),
            limit,
            stats,
            logs,
            failing: AtomicBool::new(false),
        })
    }

    fn signal(&self) -> &SignalStats {
        if self.logs {
            &self.stats.logs
        } else {
            &self.stats.spans
        }
    }

    fn admit(&self) -> bool {
        if self.waiting.fetch_add(1, Ordering::AcqRel) < self.limit {
            return true;
        }
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        self.signal().dropped.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// `n` items reached an export call; `result` is how it went.
    fn exported(&self, n: usize, result: &OTelSdkResult) {
        let signal = self.signal();
        let counter = if result.is_ok() {
            &signal.exported
        } else {
            &signal.failed
        };
        counter.fetch_add(n as u64, Ordering::Relaxed);
        let what = if self.logs {
            "audit log records"
        } else {
            "spans"
        };
        let was_failing = self.failing.swap(result.is_err(), Ordering::Relaxed);
        match result {
            Err(error) if !was_failing => {
                tracing::warn!(%error, "OTLP export of {what} failed; they are counted in sidewatch_otel_export_failed_total until it recovers.");
            }
            Ok(()) if was_failing => tracing::info!("OTLP export of {what} recovered."),
            _ => {}
        }
    }

    fn release(&self, n: usize) {
        // Saturating: an item could reach the exporter without passing the
        // gate only through a flush racing a shutdown; never wrap.
        let _ = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                Some(w.saturating_sub(n))
            });
    }
}

// === impl GatedSpans ===

impl<P: SpanProcessor> SpanProcessor for GatedSpans<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.gate.admit() {
            self.inner.on_end(span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

// === impl GatedLogs ===

impl<P: LogProcessor> LogProcessor for GatedLogs<P> {
    fn emit(&self, data: &mut SdkLogRecord, instrumentation: &InstrumentationScope) {
        if self.gate.admit() {
            self.inner.emit(data, instrumentation);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

// === impl Counted ===

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        self.gate.release(n);
        let result = self.inner.export(batch).await;
        self.gate.exported(n, &result);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: LogExporter> LogExporter for Counted<E> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let n = batch.iter().count();
        self.gate.release(n);
        let result = self.inner.export(batch).await;
        self.gate.exported(n, &result);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

// === impl OtelStats ===

impl OtelStats {
    fn encode_counter(
        encoder: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        pick: impl Fn(&SignalStats) -> &AtomicU64,
        stats: &OtelStats,
    ) -> Result<(), fmt::Error> {
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (signal, counters) in [("spans", &stats.spans), ("logs", &stats.logs)] {
            ConstCounter::new(pick(counters).load(Ordering::Relaxed))
                .encode(family.encode_family(&[("signal", signal)])?)?;
        }
        Ok(())
    }
}

impl Collector for OtelStats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        Self::encode_counter(
            &mut encoder,
            "sidewatch_otel_exported",
            "Spans and audit log records the OTLP collector accepted.",
            |s| &s.exported,
            self,
        )?;
        Self::encode_counter(
            &mut encoder,
            "sidewatch_otel_export_failed",
            "Spans and audit log records in OTLP export calls that failed (collector down, timeout, refusal).",
            |s| &s.failed,
            self,
        )?;
        Self::encode_counter(
            &mut encoder,
            "sidewatch_otel_dropped",
            "Spans and audit log records dropped because the export queue (telemetry.queue) was full.",
            |s| &s.dropped,
            self,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_admits_up_to_its_limit_and_counts_the_rest() {
        let stats = Arc::new(OtelStats::default());
        let gate = Gate::new(2, stats.clone(), false);
        assert!(gate.admit() && gate.admit());
        assert!(!gate.admit());
        assert_eq!(stats.spans.dropped.load(Ordering::Relaxed), 1);
        gate.release(2);
        gate.exported(2, &Ok(()));
        assert!(gate.admit());
        assert_eq!(stats.spans.exported.load(Ordering::Relaxed), 2);
        assert_eq!(stats.logs.dropped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_chosen_span_id_is_used_once() {
        let id = SpanId::from(42);
        let ids = Ids;
        assert_eq!(with_span_id(id, || ids.new_span_id()), id);
        assert_ne!(ids.new_span_id(), id);
        assert_ne!(ids.new_span_id(), SpanId::INVALID);
    }
}
