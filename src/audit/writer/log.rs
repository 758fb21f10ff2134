//! The writer thread: chain head, open segment, frames not yet written,
//! and the loop that batches, signs, seals, rotates, prunes and retries.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use ed25519_dalek::SigningKey;

use super::{AuditStats, FsyncPolicy, WriterOptions};
use crate::audit::AuditError;
use crate::audit::crypt::{NONCE_LEN, Sealer};
use crate::audit::keys::{self, KeyId};
use crate::audit::record::{
    Body, Checkpoint, Entry, GENESIS, Record, VERSION, format_time, sha256,
};
use crate::audit::recover::{self, sync_dir};
use crate::audit::retention::{self, Retention};
use crate::audit::segment::{self, Header};

/// Entries taken from the queue per group commit.
const BATCH: usize = 4096;

/// How often the retention policy is looked at, besides right after a
/// rotation.
const RETENTION_CHECK: Duration = Duration::from_secs(1);

/// How long to wait before looking again when a pruning was refused.
const RETENTION_BACKOFF: Duration = Duration::from_secs(60);

/// The thread's state: chain head, open segment, frames not yet written.
pub(super) struct Log {
    dir: PathBuf,
    key: SigningKey,
    key_id: String,
    every: u64,
    interval: Duration,
    fsync: FsyncPolicy,
    segment_size: u64,
    retention: Retention,
    /// Seals frames when encrypting.
    sealer: Option<Sealer>,
    /// The header of the segments this writer creates.
    header: Header,
    /// Its bytes: part of every envelope's associated data.
    header_bytes: Vec<u8>,
    stats: Arc<AuditStats>,
    next_seq: u64,
    head: [u8; 32],
    since_checkpoint: u64,
    last_checkpoint: Instant,
    last_sync: Instant,
    file: File,
    path: PathBuf,
    /// The first sequence of the current segment.
    first: u64,
    len: u64,
    /// The current segment has another header (written with another key
    /// or none): the next write starts a new one.
    foreign: bool,
    unsynced: bool,
    /// Frames not yet written, back to back: one `write` per batch.
    pending: Vec<u8>,
    /// The sequence and length of each frame in `pending`.
    frames: VecDeque<(u64, usize)>,
    /// When the retention policy is next looked at.
    next_retention: Instant,
    /// Segment files a pruning record vouches for, removed once every
    /// sequence below `unlink_after` is durable.
    unlinks: Vec<PathBuf>,
    unlink_after: u64,
    /// Failures since the last successful write, to log transitions only.
    failing: u64,
    /// Closing: the last records stay in the current segment, so that a
    /// closed log keeps no more segments than its policy allows.
    sealing: bool,
}

// === impl Log ===

impl Log {
    pub(super) fn open(options: WriterOptions, stats: Arc<AuditStats>) -> Result<Log, AuditError> {
        let dir = options.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| AuditError::io(&dir, e))?;
        let sealer = options.encryption.map(Sealer::new).transpose()?;
        let header = sealer
            .as_ref()
            .map_or(Header::Plain, |s| Header::Encrypted(s.key().id()));
        let tail = recover::open_tail(&dir, header, sealer.as_ref().map(Sealer::key))?;
        let first = tail
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(segment::parse_name)
            .unwrap_or(tail.next_seq);
        let now = Instant::now();
        let mut log = Log {
            key_id: KeyId::of(&options.key.verifying_key()).0,
            dir,
            key: options.key,
            every: options.checkpoint_every.max(1),
            interval: options.checkpoint_interval,
            fsync: options.fsync,
            segment_size: options.segment_size.max(1),
            retention: options.retention,
            sealer,
            header,
            header_bytes: header.bytes(),
            stats,
            next_seq: tail.next_seq,
            head: tail.head,
            since_checkpoint: 0,
            last_checkpoint: now,
            last_sync: now,
            file: tail.file,
            path: tail.path,
            first,
            len: tail.len,
            foreign: tail.foreign,
            unsynced: false,
            pending: Vec::new(),
            frames: VecDeque::new(),
            next_retention: now,
            unlinks: Vec::new(),
            unlink_after: 0,
            failing: 0,
            sealing: false,
        };
        log.stats.durable.store(log.next_seq, Ordering::Release);
        // A tail in another format, or full (a clean close may overshoot
        // it by its closing records), takes no more: the next segment
        // starts now, so the first retention check counts it and idle
        // restarts do not keep growing the old one.
        if log.foreign || log.full() {
            let next = log.next_seq;
            if let Err(e) = log.rotate(next) {
                log.failed("rotate", &e);
            }
        }
        if let Some(unclean) = tail.unclean {
            log.append(Body::UncleanStop(unclean));
        }
        if let Some(recovery) = tail.recovery {
            log.append(Body::Recovery(recovery));
        }
        log.flush(true);
        Ok(log)
    }

    pub(super) fn run(mut self, rx: Receiver<Entry>, closing: &AtomicBool) {
        let tick = match self.fsync {
            FsyncPolicy::Always => self.interval,
            FsyncPolicy::Interval(i) => i.min(self.interval),
        }
        .clamp(Duration::from_millis(1), Duration::from_millis(100));
        loop {
            // While earlier bytes could not be written, new entries wait in
            // the queue: the chain must not skip them.
            let disconnected = if self.frames.is_empty() {
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
            } else if closing.load(Ordering::Acquire) {
                // Closing while the disk still refuses: a few last tries,
                // then what cannot be written is counted, not waited for.
                if !self.last_tries() {
                    let lost = self.frames.len() + rx.len();
                    self.stats.dropped.fetch_add(lost as u64, Ordering::Relaxed);
                    tracing::error!(
                        records = lost,
                        "Audit log closed while writes still fail; these records are lost."
                    );
                    return;
                }
                false
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
            if Instant::now() >= self.next_retention {
                self.retain();
            }
            if disconnected {
                break;
            }
        }
        // A cleanly closed log meets its retention policy: the closing
        // records stay in the current segment, even a full one, so a
        // pruning now counts every segment the closed log will have.
        self.sealing = true;
        self.retain();
        self.checkpoint(true);
        if !self.last_tries() {
            self.stats
                .dropped
                .fetch_add(self.frames.len() as u64, Ordering::Relaxed);
        }
    }

    /// Bounded retries at close (the process is going away); whether
    /// everything got written.
    fn last_tries(&mut self) -> bool {
        for _ in 0..10 {
            if self.flush(true) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
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
        self.push(&record);
        self.since_checkpoint = 0;
        self.last_checkpoint = Instant::now();
    }

    fn append(&mut self, body: Body) {
        let record = self.record(body);
        self.push(&record);
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

    /// Appends the record's frame to `pending`, serialized (and sealed) in
    /// place, and moves the chain head to it.
    fn push(&mut self, record: &Record) {
        let start = self.pending.len();
        self.pending.extend_from_slice(&[0; 4]);
        let body = self.pending.len();
        if self.sealer.is_some() {
            self.pending.extend_from_slice(&[0; NONCE_LEN]);
        }
        record.write_canonical(&mut self.pending);
        if let Some(sealer) = &mut self.sealer {
            sealer.seal_in_place(&self.header_bytes, record.seq, &mut self.pending, body);
        }
        let len = (self.pending.len() - body) as u32;
        self.pending[start..body].copy_from_slice(&len.to_le_bytes());
        let hash = sha256(&self.pending[body..]);
        self.pending.extend_from_slice(&hash[..4]);
        self.frames
            .push_back((record.seq, self.pending.len() - start));
        self.head = hash;
        self.next_seq += 1;
    }

    /// Writes pending frames (rotating as needed) and syncs if asked (or
    /// if a pruning waits on it); true when nothing is left pending.
    fn flush(&mut self, sync: bool) -> bool {
        while !self.frames.is_empty() {
            if let Err(e) = self.write_some() {
                self.failed("write", &e);
                // Cut a partial frame so the retry appends whole frames.
                let _ = self.file.set_len(self.len);
                return false;
            }
        }
        if (sync || !self.unlinks.is_empty()) && self.unsynced {
            if let Err(e) = self.file.sync_data() {
                self.failed("fsync", &e);
                return false;
            }
            self.unsynced = false;
            self.last_sync = Instant::now();
            self.stats.durable.store(self.next_seq, Ordering::Release);
        }
        if self.failing > 0 {
            tracing::info!(failures = self.failing, "Audit writes resumed.");
            self.failing = 0;
        }
        if !self.unlinks.is_empty() && self.stats.durable() >= self.unlink_after {
            for path in std::mem::take(&mut self.unlinks) {
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "Cannot remove a pruned audit segment.");
                    }
                }
            }
            sync_dir(&self.dir);
        }
        true
    }

    fn failed(&mut self, what: &str, error: &std::io::Error) {
        self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
        if self.failing == 0 {
            // The operator must free space or fix the disk; entries wait
            // in the queue and then drop, counted.
            tracing::error!(path = %self.path.display(), %error, "Audit {what} failed; retrying.");
        }
        self.failing += 1;
    }

    /// One group write into the current segment, rotating first when it
    /// is full or in another format.
    fn write_some(&mut self) -> std::io::Result<()> {
        if let Some(&(seq, _)) = self.frames.front()
            && (self.foreign || self.full() && !self.sealing)
        {
            self.rotate(seq)?;
        }
        let mut bytes = 0;
        let mut n = 0;
        for &(_, len) in &self.frames {
            if n > 0 && self.len + (bytes + len) as u64 > self.segment_size {
                break;
            }
            bytes += len;
            n += 1;
        }
        self.file.seek(SeekFrom::Start(self.len))?;
        self.file.write_all(&self.pending[..bytes])?;
        self.len += bytes as u64;
        self.unsynced = true;
        self.pending.drain(..bytes);
        self.frames.drain(..n);
        self.stats.records.fetch_add(n as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Whether the current segment holds records and no room for more.
    fn full(&self) -> bool {
        self.len >= self.segment_size && self.len > self.header.size() as u64
    }

    /// Starts a new segment whose first record will be `seq`.
    fn rotate(&mut self, seq: u64) -> std::io::Result<()> {
        self.file.sync_data()?;
        let (path, file, len) =
            recover::create(&self.dir, seq, self.header).map_err(std::io::Error::other)?;
        self.path = path;
        self.file = file;
        self.len = len;
        self.first = seq;
        self.foreign = false;
        self.next_retention = Instant::now();
        Ok(())
    }

    /// Prunes the oldest segments if the retention policy asks: a pruning
    /// record and a signed checkpoint first, the files once both are
    /// durable.
    fn retain(&mut self) {
        if !self.retention.enabled() || !self.unlinks.is_empty() || !self.frames.is_empty() {
            return;
        }
        self.next_retention = Instant::now() + RETENTION_CHECK;
        match retention::plan(&self.dir, self.first, &self.retention, SystemTime::now()) {
            Ok(None) => {}
            Ok(Some(plan)) => {
                tracing::info!(
                    segments = plan.paths.len(),
                    first = plan.prune.first_seq,
                    last = plan.prune.last_seq,
                    reason = %plan.prune.reason,
                    "Pruning audit segments."
                );
                self.append(Body::Prune(plan.prune));
                self.checkpoint(false);
                self.unlinks = plan.paths;
                self.unlink_after = self.next_seq;
                self.flush(true);
            }
            Err(reason) => {
                tracing::warn!(%reason, "Audit retention cannot prune.");
                self.next_retention = Instant::now() + RETENTION_BACKOFF;
            }
        }
    }
}
