//! `sidewatch audit query`: matching records as JSONL.

use std::borrow::Cow;
use std::io::Write;
use std::path::Path;

use super::AuditError;
use super::crypt::{EncryptionKey, find_key};
use super::record::{Body, Record};
use super::segment::{self, Header};

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
/// object per line; returns how many. Encrypted segments are opened with
/// the key among `keys` that their header names; without it, the error
/// says which key id is needed. Unreadable frames (and envelopes that fail
/// to open) are skipped: use `audit verify` to find out why.
pub fn query(
    dir: &Path,
    filter: &Filter,
    keys: &[EncryptionKey],
    out: &mut dyn Write,
) -> Result<u64, AuditError> {
    let mut n = 0;
    for (first, path) in segment::list(dir)? {
        let bytes = std::fs::read(&path).map_err(|e| AuditError::io(&path, e))?;
        let scan = segment::scan(&bytes);
        let opener = match scan.header {
            Some(Header::Encrypted(id)) => Some((
                find_key(keys, &id).map_err(|reason| AuditError::Key {
                    path: path.clone(),
                    reason,
                })?,
                Header::Encrypted(id).bytes(),
            )),
            _ => None,
        };
        for (seq, frame) in (first..).zip(&scan.frames) {
            let plain = match &opener {
                Some((key, header)) => match key.open(header, seq, &frame.body) {
                    Ok(plain) => Cow::Owned(plain),
                    Err(_) => continue,
                },
                None => Cow::Borrowed(&frame.body[..]),
            };
            let Ok(record) = Record::parse(&plain) else {
                continue;
            };
            if filter.matches(&record) {
                out.write_all(&plain)
                    .and_then(|()| out.write_all(b"\n"))
                    .map_err(|e| AuditError::io("stdout", e))?;
                n += 1;
            }
        }
    }
    Ok(n)
}
