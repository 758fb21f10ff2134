//! The mirror queue: a bounded channel between the proxy's tee and the
//! monitoring pipeline.
//!
//! The proxy only ever calls [`MirrorSender::offer`], which never waits: a
//! full queue drops the exchange and counts it. The queue is bounded twice:
//! by count, and by the body and header bytes it holds
//! (`mirror.max_queue_bytes`), so a burst of large payloads cannot grow the
//! sidecar's memory by the count times `mirror.max_payload`. Dedicated
//! worker threads
//! drain the queue in batches (sleeping briefly when it is empty rather than
//! being woken per message, which measured far cheaper for the proxy) and
//! hand each exchange to a [`Consumer`]. A consumer that panics loses that
//! one exchange, which is counted; the worker carries on.

mod exchange;
mod headers;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

pub use exchange::{BodyCopy, Exchange, RequestHead, ResponseHead, Timings};
pub use headers::HeaderCopy;

/// How long an idle worker sleeps between polls before parking. Each wake
/// is a context switch that the proxy threads pay for on a small pod, so a
/// worker wakes at most 500 times a second under load; at `mirror.queue`'s
/// default of 8192 that still drains 4 million exchanges a second.
const POLL_INTERVAL: Duration = Duration::from_millis(2);
/// Empty polls before a worker parks on the channel instead.
const POLLS_BEFORE_PARKING: u32 = 50;
/// How often a parked worker wakes to check for shutdown.
const PARK_TIMEOUT: Duration = Duration::from_millis(50);

/// Receives mirrored exchanges on a worker thread; the monitoring pipeline
/// implements it.
pub trait Consumer: Send + 'static {
    /// Handles one exchange. May take its time: the proxy does not wait.
    fn consume(&mut self, exchange: Exchange);

    /// Called when the queue has run empty and at shutdown, so batching
    /// consumers can publish what they hold.
    fn flush(&mut self) {}
}

/// A consumer that discards everything.
#[derive(Debug, Default)]
pub struct Discard;

impl Consumer for Discard {
    fn consume(&mut self, _exchange: Exchange) {}
}

/// Why an exchange was dropped instead of consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The queue was full.
    QueueFull,
    /// The mirror had shut down.
    Closed,
    /// The consumer panicked on it.
    ConsumerPanic,
    /// The exchanges queued already take `mirror.max_queue_bytes`.
    QueueBytes,
}

const REASONS: [(&str, DropReason); 4] = [
    ("queue_full", DropReason::QueueFull),
    ("closed", DropReason::Closed),
    ("consumer_panic", DropReason::ConsumerPanic),
    ("queue_bytes", DropReason::QueueBytes),
];

/// Counters of the mirror, shared by the proxy, the workers and `/metrics`.
#[derive(Debug)]
pub struct MirrorStats {
    receiver: Receiver<Exchange>,
    offered: AtomicU64,
    consumed: AtomicU64,
    dropped: [AtomicU64; 4],
    /// Body and header bytes of the exchanges in the queue.
    queued_bytes: AtomicUsize,
    max_bytes: usize,
}

/// The proxy's handle: offers exchanges without ever blocking.
#[derive(Debug, Clone)]
pub struct MirrorSender {
    sender: Sender<Exchange>,
    stats: Arc<MirrorStats>,
}

/// The worker threads, kept to flush and join them at shutdown.
#[derive(Debug)]
pub struct MirrorWorkers {
    stopping: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
    done: Receiver<()>,
}

/// Starts `consumers.len()` workers draining a queue of at most `capacity`
/// exchanges holding at most `max_bytes` of body and header copies.
pub fn start(
    capacity: usize,
    max_bytes: usize,
    consumers: Vec<Box<dyn Consumer>>,
) -> (MirrorSender, MirrorWorkers) {
    let (sender, receiver) = crossbeam_channel::bounded(capacity);
    let stats = Arc::new(MirrorStats {
        receiver: receiver.clone(),
        offered: AtomicU64::new(0),
        consumed: AtomicU64::new(0),
        dropped: Default::default(),
        queued_bytes: AtomicUsize::new(0),
        max_bytes,
    });
    let stopping = Arc::new(AtomicBool::new(false));
    let (done_tx, done) = crossbeam_channel::unbounded();
    let workers = consumers
        .into_iter()
        .enumerate()
        .map(|(i, consumer)| {
            let worker = Worker {
                receiver: receiver.clone(),
                stats: stats.clone(),
                stopping: stopping.clone(),
                consumer,
            };
            let done = done_tx.clone();
            std::thread::Builder::new()
                .name(format!("sidewatch-mirror-{i}"))
                .spawn(move || {
                    worker.run();
                    let _ = done.send(());
                })
        })
        .filter_map(|spawned| match spawned {
            Ok(handle) => Some(handle),
            Err(error) => {
                tracing::error!(%error, "Could not start a mirror worker thread.");
                None
            }
        })
        .collect();
    (
        MirrorSender { sender, stats },
        MirrorWorkers {
            stopping,
            workers,
            done,
        },
    )
}

// === impl MirrorSender ===

impl MirrorSender {
    /// Queues an exchange, or drops and counts it if the queue is full (in
    /// count or in bytes).
    pub fn offer(&self, exchange: Exchange) {
        self.stats.offered.fetch_add(1, Ordering::Relaxed);
        let bytes = exchange.payload_len();
        if bytes > 0 {
            // Taken before sending, so the worker never gives back more than
            // was taken; offers racing here may each see the other's share
            // and drop where one would have fit, never overshoot.
            let queued = self.stats.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
            if queued + bytes > self.stats.max_bytes {
                self.stats.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
                self.stats.count_drop(DropReason::QueueBytes);
                return;
            }
        }
        let reason = match self.sender.try_send(exchange) {
            Ok(()) => return,
            Err(TrySendError::Full(_)) => DropReason::QueueFull,
            Err(TrySendError::Disconnected(_)) => DropReason::Closed,
        };
        self.stats.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
        self.stats.count_drop(reason);
    }

    /// The counters, for `/metrics` and `/v1/stats`.
    pub fn stats(&self) -> &Arc<MirrorStats> {
        &self.stats
    }
}

// === impl MirrorStats ===

impl MirrorStats {
    fn count_drop(&self, reason: DropReason) {
        self.dropped[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Exchanges waiting in the queue now.
    pub fn queue_depth(&self) -> usize {
        self.receiver.len()
    }

    /// Body and header bytes of the exchanges waiting in the queue now.
    pub fn queue_bytes(&self) -> usize {
        self.queued_bytes.load(Ordering::Relaxed)
    }

    /// Exchanges offered by the proxy so far.
    pub fn offered(&self) -> u64 {
        self.offered.load(Ordering::Relaxed)
    }

    /// Exchanges a consumer finished.
    pub fn consumed(&self) -> u64 {
        self.consumed.load(Ordering::Relaxed)
    }

    /// Exchanges dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize].load(Ordering::Relaxed)
    }

    /// Dropped counts with their label values.
    pub fn dropped_by_reason(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        REASONS
            .iter()
            .map(|(label, reason)| (*label, self.dropped(*reason)))
    }
}

impl Collector for MirrorStats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        ConstGauge::new(self.queue_depth() as i64).encode(encoder.encode_descriptor(
            "sidewatch_mirror_queue_depth",
            "Exchanges waiting in the mirror queue.",
            None,
            MetricType::Gauge,
        )?)?;
        ConstGauge::new(self.queue_bytes() as i64).encode(encoder.encode_descriptor(
            "sidewatch_mirror_queue_bytes",
            "Body and header bytes of the exchanges waiting in the mirror queue (at most mirror.max_queue_bytes).",
            None,
            MetricType::Gauge,
        )?)?;
        {
            let mut family = encoder.encode_descriptor(
                "sidewatch_mirror_dropped",
                "Exchanges not monitored, by reason; the proxied request itself was unaffected.",
                None,
                MetricType::Counter,
            )?;
            for (label, n) in self.dropped_by_reason() {
                family
                    .encode_family(&[("reason", label)])?
                    .encode_counter::<NoLabelSet, _, f64>(&n, None)?;
            }
        }
        let mut metric = encoder.encode_descriptor(
            "sidewatch_mirror_consumed",
            "Exchanges handed to the monitoring pipeline.",
            None,
            MetricType::Counter,
        )?;
        metric.encode_counter::<NoLabelSet, _, f64>(&self.consumed(), None)
    }
}

// === impl MirrorWorkers ===

impl MirrorWorkers {
    /// Lets the workers drain what is queued, then joins them. Returns false
    /// if they were still busy at `deadline` (they are then abandoned).
    pub fn finish(self, deadline: Instant) -> bool {
        self.stopping.store(true, Ordering::Release);
        for _ in 0..self.workers.len() {
            if self.done.recv_deadline(deadline).is_err() {
                tracing::warn!("Mirror workers did not drain the queue before the deadline.");
                return false;
            }
        }
        for worker in self.workers {
            let _ = worker.join();
        }
        true
    }
}

struct Worker {
    receiver: Receiver<Exchange>,
    stats: Arc<MirrorStats>,
    stopping: Arc<AtomicBool>,
    consumer: Box<dyn Consumer>,
}

impl Worker {
    fn run(mut self) {
        let mut idle_polls = 0;
        let mut pending_flush = false;
        loop {
            match self.receiver.try_recv() {
                Ok(exchange) => {
                    self.consume(exchange);
                    idle_polls = 0;
                    pending_flush = true;
                    continue;
                }
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {}
            }
            if pending_flush {
                self.flush();
                pending_flush = false;
            }
            if self.stopping.load(Ordering::Acquire) {
                break;
            }
            if idle_polls < POLLS_BEFORE_PARKING {
                idle_polls += 1;
                std::thread::sleep(POLL_INTERVAL);
            } else if let Ok(exchange) = self.receiver.recv_timeout(PARK_TIMEOUT) {
                self.consume(exchange);
                idle_polls = 0;
                pending_flush = true;
            }
        }
        self.flush();
    }

    fn consume(&mut self, exchange: Exchange) {
        // Handed over: the consumer's memory is its own to bound.
        self.stats
            .queued_bytes
            .fetch_sub(exchange.payload_len(), Ordering::Relaxed);
        let consumer = &mut self.consumer;
        match std::panic::catch_unwind(AssertUnwindSafe(|| consumer.consume(exchange))) {
            Ok(()) => {
                self.stats.consumed.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.stats.count_drop(DropReason::ConsumerPanic);
                tracing::warn!("Mirror consumer panicked; the exchange was dropped.");
            }
        }
    }

    fn flush(&mut self) {
        let consumer = &mut self.consumer;
        if std::panic::catch_unwind(AssertUnwindSafe(|| consumer.flush())).is_err() {
            tracing::warn!("Mirror consumer panicked while flushing.");
        }
    }
}
