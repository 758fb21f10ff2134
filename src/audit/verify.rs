//! `sidewatch audit verify`: the chain, the frames and the signatures.

use std::path::Path;

use ed25519_dalek::VerifyingKey;

use super::keys::{self, KeyId};
use super::record::{Body, GENESIS, Record, VERSION};
use super::segment;

/// What an intact log holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Records of every kind.
    pub records: u64,
    /// Entry records (proxied exchanges).
    pub entries: u64,
    /// Segment files.
    pub segments: usize,
    /// Signed checkpoints.
    pub checkpoints: u64,
    /// Torn tails recovered on start-up.
    pub recoveries: u64,
    /// Time of the first record.
    pub first_time: String,
    /// Time of the last record.
    pub last_time: String,
    /// Hex SHA-256 of the last record: anchor it elsewhere to detect a
    /// later rollback to an earlier clean close.
    pub head: String,
}

/// The first problem found, naming the segment and sequence.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("segment {segment}, sequence {}: {reason}", seq.map_or("-".to_string(), |s| s.to_string()))]
pub struct VerifyError {
    /// The segment file name (or the directory when it has none).
    pub segment: String,
    /// The record's sequence (the expected one when the record is
    /// unreadable).
    pub seq: Option<u64>,
    /// What is wrong.
    pub reason: String,
}

// === impl Summary ===

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "intact: {} records ({} entries, {} checkpoints, {} recoveries) in {} segments, \
             {} .. {}, head {}",
            self.records,
            self.entries,
            self.checkpoints,
            self.recoveries,
            self.segments,
            self.first_time,
            self.last_time,
            self.head
        )
    }
}

/// Verifies every segment in `dir` against `key`.
pub fn verify(dir: &Path, key: &VerifyingKey) -> Result<Summary, VerifyError> {
    let fail = |segment: &str, seq: Option<u64>, reason: String| VerifyError {
        segment: segment.to_string(),
        seq,
        reason,
    };
    let dir_name = dir.display().to_string();
    let segments = segment::list(dir).map_err(|e| fail(&dir_name, None, e.to_string()))?;
    if segments.is_empty() {
        return Err(fail(&dir_name, None, "no audit segments".into()));
    }
    let key_id = KeyId::of(key).0;
    let mut summary = Summary {
        records: 0,
        entries: 0,
        segments: segments.len(),
        checkpoints: 0,
        recoveries: 0,
        first_time: String::new(),
        last_time: String::new(),
        head: GENESIS.to_string(),
    };
    let mut last_checkpoint: Option<u64> = None;
    let mut closed = false;
    for (first, path) in &segments {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let seq = summary.records;
        if *first != seq {
            return Err(fail(
                &name,
                Some(seq),
                format!(
                    "segment starts at sequence {first}, expected {seq} (segment removed, inserted or renamed)"
                ),
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| fail(&name, Some(seq), e.to_string()))?;
        let scan = segment::scan(&bytes);
        if scan.frames.is_empty() && scan.torn.is_none() {
            return Err(fail(&name, Some(seq), "empty segment".into()));
        }
        for frame in &scan.frames {
            let seq = summary.records;
            let record = Record::parse(&frame.body)
                .map_err(|e| fail(&name, Some(seq), format!("unreadable record: {e}")))?;
            if record.v != VERSION {
                return Err(fail(
                    &name,
                    Some(seq),
                    format!("unknown version {}", record.v),
                ));
            }
            if record.seq != seq {
                return Err(fail(
                    &name,
                    Some(seq),
                    format!(
                        "holds sequence {} (record deleted, inserted or reordered)",
                        record.seq
                    ),
                ));
            }
            if record.prev != summary.head {
                return Err(fail(
                    &name,
                    Some(seq),
                    "hash chain broken: prev does not match the previous record".into(),
                ));
            }
            closed = false;
            match &record.body {
                Body::Entry(_) => summary.entries += 1,
                Body::Recovery(_) => summary.recoveries += 1,
                Body::Checkpoint(c) => {
                    if c.key_id != key_id {
                        return Err(fail(
                            &name,
                            Some(seq),
                            format!("checkpoint signed by key {}, expected {key_id}", c.key_id),
                        ));
                    }
                    if !keys::check(key, &record) {
                        let since = last_checkpoint.map_or(0, |s| s + 1);
                        return Err(fail(
                            &name,
                            Some(seq),
                            format!(
                                "bad checkpoint signature: a record in sequences {since}..={seq} was altered"
                            ),
                        ));
                    }
                    summary.checkpoints += 1;
                    last_checkpoint = Some(seq);
                    closed = c.closing;
                }
            }
            if summary.records == 0 {
                summary.first_time = record.time.clone();
            }
            summary.last_time = record.time;
            summary.head = hex::encode(frame.hash);
            summary.records += 1;
        }
        if let Some((offset, reason)) = scan.torn {
            return Err(fail(
                &name,
                Some(summary.records),
                format!("{reason} at byte {offset} (torn or truncated)"),
            ));
        }
    }
    if !closed {
        let last = segments
            .last()
            .map(|(_, p)| p.display().to_string())
            .unwrap_or_default();
        let name = Path::new(&last)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Err(fail(
            &name,
            Some(summary.records),
            format!(
                "log does not end with a closing checkpoint (last checkpoint at {}): truncated, or the writer is still running or crashed",
                last_checkpoint.map_or("none".to_string(), |s| s.to_string())
            ),
        ));
    }
    Ok(summary)
}
