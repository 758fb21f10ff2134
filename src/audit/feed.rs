//! Feeds the audit writer: one entry per mirrored exchange, joined with the
//! verdicts the shards reach on its rows.
//!
//! The mirror workers run an [`AuditTap`] in place of the plain monitoring
//! consumer. It hashes the bodies, hands the exchange to the monitor (which
//! says how many rows went to the detectors) and queues a pending entry for
//! the feed thread. That thread subscribes to the verdicts, joins them to
//! their entry by the exchange's serial (request ids come from clients and
//! may repeat, on purpose or not; serials are the tap's own) and submits
//! the entry to the [`Writer`] once
//! every row's verdict is in, or after [`FeedOptions::hold`] with whatever
//! arrived (`verdicts.judged` then says how many). Verdicts and entries
//! reach the thread on different channels, so either may come first.
//!
//! Everything here runs off the proxy's threads, and every queue is a
//! `try_send` that counts what it drops: auditing never slows a request.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::config::Payloads;
use super::record::{Anomaly, Entry, Verdicts, sha256_hex};
use super::redact;
use super::writer::{AuditStats, Writer};
use crate::alert::AlertRegistry;
use crate::mirror::{Consumer, Exchange};
use crate::monitor::{MonitorConsumer, Verdict};
use crate::telemetry::otel::{AuditLogs, RecordMeta, trace_id_of};

/// How the feed joins and what it keeps.
#[derive(Debug, Clone)]
pub struct FeedOptions {
    /// Which bodies go into the log.
    pub payloads: Payloads,
    /// JSON pointers removed from kept bodies.
    pub redact: Vec<String>,
    /// How long an entry waits for its verdicts before it is written
    /// without the missing ones.
    pub hold: Duration,
    /// Entries waiting for verdicts at most; beyond it the oldest is
    /// written early.
    pub max_pending: usize,
    /// Entries queued from the mirror workers to the feed thread.
    pub queue: usize,
    /// Also emits every entry as an OTLP log record, when
    /// `telemetry.export_audit_logs` is on.
    pub logs: Option<AuditLogs>,
    /// Body bytes the feed may hold at once (queued or waiting for
    /// verdicts); beyond it entries are written without their payload and
    /// counted, so `audit.payloads` cannot make memory grow without bound.
    pub payload_budget: usize,
}

/// Counters of the feed, read by `/metrics`.
#[derive(Debug, Default)]
pub struct FeedStats {
    queue_full: AtomicU64,
    incomplete: AtomicU64,
    orphans: AtomicU64,
    payloads_dropped: AtomicU64,
    /// Body bytes held now.
    held: Budget,
}

/// Bytes held against a limit, shared by the taps (which take) and the
/// feed thread (which gives back).
#[derive(Debug, Default)]
struct Budget {
    held: AtomicUsize,
}

/// The running feed: its thread, the writer behind it and their counters.
#[derive(Debug)]
pub struct AuditFeed {
    tx: Option<Sender<Pending>>,
    serials: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Writer>>,
    stats: Arc<FeedStats>,
    writer_stats: Arc<AuditStats>,
    alerts: Arc<OnceLock<Arc<AlertRegistry>>>,
    exports_logs: bool,
    keep_bodies: bool,
    payload_budget: usize,
}

/// The mirror worker's consumer when auditing is on: monitors (if models
/// are configured) and queues an entry for every exchange.
pub struct AuditTap {
    serials: Arc<AtomicU64>,
    monitor: Option<MonitorConsumer>,
    inner: Option<Box<dyn Consumer>>,
    tx: Sender<Pending>,
    stats: Arc<FeedStats>,
    keep_bodies: bool,
    payload_budget: usize,
    keep_traceparent: bool,
}

/// An entry waiting for its verdicts.
struct Pending {
    serial: u64,
    entry: Entry,
    rows: u32,
    bodies: Option<(Bytes, Bytes)>,
    /// The `traceparent` the upstream got, so an OTLP log record of the
    /// entry links to the proxy's span; only kept when logs are exported.
    traceparent: Option<String>,
}

/// What the feed thread holds for one exchange.
#[derive(Default)]
struct Slot {
    pending: Option<Pending>,
    verdicts: Vec<Verdict>,
}

/// The feed thread's state.
struct Join {
    options: FeedOptions,
    writer: Writer,
    stats: Arc<FeedStats>,
    alerts: Arc<OnceLock<Arc<AlertRegistry>>>,
    slots: HashMap<u64, Slot>,
    /// Each slot's serial with its deadline, in the order the slots were
    /// made; deadlines only grow, so the front is due first. Serials are
    /// never reused, so one whose slot is gone (written early) is skipped.
    order: VecDeque<(Instant, u64)>,
}

/// `sidewatch_audit_*` metrics, encoded at scrape time.
#[derive(Debug, Clone)]
pub struct AuditMetrics {
    feed: Arc<FeedStats>,
    writer: Arc<AuditStats>,
}

// === impl FeedStats ===

impl FeedStats {
    /// Exchanges dropped because the feed thread's queue was full.
    pub fn queue_full(&self) -> u64 {
        self.queue_full.load(Ordering::Relaxed)
    }

    /// Entries written before every row's verdict arrived.
    pub fn incomplete(&self) -> u64 {
        self.incomplete.load(Ordering::Relaxed)
    }

    /// Verdicts whose exchange never reached the feed.
    pub fn orphans(&self) -> u64 {
        self.orphans.load(Ordering::Relaxed)
    }

    /// Entries written without their bodies (payload budget exhausted).
    pub fn payloads_dropped(&self) -> u64 {
        self.payloads_dropped.load(Ordering::Relaxed)
    }

    /// Body bytes the feed holds now.
    pub fn payload_bytes_held(&self) -> usize {
        self.held.held.load(Ordering::Relaxed)
    }
}

// === impl Budget ===

impl Budget {
    /// Holds `bytes` more if that stays within `limit`.
    fn take(&self, bytes: usize, limit: usize) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(bytes).filter(|&total| total <= limit)
            })
            .is_ok()
    }

    /// Releases `bytes` taken before.
    fn give_back(&self, bytes: usize) {
        let _ = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                Some(held.saturating_sub(bytes))
            });
    }
}

// === impl AuditFeed ===

impl AuditFeed {
    /// Starts the feed thread in front of `writer`, joining `verdicts` (the
    /// monitor's subscription, if models are monitored).
    pub fn start(
        writer: Writer,
        verdicts: Option<Receiver<Verdict>>,
        options: FeedOptions,
    ) -> std::io::Result<AuditFeed> {
        let (tx, rx) = crossbeam_channel::bounded(options.queue.max(1));
        let stats = Arc::new(FeedStats::default());
        let alerts = Arc::new(OnceLock::new());
        let writer_stats = writer.stats();
        let exports_logs = options.logs.is_some();
        let keep_bodies = options.payloads != Payloads::None;
        let payload_budget = options.payload_budget;
        let join = Join {
            options,
            writer,
            stats: stats.clone(),
            alerts: alerts.clone(),
            slots: HashMap::new(),
            order: VecDeque::new(),
        };
        let verdicts = verdicts.unwrap_or_else(crossbeam_channel::never);
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sidewatch-audit-feed".into())
            .spawn(move || join.run(rx, verdicts, &stopping))?;
        Ok(AuditFeed {
            tx: Some(tx),
            // 0 is "no serial yet".
            serials: Arc::new(AtomicU64::new(1)),
            stop,
            thread: Some(thread),
            stats,
            writer_stats,
            alerts,
            exports_logs,
            keep_bodies,
            payload_budget,
        })
    }

    /// A consumer for one mirror worker: it hands exchanges to `monitor`
    /// (whose row counts tell the feed how many verdicts to wait for) or,
    /// without monitoring, to `inner`, and queues an entry for each.
    pub fn tap(
        &self,
        monitor: Option<MonitorConsumer>,
        inner: Option<Box<dyn Consumer>>,
    ) -> Option<AuditTap> {
        Some(AuditTap {
            serials: self.serials.clone(),
            monitor,
            inner,
            tx: self.tx.clone()?,
            stats: self.stats.clone(),
            keep_bodies: self.keep_bodies,
            payload_budget: self.payload_budget,
            keep_traceparent: self.exports_logs,
        })
    }

    /// Lets entries name the alerts firing when they are written.
    pub fn set_alerts(&self, registry: Arc<AlertRegistry>) {
        let _ = self.alerts.set(registry);
    }

    /// The feed's own counters.
    pub fn stats(&self) -> &Arc<FeedStats> {
        &self.stats
    }

    /// The writer's counters.
    pub fn writer_stats(&self) -> &Arc<AuditStats> {
        &self.writer_stats
    }

    /// The collector for `/metrics`.
    pub fn metrics(&self) -> AuditMetrics {
        AuditMetrics {
            feed: self.stats.clone(),
            writer: self.writer_stats.clone(),
        }
    }

    /// Writes every entry still waiting (with the verdicts that arrived),
    /// then closes the log with a final checkpoint. Call after the mirror
    /// workers have stopped; a tap still running (a worker that missed its
    /// flush deadline) loses what it sends from now on.
    pub fn close(mut self) {
        self.tx = None;
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            match thread.join() {
                Ok(writer) => writer.close(),
                Err(_) => tracing::error!("The audit feed thread panicked; its entries are lost."),
            }
        }
    }
}

impl Drop for AuditFeed {
    fn drop(&mut self) {
        self.tx = None;
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take()
            && let Ok(writer) = thread.join()
        {
            writer.close();
        }
    }
}

// === impl AuditMetrics ===

impl Collector for AuditMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counter = |encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64| {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(value).encode(metric)
        };
        counter(
            &mut encoder,
            "sidewatch_audit_records",
            "Audit records written to the log.",
            self.writer.records_total(),
        )?;
        counter(
            &mut encoder,
            "sidewatch_audit_write_errors",
            "Failed audit log writes or syncs (each is retried).",
            self.writer.write_errors_total(),
        )?;
        let durable = encoder.encode_descriptor(
            "sidewatch_audit_durable_records",
            "Audit records known to be on disk: every sequence number below this has been fsynced.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::try_from(self.writer.durable()).unwrap_or(i64::MAX))
            .encode(durable)?;
        counter(
            &mut encoder,
            "sidewatch_audit_incomplete_verdicts",
            "Audit entries written before every row's verdict arrived.",
            self.feed.incomplete(),
        )?;
        counter(
            &mut encoder,
            "sidewatch_audit_payloads_dropped",
            "Audit entries written without their bodies because the feed held its payload budget.",
            self.feed.payloads_dropped(),
        )?;
        counter(
            &mut encoder,
            "sidewatch_audit_orphan_verdicts",
            "Verdicts whose exchange never reached the audit feed (it was dropped before).",
            self.feed.orphans(),
        )?;
        let mut family = encoder.encode_descriptor(
            "sidewatch_audit_dropped",
            "Exchanges that never became an audit record: feed_queue_full (the feed fell behind), writer (its queue was full, or the log closed while the disk refused them).",
            None,
            MetricType::Counter,
        )?;
        for (reason, n) in [
            ("feed_queue_full", self.feed.queue_full()),
            ("writer", self.writer.dropped_total()),
        ] {
            ConstCounter::new(n).encode(family.encode_family(&[("reason", reason)])?)?;
        }
        Ok(())
    }
}

// === impl AuditTap ===

impl std::fmt::Debug for AuditTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditTap")
            .field("monitored", &self.monitor.is_some())
            .finish_non_exhaustive()
    }
}

impl Consumer for AuditTap {
    fn consume(&mut self, mut exchange: Exchange) {
        exchange.serial = self.serials.fetch_add(1, Ordering::Relaxed);
        let entry = entry_of(&exchange);
        let traceparent = self
            .keep_traceparent
            .then(|| {
                exchange
                    .request
                    .headers
                    .get_str("traceparent")
                    .map(str::to_owned)
            })
            .flatten();
        let bodies = self.keep_bodies.then_some(()).and_then(|()| {
            let (request, response) = (&exchange.request_body.bytes, &exchange.response_body.bytes);
            if self
                .stats
                .held
                .take(request.len() + response.len(), self.payload_budget)
            {
                // Copies: the tee's bodies share one buffer with their
                // heads, which the budget would not see.
                Some((
                    Bytes::copy_from_slice(request),
                    Bytes::copy_from_slice(response),
                ))
            } else {
                self.stats.payloads_dropped.fetch_add(1, Ordering::Relaxed);
                None
            }
        });
        let exchange_serial = exchange.serial;
        let rows = match (&self.monitor, &mut self.inner) {
            (Some(monitor), _) => monitor.observe(&exchange),
            (None, Some(inner)) => {
                inner.consume(exchange);
                0
            }
            (None, None) => 0,
        };
        let pending = Pending {
            serial: exchange_serial,
            entry,
            rows: u32::try_from(rows).unwrap_or(u32::MAX),
            bodies,
            traceparent,
        };
        if let Err(TrySendError::Full(p) | TrySendError::Disconnected(p)) =
            self.tx.try_send(pending)
        {
            self.stats.held.give_back(p.body_bytes());
            self.stats.queue_full.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn flush(&mut self) {
        if let Some(inner) = &mut self.inner {
            inner.flush();
        }
    }
}

/// The entry for `exchange`, before verdicts: who, what, how it went.
fn entry_of(exchange: &Exchange) -> Entry {
    let headers = &exchange.request.headers;
    Entry {
        request_id: exchange.request_id.clone(),
        trace_id: trace_id_of(headers),
        client: exchange.client.ip().to_string(),
        model: exchange.model.as_deref().map(str::to_owned),
        model_version: None,
        // The path only: a query string may carry secrets.
        route: format!(
            "{} {}",
            exchange.request.method,
            exchange.request.uri.path()
        ),
        status: exchange.response.as_ref().map_or(0, |r| r.status.as_u16()),
        latency_us: exchange
            .timings
            .stages
            .total()
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        request_sha256: sha256_hex(&exchange.request_body.bytes),
        response_sha256: sha256_hex(&exchange.response_body.bytes),
        verdicts: Verdicts::default(),
        alerts: Vec::new(),
        payload: None,
    }
}

// === impl Pending ===

impl Pending {
    /// The body bytes it holds against the budget.
    fn body_bytes(&self) -> usize {
        self.bodies.as_ref().map_or(0, |(q, r)| q.len() + r.len())
    }
}

// === impl Join ===

impl Join {
    fn run(
        mut self,
        pending: Receiver<Pending>,
        mut verdicts: Receiver<Verdict>,
        stop: &AtomicBool,
    ) -> Writer {
        let mut pending_open = true;
        while pending_open {
            if stop.load(Ordering::Acquire) {
                // Closing: the taps normally hung up already; take what
                // they queued without waiting for one that has not.
                while let Ok(p) = pending.try_recv() {
                    self.arrive(p);
                }
                break;
            }
            let wait = self
                .order
                .front()
                .map_or(Duration::from_millis(250), |(due, _)| {
                    due.saturating_duration_since(Instant::now())
                });
            crossbeam_channel::select! {
                recv(pending) -> message => match message {
                    Ok(p) => self.arrive(p),
                    Err(_) => pending_open = false,
                },
                recv(verdicts) -> message => match message {
                    Ok(v) => self.judge(v),
                    // The monitor is gone: nothing more to wait for, and a
                    // closed channel must not spin the loop.
                    Err(_) => verdicts = crossbeam_channel::never(),
                },
                default(wait) => {}
            }
            self.expire(Instant::now());
        }
        // Shutdown: take the verdicts already published, then write all.
        while let Ok(v) = verdicts.try_recv() {
            self.judge(v);
        }
        while !self.order.is_empty() {
            self.settle_oldest();
        }
        self.writer
    }

    fn arrive(&mut self, pending: Pending) {
        if pending.rows == 0 {
            // Nothing to wait for.
            self.write(pending, Vec::new());
            return;
        }
        let serial = pending.serial;
        if self.slots.len() >= self.options.max_pending && !self.slots.contains_key(&serial) {
            self.settle_oldest();
        }
        self.slot(serial).pending = Some(pending);
        self.settle_if_complete(serial);
    }

    fn judge(&mut self, verdict: Verdict) {
        let serial = verdict.exchange;
        self.slot(serial).verdicts.push(verdict);
        self.settle_if_complete(serial);
    }

    /// The slot of `serial`, made (with its deadline) on first use.
    fn slot(&mut self, serial: u64) -> &mut Slot {
        let (order, hold) = (&mut self.order, self.options.hold);
        self.slots.entry(serial).or_insert_with(|| {
            order.push_back((Instant::now() + hold, serial));
            Slot::default()
        })
    }

    fn settle_if_complete(&mut self, serial: u64) {
        let complete = self.slots.get(&serial).is_some_and(|s| {
            s.pending
                .as_ref()
                .is_some_and(|p| s.verdicts.len() >= p.rows as usize)
        });
        if complete && let Some(slot) = self.slots.remove(&serial) {
            self.settle(slot);
        }
    }

    /// Settles every slot due by `now`.
    fn expire(&mut self, now: Instant) {
        while self.order.front().is_some_and(|(due, _)| *due <= now) {
            if let Some((_, serial)) = self.order.pop_front()
                && let Some(slot) = self.slots.remove(&serial)
            {
                self.settle(slot);
            }
        }
    }

    /// Settles the oldest slot still held, if any.
    fn settle_oldest(&mut self) {
        while let Some((_, serial)) = self.order.pop_front() {
            if let Some(slot) = self.slots.remove(&serial) {
                self.settle(slot);
                return;
            }
        }
    }

    fn settle(&mut self, slot: Slot) {
        match slot.pending {
            Some(pending) => {
                if slot.verdicts.len() < pending.rows as usize {
                    self.stats.incomplete.fetch_add(1, Ordering::Relaxed);
                }
                self.write(pending, slot.verdicts);
            }
            None => {
                self.stats
                    .orphans
                    .fetch_add(slot.verdicts.len() as u64, Ordering::Relaxed);
            }
        }
    }

    fn write(&mut self, pending: Pending, verdicts: Vec<Verdict>) {
        let Pending {
            serial: _,
            mut entry,
            rows,
            bodies,
            traceparent,
        } = pending;
        entry.verdicts = summarize(&verdicts, rows);
        if entry.model_version.is_none() {
            entry.model_version = verdicts
                .iter()
                .find_map(|v| v.version.as_deref().map(str::to_owned));
        }
        if entry.model.is_none() {
            // gRPC names the model in the message, not the path.
            entry.model = verdicts.first().map(|v| v.model.to_string());
        }
        if let Some(registry) = self.alerts.get() {
            entry.alerts = registry.firing_for(entry.model.as_deref());
        }
        if let Some((request, response)) = bodies {
            entry.payload = redact::payload(
                self.options.payloads,
                entry.verdicts.flagged,
                &request,
                &response,
                &self.options.redact,
            );
            self.stats.held.give_back(request.len() + response.len());
        }
        entry.sanitize();
        if let Some(logs) = &self.options.logs {
            logs.export(
                &entry,
                RecordMeta {
                    traceparent: traceparent.as_deref(),
                    ..RecordMeta::default()
                },
            );
        }
        self.writer.submit(entry);
    }
}

/// What the verdicts on a request's rows say, together.
fn summarize(verdicts: &[Verdict], rows: u32) -> Verdicts {
    let mut summary = Verdicts {
        rows,
        judged: u32::try_from(verdicts.len()).unwrap_or(u32::MAX),
        ..Verdicts::default()
    };
    for verdict in verdicts {
        summary
            .anomalies
            .extend(verdict.anomalies.iter().map(|reason| Anomaly {
                detector: reason.detector.to_owned(),
                score: Some(reason.score),
                features: reason.features.clone(),
            }));
        summary.violations.extend(
            verdict
                .violations
                .iter()
                .map(|v| format!("{}:{}", v.feature, v.kind)),
        );
        summary.drifted |=
            !verdict.drift.drifted_features.is_empty() || verdict.drift.prediction_drifted;
    }
    summary.flagged = !summary.anomalies.is_empty() || !summary.violations.is_empty();
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Body, Filter};
    use crate::monitor::DriftSummary;

    fn join(dir: &std::path::Path) -> Join {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        Join {
            options: FeedOptions {
                payloads: Payloads::None,
                redact: Vec::new(),
                hold: Duration::from_secs(60),
                max_pending: 1,
                queue: 16,
                logs: None,
                payload_budget: 0,
            },
            writer: Writer::open(crate::audit::WriterOptions::new(dir, key)).unwrap(),
            stats: Arc::new(FeedStats::default()),
            alerts: Arc::new(OnceLock::new()),
            slots: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn pending(serial: u64, id: &str, rows: u32) -> Pending {
        Pending {
            serial,
            entry: Entry {
                request_id: id.into(),
                ..Entry::default()
            },
            rows,
            bodies: None,
            traceparent: None,
        }
    }

    fn verdict(serial: u64, id: &str, row: u32) -> Verdict {
        Verdict {
            request_id: Arc::from(id),
            exchange: serial,
            row,
            model: Arc::from("m"),
            version: None,
            time: std::time::SystemTime::UNIX_EPOCH,
            prediction: None,
            anomalies: Vec::new(),
            violations: Vec::new(),
            drift: Arc::new(DriftSummary::default()),
        }
    }

    #[test]
    fn entries_are_written_complete_late_or_early_and_strays_are_counted() {
        let dir = std::env::temp_dir().join(format!("sidewatch-feed-{}", fastrand::u64(..)));
        let mut join = join(&dir);
        // Complete: the verdicts of both rows, one before the entry.
        join.judge(verdict(1, "a", 0));
        join.arrive(pending(1, "a", 2));
        join.judge(verdict(1, "a", 1));
        // Late: one of two verdicts by the hold, then its deadline passes.
        join.arrive(pending(2, "b", 2));
        join.judge(verdict(2, "b", 0));
        // Early: a second waiting entry exceeds max_pending (1), so the
        // oldest held (b, still waiting) is written at once.
        join.arrive(pending(3, "c", 1));
        join.judge(verdict(4, "stray", 0));
        assert_eq!(join.stats.incomplete(), 1, "b went out with one verdict");
        join.expire(Instant::now() + Duration::from_secs(120));
        assert!(join.slots.is_empty() && join.order.is_empty());
        assert_eq!(join.stats.incomplete(), 2, "c waited in vain too");
        assert_eq!(join.stats.orphans(), 1, "the stray verdict");
        join.writer.close();

        let mut out = Vec::new();
        crate::audit::query(&dir, &Filter::default(), &[], &mut out).unwrap();
        let judged: Vec<(String, u64, u64)> = String::from_utf8_lossy(&out)
            .lines()
            .filter_map(|l| {
                let record: crate::audit::Record = serde_json::from_str(l).ok()?;
                match record.body {
                    Body::Entry(e) => Some((
                        e.request_id,
                        u64::from(e.verdicts.rows),
                        u64::from(e.verdicts.judged),
                    )),
                    _ => None,
                }
            })
            .collect();
        assert_eq!(
            judged,
            [
                ("a".to_owned(), 2, 2),
                ("b".to_owned(), 2, 1),
                ("c".to_owned(), 1, 0)
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_payload_budget_holds_what_fits_and_gets_it_back() {
        let budget = Budget::default();
        assert!(budget.take(600, 1000));
        assert!(!budget.take(600, 1000), "1200 bytes would exceed 1000");
        assert!(budget.take(400, 1000), "exactly the limit fits");
        assert!(!budget.take(1, 1000));
        budget.give_back(600);
        assert!(budget.take(600, 1000));
        budget.give_back(10_000);
        assert_eq!(budget.held.load(Ordering::Relaxed), 0, "never below zero");
        assert!(!budget.take(usize::MAX, usize::MAX - 1));
    }
}
