//! The writer: a dedicated thread behind a bounded queue.
//!
//! The proxy side only ever calls [`Writer::submit`], a `try_send` that
//! counts what it drops. The thread takes entries in batches (group
//! commit: one `write` and at most one `fsync` per batch), signs
//! checkpoints, rotates segments by size, and on a write error cuts any
//! partial frame, counts the error and retries the same bytes later while
//! new entries wait in (and, when full, drop from) the queue.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use ed25519_dalek::SigningKey;

use super::AuditError;
use super::keys::{self, KeyId};
use super::record::{
    Body, Checkpoint, Entry, GENESIS, Record, Recovery, VERSION, format_time, sha256,
};
use super::segment::{self, MAGIC};

/// Entries taken from the queue per group commit.
const BATCH: usize = 4096;

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
}

/// The thread's state: chain head, open segment, frames not yet written.
struct Log {
    dir: PathBuf,
    key: SigningKey,
    key_id: String,
    every: u64,
    interval: Duration,
    fsync: FsyncPolicy,
    segment_size: u64,
    stats: Arc<AuditStats>,
    next_seq: u64,
    head: [u8; 32],
    since_checkpoint: u64,
    last_checkpoint: Instant,
    last_sync: Instant,
    file: File,
    path: PathBuf,
    len: u64,
    unsynced: bool,
    pending: VecDeque<(u64, Vec<u8>)>,
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

    /// Entries dropped because the queue was full (`audit_dropped_total`).
    pub fn dropped_total(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Records known to be on disk (`fsync`ed): every sequence below this.
    pub fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
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
        let thread = std::thread::Builder::new()
            .name("sidewatch-audit".into())
            .spawn(move || log.run(rx))
            .map_err(|e| AuditError::io(&options.dir, e))?;
        Ok(Writer {
            tx: Some(tx),
            stats,
            thread: Some(thread),
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
        self.tx = None;
        if let Some(thread) = self.thread.take() {
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

// === impl Log ===

impl Log {
    fn open(options: WriterOptions, stats: Arc<AuditStats>) -> Result<Log, AuditError> {
        let dir = options.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| AuditError::io(&dir, e))?;
        let segments = segment::list(&dir)?;
        let mut next_seq = 0;
        let mut head = [0u8; 32];
        let mut recovery = None;
        let (path, file, len) = match segments.last() {
            None => create(&dir, 0)?,
            Some((first, path)) => {
                let bytes = std::fs::read(path).map_err(|e| AuditError::io(path, e))?;
                let scan = segment::scan(&bytes);
                // A frame that checks but does not parse is cut too.
                let mut good = 0;
                let mut end = MAGIC.len() as u64;
                for frame in &scan.frames {
                    let Ok(record) = Record::parse(&frame.body) else {
                        break;
                    };
                    next_seq = record.seq + 1;
                    head = frame.hash;
                    end = frame.offset + (segment::FRAME_OVERHEAD + frame.body.len()) as u64;
                    good += 1;
                }
                if good == 0 {
                    // Nothing readable here: the chain head is the previous
                    // segment's last record.
                    if let Some((_, prev)) =
                        segments.len().checked_sub(2).and_then(|i| segments.get(i))
                    {
                        let bytes = std::fs::read(prev).map_err(|e| AuditError::io(prev, e))?;
                        if let Some(frame) = segment::scan(&bytes).frames.last() {
                            head = frame.hash;
                            next_seq = *first;
                        }
                    }
                }
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
                    .map_err(|e| AuditError::io(path, e))?;
                let actual = bytes.len() as u64;
                if actual != end || good == 0 {
                    let cut_at = if good == 0 { 0 } else { end };
                    file.set_len(cut_at).map_err(|e| AuditError::io(path, e))?;
                    if cut_at == 0 {
                        (&file)
                            .write_all(MAGIC)
                            .map_err(|e| AuditError::io(path, e))?;
                    }
                    file.sync_all().map_err(|e| AuditError::io(path, e))?;
                    if actual != end {
                        recovery = Some(Recovery {
                            segment: path
                                .file_name()
                                .map(|n| n.to_string_lossy().into_owned())
                                .unwrap_or_default(),
                            cut_at: end,
                            bytes_cut: actual.saturating_sub(end),
                        });
                    }
                }
                (path.clone(), file, end.max(MAGIC.len() as u64))
            }
        };
        let now = Instant::now();
        let mut log = Log {
            key_id: KeyId::of(&options.key.verifying_key()).0,
            dir,
            key: options.key,
            every: options.checkpoint_every.max(1),
            interval: options.checkpoint_interval,
            fsync: options.fsync,
            segment_size: options.segment_size.max(1),
            stats,
            next_seq,
            head,
            since_checkpoint: 0,
            last_checkpoint: now,
            last_sync: now,
            file,
            path,
            len,
            unsynced: false,
            pending: VecDeque::new(),
        };
        log.stats.durable.store(next_seq, Ordering::Release);
        if let Some(recovery) = recovery {
            log.append(Body::Recovery(recovery));
            log.flush(true);
        }
        Ok(log)
    }

    fn run(mut self, rx: Receiver<Entry>) {
        let tick = match self.fsync {
            FsyncPolicy::Always => self.interval,
            FsyncPolicy::Interval(i) => i.min(self.interval),
        }
        .clamp(Duration::from_millis(1), Duration::from_millis(100));
        loop {
            // While earlier bytes could not be written, new entries wait in
            // the queue: the chain must not skip them.
            let disconnected = if self.pending.is_empty() {
                match rx.recv_timeout(tick) {
                    Ok(entry) => {
                        self.entry(entry);
                        for entry in rx.try_iter().take(BATCH - 1) {
                            self.entry(entry);
                        }
                        false
                    }
                    Err(RecvTimeoutError::Timeout) => false,
                    Err(RecvTimeoutError::Disconnected) => true,
                }
            } else {
                std::thread::park_timeout(tick);
                false
            };
            if self.since_checkpoint > 0 && self.last_checkpoint.elapsed() >= self.interval {
                self.checkpoint(false);
            }
            let sync = match self.fsync {
                FsyncPolicy::Always => true,
                FsyncPolicy::Interval(i) => self.last_sync.elapsed() >= i,
            };
            self.flush(sync);
            if disconnected {
                break;
            }
        }
        self.checkpoint(true);
        // Bounded retries at close: the process is going away.
        for _ in 0..10 {
            if self.flush(true) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn entry(&mut self, mut entry: Entry) {
        entry.sanitize();
        self.append(Body::Entry(Box::new(entry)));
        if self.since_checkpoint >= self.every {
            self.checkpoint(false);
        }
    }

    fn checkpoint(&mut self, closing: bool) {
        let mut record = self.record(Body::Checkpoint(Checkpoint {
            key_id: self.key_id.clone(),
            closing,
            sig: String::new(),
        }));
        keys::sign(&self.key, &mut record);
        self.push(record);
        self.since_checkpoint = 0;
        self.last_checkpoint = Instant::now();
    }

    fn append(&mut self, body: Body) {
        let record = self.record(body);
        self.push(record);
        self.since_checkpoint += 1;
    }

    fn record(&self, body: Body) -> Record {
        Record {
            v: VERSION,
            seq: self.next_seq,
            prev: if self.next_seq == 0 {
                GENESIS.to_string()
            } else {
                hex::encode(self.head)
            },
            time: format_time(SystemTime::now()),
            body,
        }
    }

    fn push(&mut self, record: Record) {
        let body = record.canonical();
        let hash = sha256(&body);
        let mut frame = Vec::with_capacity(body.len() + segment::FRAME_OVERHEAD);
        segment::encode(&body, &hash, &mut frame);
        self.pending.push_back((record.seq, frame));
        self.head = hash;
        self.next_seq += 1;
    }

    /// Writes pending frames (rotating as needed) and syncs if asked;
    /// true when nothing is left pending.
    fn flush(&mut self, sync: bool) -> bool {
        while !self.pending.is_empty() {
            if let Err(e) = self.write_some() {
                self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(path = %self.path.display(), error = %e, "audit write failed; will retry");
                // Cut a partial frame so the retry appends whole frames.
                let _ = self.file.set_len(self.len);
                return false;
            }
        }
        if sync && self.unsynced {
            if let Err(e) = self.file.sync_data() {
                self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(path = %self.path.display(), error = %e, "audit fsync failed; will retry");
                return false;
            }
            self.unsynced = false;
            self.last_sync = Instant::now();
            self.stats.durable.store(self.next_seq, Ordering::Release);
        }
        true
    }

    /// One group write into the current segment, rotating first when full.
    fn write_some(&mut self) -> std::io::Result<()> {
        if let Some((seq, _)) = self.pending.front()
            && self.len >= self.segment_size
            && self.len > MAGIC.len() as u64
        {
            let seq = *seq;
            self.file.sync_data()?;
            let (path, file, len) = create(&self.dir, seq).map_err(std::io::Error::other)?;
            self.path = path;
            self.file = file;
            self.len = len;
        }
        let mut buf = Vec::new();
        let mut n = 0;
        for (_, frame) in &self.pending {
            if n > 0 && self.len + (buf.len() + frame.len()) as u64 > self.segment_size {
                break;
            }
            buf.extend_from_slice(frame);
            n += 1;
        }
        use std::io::{Seek, SeekFrom};
        self.file.seek(SeekFrom::Start(self.len))?;
        self.file.write_all(&buf)?;
        self.len += buf.len() as u64;
        self.unsynced = true;
        self.pending.drain(..n);
        self.stats.records.fetch_add(n as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// Creates the segment whose first record is `seq`, header written and
/// synced along with its directory entry.
fn create(dir: &Path, seq: u64) -> Result<(PathBuf, File, u64), AuditError> {
    let path = dir.join(segment::file_name(seq));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| AuditError::io(&path, e))?;
    file.write_all(MAGIC)
        .and_then(|()| file.sync_all())
        .map_err(|e| AuditError::io(&path, e))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok((path, file, MAGIC.len() as u64))
}
