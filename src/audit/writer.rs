//! The writer: a dedicated thread behind a bounded queue.
//!
//! The proxy side only ever calls [`Writer::submit`], a `try_send` that
//! counts what it drops. The thread (its state and loop in `writer/log.rs`) takes
//! entries in batches (group commit: one `write` and at most one `fsync`
//! per batch), signs checkpoints, encrypts frames when asked, rotates
//! segments by size, prunes old ones under the retention policy, and on a
//! write error cuts any partial frame, counts the error and retries the
//! same bytes later while new entries wait in (and, when full, drop from)
//! the queue.

mod log;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Sender, TrySendError};
use ed25519_dalek::SigningKey;

use self::log::Log;
use super::crypt::{self, EncryptionKey};
use super::keys;
use super::record::Entry;
use super::retention::Retention;
use super::{AuditConfig, AuditError};

/// When to `fsync` a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every batch, before the records count as durable.
    Always,
    /// At most once per interval.
    Interval(Duration),
}

/// How the writer runs.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// The directory of segment files (created if missing).
    pub dir: PathBuf,
    /// Signs checkpoints.
    pub key: SigningKey,
    /// A checkpoint after this many records.
    pub checkpoint_every: u64,
    /// A checkpoint at least this often while records arrive.
    pub checkpoint_interval: Duration,
    /// When to `fsync`.
    pub fsync: FsyncPolicy,
    /// A new segment once the current one reaches this many bytes.
    pub segment_size: u64,
    /// Entries the queue holds before `submit` drops.
    pub queue: usize,
    /// Encrypts every record at rest; plaintext when `None`.
    pub encryption: Option<EncryptionKey>,
    /// Which old segments are pruned.
    pub retention: Retention,
}

/// Counters the metrics endpoint reads.
#[derive(Debug, Default)]
pub struct AuditStats {
    records: AtomicU64,
    write_errors: AtomicU64,
    dropped: AtomicU64,
    durable: AtomicU64,
}

/// The writer's handle: submit entries, read counters, close.
#[derive(Debug)]
pub struct Writer {
    tx: Option<Sender<Entry>>,
    stats: Arc<AuditStats>,
    thread: Option<JoinHandle<()>>,
    /// Set at close, so a writer stuck retrying a failed disk gives up
    /// after its last bounded retries instead of holding shutdown forever.
    closing: Arc<std::sync::atomic::AtomicBool>,
}

// === impl AuditStats ===

impl AuditStats {
    /// Records written (`audit_records_total`).
    pub fn records_total(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    /// Failed writes or syncs (`audit_write_errors_total`).
    pub fn write_errors_total(&self) -> u64 {
        self.write_errors.load(Ordering::Relaxed)
    }

    /// Entries the writer dropped: the queue was full, or the log was
    /// closed while the disk still refused them (`audit_dropped_total`).
    pub fn dropped_total(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Records known to be on disk (`fsync`ed): every sequence below this.
    pub fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }
}

// === impl WriterOptions ===

impl WriterOptions {
    /// Entries the queue holds unless told otherwise: a few seconds of
    /// traffic at tens of thousands of requests a second.
    pub const DEFAULT_QUEUE: usize = 65_536;

    /// The defaults of an `audit:` section for a log in `dir` signed by
    /// `key`: plaintext, no retention.
    pub fn new(dir: impl Into<PathBuf>, key: SigningKey) -> WriterOptions {
        WriterOptions {
            dir: dir.into(),
            key,
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(10),
            fsync: FsyncPolicy::Interval(Duration::from_millis(100)),
            segment_size: 64 << 20,
            queue: WriterOptions::DEFAULT_QUEUE,
            encryption: None,
            retention: Retention::default(),
        }
    }

    /// The options an `audit:` section asks for, with its key files read.
    pub fn from_config(config: &AuditConfig) -> Result<WriterOptions, AuditError> {
        Ok(WriterOptions {
            dir: config.dir.clone(),
            key: keys::load_signing_key(&config.signing_key)?,
            checkpoint_every: config.checkpoint_every,
            checkpoint_interval: config.checkpoint_interval,
            fsync: config.fsync,
            segment_size: config.segment_size,
            queue: WriterOptions::DEFAULT_QUEUE,
            encryption: config
                .encryption_key
                .as_deref()
                .map(crypt::load_encryption_key)
                .transpose()?,
            retention: Retention {
                max_age: config.max_age,
                max_segments: config.max_segments,
            },
        })
    }
}

// === impl Writer ===

impl Writer {
    /// Opens the log in `options.dir` — cutting a torn tail and recording
    /// that it did — and starts the writer thread.
    pub fn open(options: WriterOptions) -> Result<Writer, AuditError> {
        let stats = Arc::new(AuditStats::default());
        let log = Log::open(options.clone(), stats.clone())?;
        let (tx, rx) = crossbeam_channel::bounded(options.queue.max(1));
        let closing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("sidewatch-audit".into())
            .spawn({
                let closing = closing.clone();
                move || log.run(rx, &closing)
            })
            .map_err(|e| AuditError::io(&options.dir, e))?;
        Ok(Writer {
            tx: Some(tx),
            stats,
            thread: Some(thread),
            closing,
        })
    }

    /// Queues `entry` without waiting; false (and counted) when the queue
    /// is full or the writer has stopped.
    pub fn submit(&self, entry: Entry) -> bool {
        let sent = match &self.tx {
            Some(tx) => match tx.try_send(entry) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
            },
            None => false,
        };
        if !sent {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
        sent
    }

    /// The counters.
    pub fn stats(&self) -> Arc<AuditStats> {
        self.stats.clone()
    }

    /// Writes what is queued, a closing checkpoint, syncs and stops.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.closing.store(true, Ordering::Release);
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            // A panicking writer thread has already lost its records; the
            // proxy must not follow it.
            let _ = thread.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.shutdown();
    }
}
