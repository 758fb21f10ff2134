//! Retention: which of the oldest segments to prune, and the pruning
//! record that lets `verify` tell their lawful removal from deletion.
//!
//! Only whole segments go, oldest first, never the one being written. The
//! writer appends the [`Prune`] record and a signed checkpoint, and removes
//! the files only once both are durable, so a crash in between leaves the
//! files (which still verify) rather than a gap no record explains.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::record::Prune;
use super::segment;

/// How long segments are kept; nothing is pruned when both are `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Prune segments last written longer ago than this.
    pub max_age: Option<Duration>,
    /// Keep at most this many segments, the current one included.
    pub max_segments: Option<u64>,
}

/// A pruning to record, then carry out.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The record to append.
    pub prune: Prune,
    /// The files to remove once it is durable.
    pub paths: Vec<PathBuf>,
}

// === impl Retention ===

impl Retention {
    /// Whether any limit is set.
    pub fn enabled(&self) -> bool {
        self.max_age.is_some() || self.max_segments.is_some()
    }
}

/// What to prune from `dir`, whose segment being written starts at
/// `current` (it and any later segment are kept). `Err` says why nothing
/// can be pruned although the policy asks for it.
pub(crate) fn plan(
    dir: &Path,
    current: u64,
    retention: &Retention,
    now: SystemTime,
) -> Result<Option<Plan>, String> {
    let segments = segment::list(dir).map_err(|e| e.to_string())?;
    let older: Vec<(u64, PathBuf)> = segments.into_iter().filter(|s| s.0 < current).collect();
    let total = older.len() as u64 + 1;
    let excess = retention
        .max_segments
        .map_or(0, |m| total.saturating_sub(m)) as usize;
    let mut count = 0;
    let mut reasons = Vec::new();
    for (i, (_, path)) in older.iter().enumerate() {
        if i < excess {
            count = i + 1;
            if i == 0 {
                reasons.push("max_segments");
            }
            continue;
        }
        let old = retention.max_age.is_some_and(|age| {
            std::fs::metadata(path)
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).is_ok_and(|d| d > age))
        });
        if !old {
            break;
        }
        count = i + 1;
        if !reasons.contains(&"max_age") {
            reasons.push("max_age");
        }
    }
    if count == 0 {
        return Ok(None);
    }
    let pruned = &older[..count];
    let kept_from = older.get(count).map_or(current, |s| s.0);
    let (last_first, last_path) = &pruned[count - 1];
    // The last pruned segment must be whole and end right before the
    // first kept one: its last hash is what the pruning record vouches for.
    let bytes = std::fs::read(last_path).map_err(|e| format!("{}: {e}", last_path.display()))?;
    let scan = segment::scan(&bytes);
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let head = match (scan.torn, scan.frames.last()) {
        (None, Some(frame)) if last_first + scan.frames.len() as u64 == kept_from => frame.hash,
        _ => {
            return Err(format!(
                "{} is damaged or does not end before sequence {kept_from}; not pruning it",
                name(last_path)
            ));
        }
    };
    Ok(Some(Plan {
        prune: Prune {
            reason: reasons.join(","),
            segments: pruned.iter().map(|(_, p)| name(p)).collect(),
            first_seq: pruned[0].0,
            last_seq: kept_from - 1,
            head: hex::encode(head),
        },
        paths: pruned.iter().map(|(_, p)| p.clone()).collect(),
    }))
}
