//! The mirror queue: a bounded channel between the proxy's tee and the
//! monitoring pipeline.
//!
//! The proxy only ever calls [`MirrorSender::offer_raw_with`], which never
//! waits: a full queue drops the exchange and counts it. The queue is
//! bounded twice:
//! by count, and by the body and header bytes it holds
//! (`mirror.max_queue_bytes`), so a burst of large payloads cannot grow the
//! sidecar's memory by the count times `mirror.max_payload`. Dedicated
//! worker threads
//! drain the queue in batches (sleeping briefly when it is empty rather than
//! being woken per message, which measured far cheaper for the proxy) and
//! hand each exchange to a [`Consumer`]. A consumer that panics loses that
//! one exchange, which is counted; the worker carries on.
//!
//! A proxy thread does not send exchanges one by one: it collects them in a
//! batch of its own ([`MirrorSender::batch_on_this_thread`]) and hands the
//! batch over when it is full or when the thread is about to go idle
//! ([`flush_this_thread`]). Sent one at a time, the hand-over cost the
//! proxy as much as the copies themselves: a channel slot, shared counters
//! and the worker's reads all bounce cache lines between cores.
//!
//! A batch none of whose exchanges the consumer wants ([`Consumer::wants`])
//! goes back to the thread that sent it, which frees the copies and reuses
//! the batch's vector when it next hands one over or idles. Freed on the
//! worker, every copy would be a cross-thread free: the allocator's page
//! bookkeeping bounces between the cores, and the proxy thread pays for
//! it when it allocates again (measured: most of the tee's cost on the
//! proxy thread when nothing monitors).

mod exchange;
mod headers;

use std::cell::RefCell;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

pub use exchange::{
    BodyCopy, Exchange, RawCopy, RawExchange, RequestHead, ResponseHead, Stages, Timings,
};
pub use headers::{HeaderCopy, write_headers};

/// How long an idle worker sleeps between polls before parking. Each wake
/// is a context switch that the proxy threads pay for on a small pod, so a
/// worker wakes at most 500 times a second under load; at `mirror.queue`'s
/// default of 8192 that still drains 4 million exchanges a second.
const POLL_INTERVAL: Duration = Duration::from_millis(2);
/// Empty polls before a worker parks on the channel instead.
const POLLS_BEFORE_PARKING: u32 = 50;
/// How often a parked worker wakes to check for shutdown.
const PARK_TIMEOUT: Duration = Duration::from_millis(50);
/// A proxy thread hands its batch over once it holds this many exchanges...
const BATCH_LEN: usize = 32;
/// ...or this many body and header bytes, so batches waiting on proxy
/// threads add little to what `mirror.max_queue_bytes` bounds...
const BATCH_BYTES: usize = 64 * 1024;
/// ...or when an exchange ends this long after the batch's oldest did, so a
/// thread kept busy (and never idle) by long streams delays monitoring
/// little. Measured on the exchanges' own timings: no clock read.
const BATCH_AGE: Duration = Duration::from_millis(10);

/// Receives mirrored exchanges on a worker thread; the monitoring pipeline
/// implements it.
pub trait Consumer: Send + 'static {
    /// Handles one exchange. May take its time: the proxy does not wait.
    fn consume(&mut self, exchange: Exchange);

    /// Called when the queue has run empty and at shutdown, so batching
    /// consumers can publish what they hold.
    fn flush(&mut self) {}

    /// Whether this consumer reads exchanges of `model` (the configured
    /// model the path matched, if any). The worker does not assemble an
    /// exchange its consumer does not want: it counts it as consumed and
    /// frees the copies.
    fn wants(&self, _model: Option<&str>) -> bool {
        true
    }
}

/// A consumer that discards everything.
#[derive(Debug, Default)]
pub struct Discard;

impl Consumer for Discard {
    fn consume(&mut self, _exchange: Exchange) {}

    fn wants(&self, _model: Option<&str>) -> bool {
        false
    }
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
    offered: AtomicU64,
    consumed: AtomicU64,
    dropped: [AtomicU64; 4],
    /// Exchanges in the queue.
    queued: AtomicUsize,
    capacity: usize,
    /// Body and header bytes of the exchanges in the queue.
    queued_bytes: AtomicUsize,
    max_bytes: usize,
}

/// The proxy's handle: offers exchanges without ever blocking.
#[derive(Debug, Clone)]
pub struct MirrorSender {
    sender: Sender<Handoff>,
    stats: Arc<MirrorStats>,
}

/// What the queue carries: an exchange, or the tee's raw copies of one,
/// which the worker assembles.
#[derive(Debug)]
// `Raw` is what the proxy sends: boxing it would cost an allocation an
// exchange.
#[allow(clippy::large_enum_variant)]
enum Queued {
    /// Boxed: the queue moves its items by value, and an `Exchange` is
    /// larger than the tee's raw form.
    Built(Box<Exchange>),
    Raw(RawExchange),
}

/// What one message on the queue carries.
#[derive(Debug)]
struct Handoff {
    exchanges: Vec<Queued>,
    /// Payload bytes of `exchanges`, as reserved in the byte budget.
    bytes: usize,
    /// The sending thread's way back, for a batch no consumer wants.
    home: Option<Sender<Vec<Queued>>>,
    /// Whether any exchange names a model: if none does, one question to
    /// the consumer decides the whole batch, and the worker reads none of
    /// its exchanges (their memory stays in the sending core's cache).
    claimed: bool,
}

/// Batches a thread's way back holds; when it is full the worker frees
/// the batch itself. A thread frees its returns whenever it hands a batch
/// over or is about to idle, so what waits is what came back after it last
/// did: at most this many batches of about `BATCH_BYTES` each.
const RETURNS: usize = 8;

/// Exchanges offered on a batching thread and not yet handed over.
struct Batch {
    sink: Arc<MirrorSender>,
    exchanges: Vec<Queued>,
    bytes: usize,
    /// [`BATCH_AGE`] after the oldest exchange in the batch ended.
    due: Option<Instant>,
    /// Whether any exchange in the batch names a model.
    claimed: bool,
    /// Where workers send back this thread's unwanted batches...
    home: Sender<Vec<Queued>>,
    /// ...for it to free here, keeping their copy buffers for [`buffer`].
    returned: Receiver<Vec<Queued>>,
    spare_buffers: Vec<BytesMut>,
}

/// Copy buffers a thread keeps for reuse, and the largest it keeps: at
/// most 64 × 16 KiB a thread, and about 1.5 KiB each for the usual
/// request or response of a few headers and a 1 KiB body.
const SPARE_BUFFERS: usize = 2 * BATCH_LEN;
const SPARE_BUFFER_MAX: usize = 16 * 1024;
/// Buffers are sized in steps of this, so that a request's and a
/// response's can take each other's place.
const BUFFER_STEP: usize = 512;

/// An empty buffer of at least `capacity` bytes for the tee's copies: one
/// this thread's unwanted exchanges gave back if it has one, else a new
/// one. Saves a `malloc` and a `free` a copy when nothing monitors.
pub fn buffer(capacity: usize) -> BytesMut {
    let reused = BATCH.try_with(|cell| {
        let mut slot = cell.try_borrow_mut().ok()?;
        let spares = &mut slot.as_mut()?.spare_buffers;
        spares.pop_if(|b| b.capacity() >= capacity)
    });
    match reused {
        Ok(Some(buffer)) => buffer,
        _ => BytesMut::with_capacity(capacity.next_multiple_of(BUFFER_STEP)),
    }
}

thread_local! {
    static BATCH: RefCell<Option<Batch>> = const { RefCell::new(None) };
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
    // Every message holds at least one exchange and `queued` never passes
    // `capacity`, so the channel itself never fills.
    let (sender, receiver) = crossbeam_channel::bounded(capacity.max(1));
    let stats = Arc::new(MirrorStats {
        offered: AtomicU64::new(0),
        consumed: AtomicU64::new(0),
        dropped: Default::default(),
        queued: AtomicUsize::new(0),
        capacity,
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
    /// count or in bytes). On a thread that batches for this sender, the
    /// exchange joins the thread's batch instead.
    pub fn offer(&self, exchange: Exchange) {
        self.offer_with(|| Queued::Built(Box::new(exchange)));
    }

    /// Queues the tee's raw copies of an exchange, as [`Self::offer`] does,
    /// built by `build` where it is queued: moved by value through the
    /// offer, it was copied four times on the way (about 300 instructions).
    pub fn offer_raw_with(&self, build: impl FnOnce() -> RawExchange) {
        self.offer_with(|| Queued::Raw(build()));
    }

    fn offer_with(&self, build: impl FnOnce() -> Queued) {
        let mut build = Some(build);
        // Fails only while the thread is exiting: then it goes directly.
        let _ = BATCH.try_with(|cell| self.add_to_batch(cell, &mut build));
        if let Some(build) = build {
            let exchange = build();
            self.hand_over(Handoff {
                bytes: exchange.payload_len(),
                claimed: exchange.model().is_some(),
                exchanges: vec![exchange],
                home: None,
            });
        }
    }

    /// Builds the exchange into this thread's batch if the batch is this
    /// sender's, handing the batch over when it is full.
    fn add_to_batch(
        &self,
        cell: &RefCell<Option<Batch>>,
        build: &mut Option<impl FnOnce() -> Queued>,
    ) {
        let handoff = {
            let Ok(mut slot) = cell.try_borrow_mut() else {
                return;
            };
            let Some(batch) = slot.as_mut().filter(|b| std::ptr::eq(&*b.sink, self)) else {
                return;
            };
            let Some(build) = build.take() else {
                return;
            };
            batch.exchanges.push(build());
            let Some(exchange) = batch.exchanges.last() else {
                return;
            };
            let ended = exchange.ended();
            // Compared, not subtracted: a duration per exchange costs more.
            let due = *batch
                .due
                .get_or_insert_with(|| ended.checked_add(BATCH_AGE).unwrap_or(ended));
            batch.bytes += exchange.payload_len();
            batch.claimed |= exchange.model().is_some();
            if batch.exchanges.len() < BATCH_LEN && batch.bytes < BATCH_BYTES && ended < due {
                return;
            }
            batch.take(true)
        };
        self.hand_over(handoff);
    }

    /// Makes this thread collect what it offers to this sender into a
    /// batch, handed over when full or by [`flush_this_thread`], which the
    /// thread must call before it goes idle and before it ends.
    pub fn batch_on_this_thread(self: &Arc<Self>) {
        let (home, returned) = crossbeam_channel::bounded(RETURNS);
        let batch = Batch {
            sink: self.clone(),
            exchanges: Vec::with_capacity(BATCH_LEN),
            bytes: 0,
            due: None,
            claimed: false,
            home,
            returned,
            spare_buffers: Vec::with_capacity(SPARE_BUFFERS),
        };
        // A batch this thread had before hands itself over as it drops.
        let _ = BATCH.try_with(|cell| cell.try_borrow_mut().map(|mut slot| slot.replace(batch)));
    }

    /// Queues a batch as one message, or drops and counts each of its
    /// exchanges that does not fit.
    fn hand_over(&self, mut handoff: Handoff) {
        let n = handoff.exchanges.len();
        if n == 0 {
            return;
        }
        self.stats.offered.fetch_add(n as u64, Ordering::Relaxed);
        let Err(reason) = self.stats.reserve(n, handoff.bytes) else {
            return self.send(handoff);
        };
        if n == 1 {
            return self.stats.count_drops(reason, 1);
        }
        // The whole batch does not fit: keep, in order, each exchange that
        // still does.
        let mut kept_bytes = 0;
        handoff.exchanges.retain(|exchange| {
            let size = exchange.payload_len();
            match self.stats.reserve(1, size) {
                Ok(()) => {
                    kept_bytes += size;
                    true
                }
                Err(reason) => {
                    self.stats.count_drops(reason, 1);
                    false
                }
            }
        });
        handoff.bytes = kept_bytes;
        if !handoff.exchanges.is_empty() {
            self.send(handoff);
        }
    }

    /// Sends exchanges whose room is already reserved.
    fn send(&self, handoff: Handoff) {
        let (n, bytes) = (handoff.exchanges.len(), handoff.bytes);
        let reason = match self.sender.try_send(handoff) {
            Ok(()) => return,
            Err(TrySendError::Full(_)) => DropReason::QueueFull,
            Err(TrySendError::Disconnected(_)) => DropReason::Closed,
        };
        self.stats.release(n, bytes);
        self.stats.count_drops(reason, n);
    }

    /// The counters, for `/metrics` and `/v1/stats`.
    pub fn stats(&self) -> &Arc<MirrorStats> {
        &self.stats
    }
}

// === impl MirrorStats ===

impl MirrorStats {
    fn count_drops(&self, reason: DropReason, n: usize) {
        self.dropped[reason as usize].fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Takes room for `n` exchanges holding `bytes` of copies. Taken before
    /// sending, so a worker never gives back more than was taken; offers
    /// racing here may each see the other's share and drop where one would
    /// have fit, never overshoot.
    fn reserve(&self, n: usize, bytes: usize) -> Result<(), DropReason> {
        let queued = self.queued.fetch_add(n, Ordering::Relaxed);
        if queued + n > self.capacity {
            self.queued.fetch_sub(n, Ordering::Relaxed);
            return Err(DropReason::QueueFull);
        }
        if bytes > 0 {
            let queued_bytes = self.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
            if queued_bytes + bytes > self.max_bytes {
                self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
                self.queued.fetch_sub(n, Ordering::Relaxed);
                return Err(DropReason::QueueBytes);
            }
        }
        Ok(())
    }

    /// Gives back room taken by [`MirrorStats::reserve`].
    fn release(&self, n: usize, bytes: usize) {
        self.queued.fetch_sub(n, Ordering::Relaxed);
        if bytes > 0 {
            self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
        }
    }

    /// Exchanges waiting in the queue now.
    pub fn queue_depth(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
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

/// Hands this thread's batch over, if it has anything in it. Cheap when
/// there is nothing: proxy threads call it whenever they are about to idle.
/// Also frees what the workers sent back to this thread.
pub fn flush_this_thread() {
    let pending = BATCH.try_with(|cell| {
        let mut slot = cell.try_borrow_mut().ok()?;
        let batch = slot.as_mut()?;
        if batch.exchanges.is_empty() {
            batch.free_returned();
            return None;
        }
        Some((batch.sink.clone(), batch.take(true)))
    });
    if let Ok(Some((sink, handoff))) = pending {
        sink.hand_over(handoff);
    }
}

/// Hands this thread's batch over and stops batching on it.
pub fn stop_batching_on_this_thread() {
    // The batch hands itself over as it drops.
    let _ = BATCH.try_with(|cell| cell.try_borrow_mut().map(|mut slot| slot.take()));
}

// === impl Queued ===

impl Queued {
    fn payload_len(&self) -> usize {
        match self {
            Queued::Built(exchange) => exchange.payload_len(),
            Queued::Raw(exchange) => exchange.payload_len(),
        }
    }

    fn ended(&self) -> Instant {
        match self {
            Queued::Built(exchange) => exchange.timings.stages.ended(),
            Queued::Raw(exchange) => exchange.stages.ended(),
        }
    }

    fn model(&self) -> Option<&str> {
        match self {
            Queued::Built(exchange) => exchange.model.as_deref(),
            Queued::Raw(exchange) => exchange.model.as_deref(),
        }
    }

    fn into_exchange(self) -> Exchange {
        match self {
            Queued::Built(exchange) => *exchange,
            Queued::Raw(exchange) => exchange.into_exchange(),
        }
    }
}

impl Batch {
    /// Empties the batch into a message for the queue, with the way back
    /// to this thread if `come_back` (not for a thread that is ending). The
    /// next batch reuses a vector a worker sent back, if there is one.
    fn take(&mut self, come_back: bool) -> Handoff {
        self.due = None;
        let next = self
            .free_returned()
            .unwrap_or_else(|| Vec::with_capacity(BATCH_LEN));
        Handoff {
            exchanges: std::mem::replace(&mut self.exchanges, next),
            bytes: std::mem::take(&mut self.bytes),
            claimed: std::mem::take(&mut self.claimed),
            home: come_back.then(|| self.home.clone()),
        }
    }

    /// Frees the exchanges workers sent back; returns one emptied vector.
    fn free_returned(&mut self) -> Option<Vec<Queued>> {
        let mut spare = None;
        while let Ok(mut spent) = self.returned.try_recv() {
            // Taken in place: moving each exchange out costs more than
            // the buffers save.
            for exchange in &mut spent {
                if let Queued::Raw(raw) = exchange {
                    self.keep_buffer(std::mem::take(&mut raw.request.buf));
                    if let Some((_, response)) = &mut raw.response {
                        self.keep_buffer(std::mem::take(&mut response.buf));
                    }
                }
            }
            spent.clear();
            spare.get_or_insert(spent);
        }
        spare
    }

    fn keep_buffer(&mut self, mut buffer: BytesMut) {
        if self.spare_buffers.len() < SPARE_BUFFERS && buffer.capacity() <= SPARE_BUFFER_MAX {
            buffer.clear();
            self.spare_buffers.push(buffer);
        }
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        // Also when the thread ends without a flush (a panic). Nothing
        // will come back to a thread that is ending.
        let handoff = self.take(false);
        self.sink.hand_over(handoff);
    }
}

struct Worker {
    receiver: Receiver<Handoff>,
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
                Ok(exchanges) => {
                    self.consume(exchanges);
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
                // Every proxy thread handed its last batch over before
                // `stopping` was set, but maybe after the empty poll above.
                while let Ok(exchanges) = self.receiver.try_recv() {
                    self.consume(exchanges);
                }
                break;
            }
            if idle_polls < POLLS_BEFORE_PARKING {
                idle_polls += 1;
                std::thread::sleep(POLL_INTERVAL);
            } else if let Ok(exchanges) = self.receiver.recv_timeout(PARK_TIMEOUT) {
                self.consume(exchanges);
                idle_polls = 0;
                pending_flush = true;
            }
        }
        self.flush();
    }

    fn consume(&mut self, handoff: Handoff) {
        let Some(exchanges) = self.send_home_if_unwanted(handoff) else {
            return;
        };
        for exchange in exchanges {
            // Handed over one at a time: the rest of the batch still counts
            // as queued (depth and byte budget) until its turn, and the
            // consumer's memory is its own to bound.
            self.stats.release(1, exchange.payload_len());
            let consumer = &mut self.consumer;
            let assemble_and_consume = || {
                if consumer.wants(exchange.model()) {
                    consumer.consume(exchange.into_exchange());
                }
            };
            match std::panic::catch_unwind(AssertUnwindSafe(assemble_and_consume)) {
                Ok(()) => {
                    self.stats.consumed.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    self.stats.count_drops(DropReason::ConsumerPanic, 1);
                    tracing::warn!("Mirror consumer panicked; the exchange was dropped.");
                }
            }
        }
    }

    /// Sends a batch the consumer wants none of back to the thread it came
    /// from (or frees it here if the way back is full), counting it
    /// consumed; returns the exchanges of a batch it wants any of, or of
    /// one with no way back.
    fn send_home_if_unwanted(&self, handoff: Handoff) -> Option<Vec<Queued>> {
        let Handoff {
            exchanges,
            bytes,
            home,
            claimed,
        } = handoff;
        let Some(home) = home else {
            return Some(exchanges);
        };
        let consumer = &self.consumer;
        let any_wanted = || {
            if claimed {
                exchanges.iter().any(|e| consumer.wants(e.model()))
            } else {
                consumer.wants(None)
            }
        };
        // A consumer that panics deciding is asked again, one exchange at
        // a time, where a panic is counted.
        if std::panic::catch_unwind(AssertUnwindSafe(any_wanted)).unwrap_or(true) {
            return Some(exchanges);
        }
        let n = exchanges.len();
        self.stats.release(n, bytes);
        // Full or gone: freed here, as any wanted batch is.
        let _ = home.try_send(exchanges);
        self.stats.consumed.fetch_add(n as u64, Ordering::Relaxed);
        None
    }

    fn flush(&mut self) {
        let consumer = &mut self.consumer;
        if std::panic::catch_unwind(AssertUnwindSafe(|| consumer.flush())).is_err() {
            tracing::warn!("Mirror consumer panicked while flushing.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEADLINE: Duration = Duration::from_secs(10);

    /// Passes each exchange's request id on, after `gate` (if any) opens.
    struct Recorder {
        ids: crossbeam_channel::Sender<String>,
        gate: Option<crossbeam_channel::Receiver<()>>,
    }

    impl Consumer for Recorder {
        fn consume(&mut self, exchange: Exchange) {
            if let Some(gate) = &self.gate {
                let _ = gate.recv();
            }
            let _ = self.ids.send(exchange.request_id);
        }
    }

    fn exchange(id: usize, body: usize) -> Exchange {
        Exchange {
            request_id: id.to_string(),
            serial: 0,
            client: std::net::SocketAddr::from(([127, 0, 0, 1], 1)),
            model: None,
            request: RequestHead {
                method: http::Method::POST,
                uri: http::Uri::from_static("/v2/models/m/infer"),
                version: http::Version::HTTP_11,
                headers: HeaderCopy::default(),
            },
            request_body: BodyCopy {
                bytes: bytes::Bytes::from(vec![b'x'; body]),
                size: body as u64,
                truncated: false,
                complete: true,
            },
            response: None,
            response_body: BodyCopy::default(),
            response_trailers: None,
            timings: exchange::Timings::received(std::time::SystemTime::now(), Instant::now()),
            proxy_error: None,
        }
    }

    fn recorder(
        capacity: usize,
        max_bytes: usize,
        gate: Option<crossbeam_channel::Receiver<()>>,
    ) -> (
        Arc<MirrorSender>,
        MirrorWorkers,
        crossbeam_channel::Receiver<String>,
    ) {
        let (ids, received) = crossbeam_channel::unbounded();
        let (sink, workers) = start(capacity, max_bytes, vec![Box::new(Recorder { ids, gate })]);
        (Arc::new(sink), workers, received)
    }

    fn received_ids(received: &crossbeam_channel::Receiver<String>, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| {
                received
                    .recv_timeout(DEADLINE)
                    .expect("an exchange in time")
            })
            .collect()
    }

    fn ids(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| i.to_string()).collect()
    }

    /// Runs `f` on a new thread that batches for `sink`, to its end.
    fn on_batching_thread(
        sink: &Arc<MirrorSender>,
        f: impl FnOnce(&Arc<MirrorSender>) + Send + 'static,
    ) {
        let sink = sink.clone();
        std::thread::spawn(move || {
            sink.batch_on_this_thread();
            f(&sink);
        })
        .join()
        .expect("the batching thread");
    }

    #[test]
    fn a_batching_thread_hands_over_when_it_flushes_and_when_the_batch_is_full() {
        let (sink, workers, received) = recorder(1024, usize::MAX, None);
        let stats = sink.stats().clone();
        on_batching_thread(&sink, |thread_sink| {
            for i in 0..3 {
                thread_sink.offer(exchange(i, 10));
            }
            // Held on this thread: not offered to the queue yet.
            assert_eq!(thread_sink.stats().offered(), 0);
            flush_this_thread();
            assert_eq!(thread_sink.stats().offered(), 3);
            // A full batch goes without a flush.
            for i in 3..3 + BATCH_LEN {
                thread_sink.offer(exchange(i, 10));
            }
            assert_eq!(thread_sink.stats().offered(), 3 + BATCH_LEN as u64);
            // Another sender's exchanges on this thread go directly.
            let (other, _other_workers) = start(4, usize::MAX, vec![Box::new(Discard)]);
            other.offer(exchange(0, 10));
            assert_eq!(other.stats().offered(), 1);
            stop_batching_on_this_thread();
            thread_sink.offer(exchange(3 + BATCH_LEN, 10));
            assert_eq!(thread_sink.stats().offered(), 4 + BATCH_LEN as u64);
        });
        assert_eq!(
            received_ids(&received, 4 + BATCH_LEN),
            ids(0..4 + BATCH_LEN)
        );
        assert!(workers.finish(Instant::now() + DEADLINE));
        assert_eq!(stats.consumed(), 4 + BATCH_LEN as u64);
    }

    /// Wants only the exchanges of model `wanted`; fails the test if
    /// handed any other.
    struct Choosy {
        wanted: &'static str,
        ids: crossbeam_channel::Sender<String>,
    }

    impl Consumer for Choosy {
        fn consume(&mut self, exchange: Exchange) {
            assert_eq!(exchange.model.as_deref(), Some(self.wanted));
            let _ = self.ids.send(exchange.request_id);
        }

        fn wants(&self, model: Option<&str>) -> bool {
            model == Some(self.wanted)
        }
    }

    fn wait_until(mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !condition() {
            assert!(Instant::now() < deadline, "condition not met in time");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn an_unwanted_batch_is_counted_consumed_and_freed_on_the_thread_that_sent_it() {
        let (sent, received) = crossbeam_channel::unbounded();
        let consumer = Choosy {
            wanted: "m",
            ids: sent,
        };
        let (sink, workers) = start(1024, usize::MAX, vec![Box::new(consumer)]);
        let sink = Arc::new(sink);
        let stats = sink.stats().clone();
        let wanted: Arc<str> = Arc::from("m");
        let wanted_model = wanted.clone();
        let other_model: Arc<str> = Arc::from("other");
        on_batching_thread(&sink, move |thread_sink| {
            let of = |model: &Arc<str>, i: usize| {
                let mut e = exchange(i, 10);
                e.model = Some(model.clone());
                e
            };
            for i in 0..5 {
                thread_sink.offer(of(&other_model, i));
            }
            flush_this_thread();
            wait_until(|| thread_sink.stats().consumed() == 5);
            // Not freed on the worker: still held, on its way back here...
            assert_eq!(Arc::strong_count(&other_model), 6);
            assert_eq!(thread_sink.stats().queue_depth(), 0);
            assert_eq!(thread_sink.stats().queue_bytes(), 0);
            // ...and freed by this thread as it idles.
            flush_this_thread();
            assert_eq!(Arc::strong_count(&other_model), 1);
            // A batch with one wanted exchange is handed over one by one:
            // the consumer gets the one it wants, and the rest are freed.
            thread_sink.offer(of(&other_model, 5));
            thread_sink.offer(of(&wanted_model, 6));
            thread_sink.offer(of(&other_model, 7));
            flush_this_thread();
            wait_until(|| thread_sink.stats().consumed() == 8);
            assert_eq!(Arc::strong_count(&other_model), 1);
            stop_batching_on_this_thread();
        });
        assert_eq!(received_ids(&received, 1), ids(6..7));
        assert!(workers.finish(Instant::now() + DEADLINE));
        assert_eq!(stats.consumed(), 8);
        assert_eq!(Arc::strong_count(&wanted), 1);
        assert!(received.try_recv().is_err());
    }

    #[test]
    fn a_batch_goes_when_an_exchange_ends_long_after_its_oldest() {
        let (sink, workers, received) = recorder(1024, usize::MAX, None);
        on_batching_thread(&sink, |thread_sink| {
            let start = Instant::now();
            let ended = |ms: u64, i: usize| {
                let mut e = exchange(i, 10);
                e.timings.stages.done = Some(start + Duration::from_millis(ms));
                e
            };
            thread_sink.offer(ended(0, 0));
            thread_sink.offer(ended(5, 1));
            assert_eq!(thread_sink.stats().offered(), 0);
            // No flush: the third ended 10 ms after the first.
            thread_sink.offer(ended(10, 2));
            assert_eq!(thread_sink.stats().offered(), 3);
            // The age starts again with the next batch.
            thread_sink.offer(ended(12, 3));
            assert_eq!(thread_sink.stats().offered(), 3);
            stop_batching_on_this_thread();
        });
        assert_eq!(received_ids(&received, 4), ids(0..4));
        assert!(workers.finish(Instant::now() + DEADLINE));
    }

    /// The tee's raw form of `exchange(id, body)`: target, headers (with
    /// the id) and body in one buffer.
    fn raw_exchange(id: usize, body: usize) -> (RawExchange, usize) {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-request-id", id.to_string().parse().expect("an id"));
        let target = b"/v2/models/m/infer";
        let mut buf = bytes::BytesMut::new();
        buf.extend_from_slice(target);
        write_headers(&headers, &mut buf);
        let head_len = buf.len();
        buf.extend_from_slice(&vec![b'x'; body]);
        let len = buf.len();
        let built = exchange(id, body);
        let raw = RawExchange {
            client: built.client,
            model: None,
            method: http::Method::POST,
            version: http::Version::HTTP_11,
            request: RawCopy {
                buf,
                target_len: target.len(),
                head_len,
                body_size: body as u64,
                complete: true,
            },
            response: None,
            response_trailers: None,
            stages: Stages::received(built.timings.stages.received),
            proxy_error: None,
        };
        (raw, len)
    }

    #[test]
    fn the_buffers_of_unwanted_exchanges_are_reused_by_the_thread_that_sent_them() {
        let (sink, workers) = start(1024, usize::MAX, vec![Box::new(Discard)]);
        let sink = Arc::new(sink);
        on_batching_thread(&sink, |thread_sink| {
            let (small, _) = raw_exchange(0, 100);
            let (large, _) = raw_exchange(1, SPARE_BUFFER_MAX + 1);
            let kept = small.request.buf.as_ptr();
            let too_large = large.request.buf.as_ptr();
            thread_sink.offer_raw_with(|| large);
            thread_sink.offer_raw_with(|| small);
            flush_this_thread();
            wait_until(|| thread_sink.stats().consumed() == 2);
            // Back on this thread: the small copy's buffer is kept, emptied;
            // the one over SPARE_BUFFER_MAX is freed.
            flush_this_thread();
            let reused = buffer(64);
            assert_eq!(reused.as_ptr(), kept);
            assert!(reused.is_empty());
            let fresh = buffer(64);
            assert_ne!(fresh.as_ptr(), kept);
            assert_ne!(fresh.as_ptr(), too_large);
            assert_eq!(fresh.capacity() % BUFFER_STEP, 0);
            // A kept buffer smaller than asked for stays kept.
            let (small, _) = raw_exchange(2, 100);
            let kept = small.request.buf.as_ptr();
            thread_sink.offer_raw_with(|| small);
            flush_this_thread();
            wait_until(|| thread_sink.stats().consumed() == 3);
            flush_this_thread();
            assert!(buffer(SPARE_BUFFER_MAX).capacity() >= SPARE_BUFFER_MAX);
            assert_eq!(buffer(64).as_ptr(), kept);
            stop_batching_on_this_thread();
        });
        assert!(workers.finish(Instant::now() + DEADLINE));
    }

    #[test]
    fn a_raw_exchange_counts_its_copies_and_arrives_assembled() {
        let (gate_open, gate) = crossbeam_channel::unbounded();
        let (sink, workers, received) = recorder(1024, usize::MAX, Some(gate));
        let (first, _) = raw_exchange(0, 100);
        let (second, len) = raw_exchange(1, 100);
        sink.offer_raw_with(|| first);
        sink.offer_raw_with(|| second);
        let deadline = Instant::now() + DEADLINE;
        let stats = sink.stats().clone();
        while stats.queue_depth() != 1 {
            assert!(Instant::now() < deadline, "depth {}", stats.queue_depth());
            std::thread::yield_now();
        }
        // Target, headers and body: what the queue holds for it.
        assert_eq!(stats.queue_bytes(), len);
        drop(gate_open);
        assert_eq!(received_ids(&received, 2), ids(0..2));
        assert!(workers.finish(Instant::now() + DEADLINE));
        assert_eq!(stats.queue_bytes(), 0);
    }

    #[test]
    fn a_batch_counts_as_queued_until_each_exchange_is_consumed() {
        let (gate_open, gate) = crossbeam_channel::unbounded();
        let (sink, workers, received) = recorder(1024, usize::MAX, Some(gate));
        on_batching_thread(&sink, |thread_sink| {
            for i in 0..3 {
                thread_sink.offer(exchange(i, 100));
            }
            stop_batching_on_this_thread();
        });
        // The worker holds the first exchange at the gate; the other two
        // are still queued, with their bytes.
        let deadline = Instant::now() + DEADLINE;
        let stats = sink.stats().clone();
        while stats.queue_depth() != 2 {
            assert!(Instant::now() < deadline, "depth {}", stats.queue_depth());
            std::thread::yield_now();
        }
        assert_eq!(stats.queue_bytes(), 200);
        drop(gate_open);
        assert_eq!(received_ids(&received, 3), ids(0..3));
        assert!(workers.finish(Instant::now() + DEADLINE));
        assert_eq!(stats.queue_depth(), 0);
        assert_eq!(stats.queue_bytes(), 0);
    }

    #[test]
    fn a_thread_that_ends_without_flushing_still_hands_over() {
        let (sink, workers, received) = recorder(1024, usize::MAX, None);
        on_batching_thread(&sink, |thread_sink| {
            thread_sink.offer(exchange(0, 10));
            thread_sink.offer(exchange(1, 10));
        });
        assert_eq!(sink.stats().offered(), 2);
        assert_eq!(received_ids(&received, 2), ids(0..2));
        assert!(workers.finish(Instant::now() + DEADLINE));
    }

    #[test]
    fn a_batch_that_does_not_fit_keeps_in_order_what_does() {
        // Bytes: room for two 1000-byte exchanges of four.
        let (gate_open, gate) = crossbeam_channel::unbounded();
        let (sink, workers, received) = recorder(1024, 2_500, Some(gate));
        on_batching_thread(&sink, |thread_sink| {
            for i in 0..4 {
                thread_sink.offer(exchange(i, 1_000));
            }
            flush_this_thread();
        });
        let stats = sink.stats();
        assert_eq!(stats.offered(), 4);
        assert_eq!(stats.dropped(DropReason::QueueBytes), 2);
        drop(gate_open);
        assert_eq!(received_ids(&received, 2), ids(0..2));
        assert!(workers.finish(Instant::now() + DEADLINE));
        assert_eq!(stats.queue_bytes(), 0);
        assert_eq!(stats.queue_depth(), 0);

        // Count: room for three exchanges of five.
        let (gate_open, gate) = crossbeam_channel::unbounded();
        let (sink, workers, received) = recorder(3, usize::MAX, Some(gate));
        on_batching_thread(&sink, |thread_sink| {
            for i in 0..5 {
                thread_sink.offer(exchange(i, 0));
            }
            flush_this_thread();
        });
        assert_eq!(sink.stats().dropped(DropReason::QueueFull), 2);
        drop(gate_open);
        assert_eq!(received_ids(&received, 3), ids(0..3));
        assert!(workers.finish(Instant::now() + DEADLINE));
    }
}
