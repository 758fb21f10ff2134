//! `sidewatch audit verify`: the chain, the frames and the signatures.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use ed25519_dalek::VerifyingKey;

use super::crypt::{EncryptionKey, find_key};
use super::keys::{self, KeyId};
use super::record::{Body, GENESIS, Prune, Record, VERSION};
use super::segment::{self, Header};

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
    /// Runs that ended without closing the log (killed, crashed), as the
    /// next run found on start-up.
    pub unclean_stops: u64,
    /// Pruning records (retention).
    pub prunings: u64,
    /// The first sequence present: records before it were lawfully pruned
    /// (0 when none were).
    pub pruned_before: u64,
    /// Time of the first record.
    pub first_time: String,
    /// Time of the last record.
    pub last_time: String,
    /// Hex SHA-256 of the last record: anchor it elsewhere to detect a
    /// later rollback to an earlier clean close.
    pub head: String,
    /// Records after the last checkpoint ([`verify_live`] only; a closed
    /// log has none): hash-chained, but no signature vouches for them yet.
    pub unsigned: u64,
    /// Whether the last segment ends in a partial frame ([`verify_live`]
    /// only): the writer was writing it, or crashed doing so.
    pub torn_tail: bool,
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
            "intact: {} records ({} entries, {} checkpoints, {} recoveries, {} unclean stops, {} prunings) \
             in {} segments, {} .. {}, head {}",
            self.records,
            self.entries,
            self.checkpoints,
            self.recoveries,
            self.unclean_stops,
            self.prunings,
            self.segments,
            self.first_time,
            self.last_time,
            self.head
        )?;
        if self.pruned_before > 0 {
            write!(
                f,
                "; sequences 0..={} lawfully pruned by retention",
                self.pruned_before - 1
            )?;
        }
        if self.unsigned > 0 || self.torn_tail {
            write!(
                f,
                "; live log: the last {} records are hash-chained but not yet signed",
                self.unsigned
            )?;
            if self.torn_tail {
                f.write_str(", and the last segment ends in a partial frame")?;
            }
        }
        Ok(())
    }
}

/// Verifies every segment in `dir` against `key`, opening encrypted ones
/// with the key among `keys` whose id their header names. The log must end
/// with the closing checkpoint of a clean shutdown.
pub fn verify(
    dir: &Path,
    key: &VerifyingKey,
    keys: &[EncryptionKey],
) -> Result<Summary, VerifyError> {
    check(dir, key, keys, false)
}

/// Verifies a log that may still be written to (or whose writer crashed):
/// everything [`verify`] checks, except that records after the last
/// checkpoint are accepted as long as their chain holds, and a partial
/// frame at the end of the last segment is accepted. The summary says how
/// many records no signature vouches for yet; deleting the end of a live
/// log cannot be told from the writer not having got there.
pub fn verify_live(
    dir: &Path,
    key: &VerifyingKey,
    keys: &[EncryptionKey],
) -> Result<Summary, VerifyError> {
    check(dir, key, keys, true)
}

fn check(
    dir: &Path,
    key: &VerifyingKey,
    keys: &[EncryptionKey],
    live: bool,
) -> Result<Summary, VerifyError> {
    let fail = |segment: &str, seq: Option<u64>, reason: String| VerifyError {
        segment: segment.to_string(),
        seq,
        reason,
    };
    let dir_name = dir.display().to_string();
    let segments = segment::list(dir).map_err(|e| fail(&dir_name, None, e.to_string()))?;
    let Some((start, first_path)) = segments.first() else {
        return Err(fail(&dir_name, None, "no audit segments".into()));
    };
    let start = *start;
    let key_id = KeyId::of(key).0;
    let mut summary = Summary {
        records: 0,
        entries: 0,
        segments: segments.len(),
        checkpoints: 0,
        recoveries: 0,
        unclean_stops: 0,
        prunings: 0,
        pruned_before: start,
        first_time: String::new(),
        last_time: String::new(),
        head: GENESIS.to_string(),
        unsigned: 0,
        torn_tail: false,
    };
    // A log whose oldest segments were pruned starts mid-chain: its first
    // `prev` is taken on trust until a pruning record (signed, like every
    // record, by a later checkpoint) vouches for it.
    let mut anchor: Option<String> = None;
    let mut anchored = start == 0;
    // Where the pruning record that anchors the start is: a live log's
    // unsigned tail cannot vouch for anything.
    let mut anchored_at: Option<u64> = None;
    // Hash of each segment's last record, for pruning records whose files
    // are still here (the writer stopped before removing them).
    let mut ends: HashMap<u64, String> = HashMap::new();
    let mut next = start;
    let mut last_checkpoint: Option<u64> = None;
    let mut closed = false;
    for (first, path) in &segments {
        let name = file_name(path);
        if *first != next {
            return Err(fail(
                &name,
                Some(next),
                format!(
                    "segment starts at sequence {first}, expected {next} (segment removed, inserted or renamed)"
                ),
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| fail(&name, Some(next), e.to_string()))?;
        let scan = segment::scan(&bytes);
        let last_segment = segments.last().is_some_and(|(f, _)| f == first);
        // A live writer may have just opened its next segment.
        let just_opened = live && last_segment;
        if scan.frames.is_empty() && scan.torn.is_none() && !just_opened {
            return Err(fail(&name, Some(next), "empty segment".into()));
        }
        let opener = match scan.header {
            Some(Header::Encrypted(id)) => Some((
                find_key(keys, &id).map_err(|reason| fail(&name, Some(next), reason))?,
                Header::Encrypted(id).bytes(),
            )),
            _ => None,
        };
        for frame in &scan.frames {
            let seq = next;
            let plain = match &opener {
                Some((k, header)) => Cow::Owned(k.open(header, seq, &frame.body).map_err(|_| {
                    fail(
                        &name,
                        Some(seq),
                        "decryption failed (authentication tag mismatch): record altered, moved or replaced".into(),
                    )
                })?),
                None => Cow::Borrowed(&frame.body[..]),
            };
            let record = Record::parse(&plain)
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
            if summary.records == 0 && start > 0 {
                summary.head = record.prev.clone();
                anchor = Some(record.prev.clone());
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
                Body::UncleanStop(u) => {
                    // Written first thing at start-up, right after the
                    // record it names.
                    if u.last_seq + 1 != seq {
                        return Err(fail(
                            &name,
                            Some(seq),
                            format!(
                                "unclean_stop names sequence {} as the last of the previous run, but follows {}",
                                u.last_seq,
                                seq.saturating_sub(1)
                            ),
                        ));
                    }
                    summary.unclean_stops += 1;
                }
                Body::Prune(p) => {
                    check_prune(p, seq, start, anchor.as_deref(), &ends)
                        .map_err(|reason| fail(&name, Some(seq), reason))?;
                    if p.last_seq + 1 == start && !anchored {
                        anchored = true;
                        anchored_at = Some(seq);
                    }
                    summary.prunings += 1;
                }
                Body::Checkpoint(c) => {
                    if c.key_id != key_id {
                        return Err(fail(
                            &name,
                            Some(seq),
                            format!("checkpoint signed by key {}, expected {key_id}", c.key_id),
                        ));
                    }
                    if !keys::check(key, &record) {
                        let since = last_checkpoint.map_or(start, |s| s + 1);
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
            next += 1;
        }
        // Only a frame cut short by the end of the file is a write in
        // progress; a frame that is all there but does not check is damage.
        let in_progress = scan
            .torn
            .is_some_and(|(_, reason)| reason.starts_with("truncated"))
            || bytes.is_empty();
        if live && last_segment && in_progress {
            summary.torn_tail = true;
        } else if let Some((offset, reason)) = scan.torn {
            return Err(fail(
                &name,
                Some(next),
                format!("{reason} at byte {offset} (torn or truncated)"),
            ));
        }
        if let Some(last) = next.checked_sub(1) {
            ends.insert(last, summary.head.clone());
        }
    }
    let last_name = segments
        .last()
        .map(|(_, p)| file_name(p))
        .unwrap_or_default();
    if live {
        // Without a single checkpoint the key vouches for nothing: a log
        // made up from scratch would pass. A fresh writer signs within
        // `audit.checkpoint.interval`; verify again after it.
        let Some(signed) = last_checkpoint else {
            return Err(fail(
                &last_name,
                Some(next),
                "no checkpoint yet: nothing in this log is signed (a new log is signed within audit.checkpoint.interval)".into(),
            ));
        };
        summary.unsigned = next - (signed + 1);
        // A pruning record among the unsigned records vouches for nothing.
        if anchored_at.is_some_and(|at| at > signed) {
            anchored = false;
        }
    }
    if !closed && !live {
        return Err(fail(
            &last_name,
            Some(next),
            format!(
                "log does not end with a closing checkpoint (last checkpoint at {}): truncated, or the writer is still running or crashed",
                last_checkpoint.map_or("none".to_string(), |s| s.to_string())
            ),
        ));
    }
    if !anchored {
        return Err(fail(
            &file_name(first_path),
            Some(start),
            format!(
                "log starts at sequence {start} but no pruning record covers the sequences before it: segments deleted"
            ),
        ));
    }
    Ok(summary)
}

/// Checks a pruning record at `seq` against the log, which starts at
/// `start` with `anchor` as its first `prev`.
fn check_prune(
    p: &Prune,
    seq: u64,
    start: u64,
    anchor: Option<&str>,
    ends: &HashMap<u64, String>,
) -> Result<(), String> {
    if p.first_seq > p.last_seq || p.last_seq >= seq || p.segments.is_empty() {
        return Err(format!(
            "malformed pruning record (sequences {}..={})",
            p.first_seq, p.last_seq
        ));
    }
    if p.last_seq + 1 == start {
        if anchor != Some(p.head.as_str()) {
            return Err(format!(
                "pruning record's head {} is not the prev of the first kept record {start}",
                p.head
            ));
        }
    } else if p.last_seq >= start && ends.get(&p.last_seq) != Some(&p.head) {
        // The pruned files are still here; they must be what it names.
        return Err(format!(
            "pruning record names sequence {} with hash {}, which the log does not end a segment with",
            p.last_seq, p.head
        ));
    }
    Ok(())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
