//! The tamper-evident forensic audit log (DESIGN §7, format in
//! `docs/audit-format.md`).
//!
//! Records are canonical JSON bodies in length-prefixed frames, appended to
//! size-rotated segment files. Each record names the SHA-256 of the one
//! before it, and Ed25519-signed checkpoints pin the chain head every N
//! records or T seconds and at close, so an edit — even one followed by
//! recomputing every later hash — is caught by [`verify()`].
//!
//! - [`record`]: what a record holds and its canonical bytes;
//! - [`segment`]: framing and segment files;
//! - [`keys`]: Ed25519 key files and checkpoint signatures;
//! - [`crypt`]: XChaCha20-Poly1305 envelopes for encryption at rest;
//! - [`retention`]: pruning old segments under a signed record;
//! - [`redact`]: JSON pointers removed from payloads before writing;
//! - [`writer`]: the dedicated writer thread behind a bounded queue;
//! - [`feed`]: joins each mirrored exchange with its verdicts into an entry;
//! - [`verify`](mod@verify) and [`query`](mod@query): the forensics commands.

pub mod config;
pub mod crypt;
pub mod feed;
pub mod keys;
pub mod query;
pub mod record;
mod recover;
pub mod redact;
pub mod retention;
pub mod segment;
pub mod verify;
pub mod writer;

use std::path::PathBuf;

pub use config::{AuditConfig, Payloads, RawAudit};
pub use crypt::{EncryptionKey, generate_encryption_key, load_encryption_key};
pub use feed::{AuditFeed, AuditMetrics, AuditTap, FeedOptions, FeedStats};
pub use keys::{KeyId, generate_keys, load_signing_key, load_verifying_key};
pub use query::{Filter, query};
pub use record::{
    Body, Checkpoint, Entry, Payload, Prune, Record, Recovery, UncleanStop, Verdicts,
};
pub use retention::Retention;
pub use verify::{Summary, VerifyError, verify, verify_live};
pub use writer::{AuditStats, FsyncPolicy, Writer, WriterOptions};

/// An I/O or key-file failure of the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A file could not be read, written or created.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A key file does not hold a key.
    #[error("{path}: {reason}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

// === impl AuditError ===

impl AuditError {
    /// An I/O error on `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> AuditError {
        AuditError::Io {
            path: path.into(),
            source,
        }
    }
}
