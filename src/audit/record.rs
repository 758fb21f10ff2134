//! What a record holds and the canonical bytes that are hashed.
//!
//! A record's canonical bytes are `serde_json::to_vec` of [`Record`]: fields
//! in declaration order, no whitespace, object keys of payloads sorted (the
//! default `serde_json::Map` is a `BTreeMap`). The verifier re-serializes
//! every parsed record and requires the same bytes, so two encodings of one
//! value cannot both pass.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The format version written in every record.
pub const VERSION: u32 = 1;

/// The `prev` of the very first record: 32 zero bytes, hex-encoded.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One record of the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Format version ([`VERSION`]).
    pub v: u32,
    /// Position in the chain, from 0, one more than the previous record's.
    pub seq: u64,
    /// Hex SHA-256 of the previous record's canonical bytes ([`GENESIS`]
    /// for the first).
    pub prev: String,
    /// When the record was written, RFC 3339 UTC with microseconds.
    pub time: String,
    /// What the record is about.
    pub body: Body,
}

/// The kinds of record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Body {
    /// One proxied exchange.
    Entry(Box<Entry>),
    /// A signature over the chain so far.
    Checkpoint(Checkpoint),
    /// The writer cut a torn tail on start-up.
    Recovery(Recovery),
    /// The writer removed the oldest segments under the retention policy.
    Prune(Prune),
    /// On start-up the writer found that the previous run had not closed
    /// the log: it was killed, crashed or lost power.
    UncleanStop(UncleanStop),
}

/// One proxied exchange and what sidewatch made of it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The request's `x-request-id`.
    pub request_id: String,
    /// The W3C trace id, when the client sent one.
    pub trace_id: Option<String>,
    /// Who sent it: the authenticated subject or the peer address.
    pub client: String,
    /// The model, when the route names one.
    pub model: Option<String>,
    /// The model version, when the protocol carries one.
    pub model_version: Option<String>,
    /// Method and path, e.g. `POST /v2/models/iris/infer`.
    pub route: String,
    /// The HTTP status answered (0: no answer, e.g. an upstream failure).
    pub status: u16,
    /// From the first request byte to the last response byte.
    pub latency_us: u64,
    /// Hex SHA-256 of the request body as received.
    pub request_sha256: String,
    /// Hex SHA-256 of the response body as sent.
    pub response_sha256: String,
    /// What the detectors said.
    pub verdicts: Verdicts,
    /// Ids of alerts firing for this model when it was written.
    pub alerts: Vec<String>,
    /// The bodies, redacted, when `audit.payloads` asks for them.
    pub payload: Option<Payload>,
}

/// The detectors' verdicts on one exchange.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verdicts {
    /// Whether anything flagged it (an anomaly or a violation).
    pub flagged: bool,
    /// Anomaly detectors that flagged it.
    pub anomalies: Vec<Anomaly>,
    /// Validation violations, as `feature:kind`.
    pub violations: Vec<String>,
    /// Whether the model was drifted as of the latest evaluation.
    pub drifted: bool,
    /// Rows of the request handed to the detectors.
    pub rows: u32,
    /// Rows whose verdict is included here: fewer than `rows` when the
    /// detectors fell behind and the entry was written without them.
    pub judged: u32,
}

/// One anomaly detector's flag.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Anomaly {
    /// The detector, e.g. `zscore`.
    pub detector: String,
    /// Its score (absent when not finite: JSON has no NaN).
    pub score: Option<f64>,
    /// The features it blamed.
    pub features: Vec<String>,
}

/// Request and response bodies that parsed as JSON, redacted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payload {
    /// The request body.
    pub request: Option<serde_json::Value>,
    /// The response body.
    pub response: Option<serde_json::Value>,
}

/// A signature over the chain up to and including this record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Hex of the first 8 bytes of SHA-256 of the public key.
    pub key_id: String,
    /// Written at close: the log was shut down cleanly here.
    #[serde(rename = "final")]
    pub closing: bool,
    /// Hex Ed25519 signature over this record's canonical bytes with `sig`
    /// empty (which covers `prev`, hence the whole chain before it).
    pub sig: String,
}

/// The previous run's end, when it did not close the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UncleanStop {
    /// The sequence of the last whole record it left.
    pub last_seq: u64,
    /// The segment it was writing (the last one at start-up).
    pub segment: String,
}

/// A torn tail cut on start-up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recovery {
    /// The segment file that was cut.
    pub segment: String,
    /// Its length after the cut.
    pub cut_at: u64,
    /// How many bytes were cut.
    pub bytes_cut: u64,
}

/// Segments removed under `audit.retention`: what `verify` needs to tell
/// lawful pruning from deletion. A signed checkpoint follows it at once,
/// and the files are removed only once both are on disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prune {
    /// Which limit: `max_segments`, `max_age` or both, comma-separated.
    pub reason: String,
    /// The segment files removed, oldest first.
    pub segments: Vec<String>,
    /// The first sequence removed (the log's first before the pruning).
    pub first_seq: u64,
    /// The last sequence removed; the log now starts at the next one.
    pub last_seq: u64,
    /// Hex SHA-256 of record `last_seq`: the `prev` of the first record
    /// kept, from which verification continues the chain.
    pub head: String,
}

// === impl Record ===

impl Record {
    /// The canonical bytes: what is framed, stored and hashed.
    pub fn canonical(&self) -> Vec<u8> {
        // Serializing these plain structs cannot fail: every map key is a
        // string and non-finite scores are mapped to `None` beforehand.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Appends the canonical bytes to `out` (what [`Record::canonical`]
    /// returns, without an allocation of its own).
    pub fn write_canonical(&self, out: &mut Vec<u8>) {
        let start = out.len();
        // As above: cannot fail; were it to, nothing half-written stays.
        if serde_json::to_writer(&mut *out, self).is_err() {
            out.truncate(start);
        }
    }

    /// Parses canonical bytes, refusing any other encoding of the value.
    pub fn parse(bytes: &[u8]) -> Result<Record, String> {
        let record: Record = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if record.canonical() != bytes {
            return Err("not in canonical form".into());
        }
        Ok(record)
    }

    /// Whether this is an entry flagged by a detector.
    pub fn flagged(&self) -> bool {
        matches!(&self.body, Body::Entry(e) if e.verdicts.flagged)
    }
}

// === impl Entry ===

impl Entry {
    /// Replaces non-finite scores (which JSON cannot hold) with `None`.
    pub fn sanitize(&mut self) {
        for a in &mut self.verdicts.anomalies {
            if a.score.is_some_and(|s| !s.is_finite()) {
                a.score = None;
            }
        }
    }
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Hex SHA-256 of `bytes`, as the `*_sha256` fields hold it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha256(bytes))
}

/// The current time as records hold it.
pub fn format_time(time: std::time::SystemTime) -> String {
    humantime::format_rfc3339_micros(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_round_trip_and_refusal_of_other_encodings() {
        let mut entry = Entry {
            request_id: "r1".into(),
            verdicts: Verdicts {
                anomalies: vec![Anomaly {
                    detector: "zscore".into(),
                    score: Some(f64::NAN),
                    features: vec![],
                }],
                ..Verdicts::default()
            },
            payload: Some(Payload {
                request: Some(serde_json::json!({"b": 1.5, "a": [1, "x"]})),
                response: None,
            }),
            ..Entry::default()
        };
        entry.sanitize();
        let record = Record {
            v: VERSION,
            seq: 3,
            prev: GENESIS.into(),
            time: format_time(std::time::SystemTime::UNIX_EPOCH),
            body: Body::Entry(Box::new(entry)),
        };
        let bytes = record.canonical();
        assert_eq!(Record::parse(&bytes), Ok(record));
        let mut spaced = bytes.clone();
        spaced.insert(1, b' ');
        assert!(Record::parse(&spaced).is_err());
    }
}
