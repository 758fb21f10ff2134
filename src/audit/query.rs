//! `sidewatch audit query`: matching records as JSONL.

use std::io::Write;
use std::path::Path;

use super::AuditError;
use super::record::{Body, Record};
use super::segment;

/// Which records to print; every set field must match.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Records at or after this RFC 3339 time.
    pub since: Option<std::time::SystemTime>,
    /// Records before this RFC 3339 time.
    pub until: Option<std::time::SystemTime>,
    /// Entries with this request id.
    pub request_id: Option<String>,
    /// Entries from this client.
    pub client: Option<String>,
    /// Entries for this model.
    pub model: Option<String>,
    /// Only flagged entries.
    pub flagged: bool,
}

// === impl Filter ===

impl Filter {
    /// Whether `record` matches. Checkpoints and recoveries match only a
    /// filter on time alone.
    pub fn matches(&self, record: &Record) -> bool {
        if self.since.is_some() || self.until.is_some() {
            let Ok(time) = humantime::parse_rfc3339_weak(&record.time) else {
                return false;
            };
            if self.since.is_some_and(|s| time < s) || self.until.is_some_and(|u| time >= u) {
                return false;
            }
        }
        let entry_filter = self.request_id.is_some()
            || self.client.is_some()
            || self.model.is_some()
            || self.flagged;
        let Body::Entry(e) = &record.body else {
            return !entry_filter;
        };
        self.request_id.as_ref().is_none_or(|r| *r == e.request_id)
            && self.client.as_ref().is_none_or(|c| *c == e.client)
            && self
                .model
                .as_ref()
                .is_none_or(|m| e.model.as_ref() == Some(m))
            && (!self.flagged || e.verdicts.flagged)
    }
}

/// Writes the records in `dir` that match `filter` to `out`, one JSON
/// object per line; returns how many. Unreadable frames end a segment's
/// scan (use `audit verify` to find out why).
pub fn query(dir: &Path, filter: &Filter, out: &mut dyn Write) -> Result<u64, AuditError> {
    let mut n = 0;
    for (_, path) in segment::list(dir)? {
        let bytes = std::fs::read(&path).map_err(|e| AuditError::io(&path, e))?;
        for frame in segment::scan(&bytes).frames {
            let Ok(record) = Record::parse(&frame.body) else {
                continue;
            };
            if filter.matches(&record) {
                out.write_all(&frame.body)
                    .and_then(|()| out.write_all(b"\n"))
                    .map_err(|e| AuditError::io("stdout", e))?;
                n += 1;
            }
        }
    }
    Ok(n)
}
