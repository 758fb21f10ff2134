//! The `audit:` config section: raw as written, then validated with key
//! paths (every problem reported at once).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::redact::valid_pointer;
use super::writer::FsyncPolicy;
use crate::config::Problem;
use crate::config::units::{Scalar, parse_duration, parse_size};

/// Which exchanges keep their (redacted) bodies in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payloads {
    /// No bodies, only their SHA-256.
    None,
    /// Bodies of exchanges a detector flagged.
    Flagged,
    /// Every body.
    All,
}

/// The validated `audit:` section.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditConfig {
    /// Directory of segment files.
    pub dir: PathBuf,
    /// Which bodies are kept.
    pub payloads: Payloads,
    /// JSON pointers removed from bodies before writing.
    pub redact: Vec<String>,
    /// The Ed25519 secret key from `sidewatch keygen`.
    pub signing_key: PathBuf,
    /// A checkpoint after this many records.
    pub checkpoint_every: u64,
    /// A checkpoint at least this often while records arrive.
    pub checkpoint_interval: Duration,
    /// When segments are `fsync`ed.
    pub fsync: FsyncPolicy,
    /// Segment rotation size in bytes.
    pub segment_size: u64,
    /// Segments whose last write is older than this are pruned.
    pub max_age: Option<Duration>,
    /// At most this many segments are kept (the current one included).
    pub max_segments: Option<u64>,
    /// File holding the 256-bit XChaCha20-Poly1305 key for encryption at
    /// rest (`sidewatch keygen --encryption`); plaintext when absent.
    pub encryption_key: Option<PathBuf>,
}

/// The `audit:` section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    dir: Option<PathBuf>,
    payloads: Option<String>,
    #[serde(default)]
    redact: Vec<String>,
    signing_key: Option<PathBuf>,
    #[serde(default)]
    checkpoint: RawCheckpoint,
    fsync: Option<Scalar>,
    segment_size: Option<Scalar>,
    #[serde(default)]
    retention: RawRetention,
    encryption_key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheckpoint {
    every: Option<u64>,
    interval: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    max_age: Option<Scalar>,
    max_segments: Option<u64>,
}

// === impl RawAudit ===

impl RawAudit {
    /// The validated section, or `None` (with problems pushed) when it is
    /// unusable.
    pub fn validate(self, problems: &mut Vec<Problem>) -> Option<AuditConfig> {
        let before = problems.len();
        let mut fail = |path: &str, message: String| problems.push(Problem::new(path, message));
        let dir = self.dir.unwrap_or_else(|| {
            fail("audit.dir", "required".into());
            PathBuf::new()
        });
        let signing_key = self.signing_key.unwrap_or_else(|| {
            fail(
                "audit.signing_key",
                "required (write one with `sidewatch keygen --out DIR`)".into(),
            );
            PathBuf::new()
        });
        let payloads = match self.payloads.as_deref().unwrap_or("none") {
            "none" => Payloads::None,
            "flagged" => Payloads::Flagged,
            "all" => Payloads::All,
            other => {
                fail(
                    "audit.payloads",
                    format!("expected none, flagged or all, not {other:?}"),
                );
                Payloads::None
            }
        };
        for (i, pointer) in self.redact.iter().enumerate() {
            if !valid_pointer(pointer) {
                fail(
                    &format!("audit.redact[{i}]"),
                    format!("{pointer:?} is not a JSON pointer (e.g. /inputs/0/data)"),
                );
            }
        }
        let checkpoint_every = match self.checkpoint.every.unwrap_or(1000) {
            0 => {
                fail("audit.checkpoint.every", "must be at least 1".into());
                1
            }
            n => n,
        };
        let mut duration = |path: &str, value: Option<&Scalar>, default: &str| match parse_duration(
            value.map_or(default, |s| s.0.as_str()),
        ) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                fail(path, "must be greater than zero".into());
                Duration::from_secs(1)
            }
            Err(message) => {
                fail(path, message);
                Duration::from_secs(1)
            }
        };
        let checkpoint_interval = duration(
            "audit.checkpoint.interval",
            self.checkpoint.interval.as_ref(),
            "10s",
        );
        let fsync = match self.fsync.as_ref().map_or("100ms", |s| s.0.as_str()) {
            "always" => FsyncPolicy::Always,
            _ => FsyncPolicy::Interval(duration("audit.fsync", self.fsync.as_ref(), "100ms")),
        };
        let max_age = self
            .retention
            .max_age
            .as_ref()
            .map(|s| duration("audit.retention.max_age", Some(s), "30d"));
        let segment_size =
            match parse_size(self.segment_size.as_ref().map_or("64MiB", |s| s.0.as_str())) {
                Ok(n) if n >= 4096 => n,
                Ok(_) => {
                    problems.push(Problem::new("audit.segment_size", "must be at least 4KiB"));
                    4096
                }
                Err(message) => {
                    problems.push(Problem::new("audit.segment_size", message));
                    4096
                }
            };
        let max_segments = match self.retention.max_segments {
            Some(0) => {
                problems.push(Problem::new(
                    "audit.retention.max_segments",
                    "must be at least 1 (the segment being written is always kept)",
                ));
                None
            }
            n => n,
        };
        if self
            .encryption_key
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            problems.push(Problem::new(
                "audit.encryption_key",
                "must name a key file (write one with `sidewatch keygen --encryption --out DIR`)",
            ));
        }
        (problems.len() == before).then_some(AuditConfig {
            dir,
            payloads,
            redact: self.redact,
            signing_key,
            checkpoint_every,
            checkpoint_interval,
            fsync,
            segment_size,
            max_age,
            max_segments,
            encryption_key: self.encryption_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(yaml: &str) -> (Option<AuditConfig>, Vec<String>) {
        let raw: RawAudit = serde_norway::from_str(yaml).unwrap();
        let mut problems = Vec::new();
        let config = raw.validate(&mut problems);
        (config, problems.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn design_example_parses_and_defaults_apply() {
        let (config, problems) = validate(
            "dir: /var/lib/sidewatch/audit\npayloads: flagged\nredact: [/inputs/0/data]\n\
             signing_key: keys/audit.key\ncheckpoint: { every: 1000, interval: 10s }\n\
             fsync: 100ms\nsegment_size: 64MiB\nretention: { max_age: 30d, max_segments: 100 }\n\
             encryption_key: keys/audit.enc\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        let config = config.unwrap();
        assert_eq!(config.payloads, Payloads::Flagged);
        assert_eq!(
            config.fsync,
            FsyncPolicy::Interval(Duration::from_millis(100))
        );
        assert_eq!(config.segment_size, 64 << 20);
        assert_eq!(config.max_age, Some(Duration::from_secs(30 * 86400)));
        assert_eq!(config.max_segments, Some(100));
        assert_eq!(config.encryption_key, Some(PathBuf::from("keys/audit.enc")));
        let (config, _) = validate("dir: a\nsigning_key: k\nfsync: always\n");
        let config = config.unwrap();
        assert_eq!(config.fsync, FsyncPolicy::Always);
        assert_eq!(config.payloads, Payloads::None);
        assert_eq!(config.checkpoint_every, 1000);
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let (config, problems) = validate(
            "payloads: some\nredact: [inputs]\ncheckpoint: { every: 0, interval: 0s }\n\
             fsync: sometimes\nsegment_size: 1KiB\nencryption_key: \"\"\n\
             retention: { max_age: 0s, max_segments: 0 }\n",
        );
        assert!(config.is_none());
        for path in [
            "audit.dir",
            "audit.signing_key",
            "audit.payloads",
            "audit.redact[0]",
            "audit.checkpoint.every",
            "audit.checkpoint.interval",
            "audit.fsync",
            "audit.segment_size",
            "audit.encryption_key",
            "audit.retention.max_age",
            "audit.retention.max_segments",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(path)),
                "{path} missing from {problems:?}"
            );
        }
    }
}
