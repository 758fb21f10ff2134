//! What the audit tests share: temporary directories, keys, entries, a
//! writer run to completion and a deadline-bound wait.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ed25519_dalek::{SigningKey, VerifyingKey};
use sidewatch::audit::{
    self, AuditStats, EncryptionKey, Entry, FsyncPolicy, Verdicts, Writer, WriterOptions,
};

/// How long a condition may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh, empty directory named after `name` and this process.
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("sw-audit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// A path inside it.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The signing key every library-level test uses.
pub fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

/// Its public half.
pub fn public_key() -> VerifyingKey {
    signing_key().verifying_key()
}

/// An encryption key from a fixed byte.
pub fn encryption_key(byte: u8) -> EncryptionKey {
    EncryptionKey::from_bytes(&[byte; 32])
}

/// The JSON records `audit query` printed, one per line.
pub fn json_lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Runs `sidewatch keygen --out DIR` (with `extra` arguments).
pub fn keygen(dir: &Path, extra: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_sidewatch"))
        .args(["keygen", "--out"])
        .arg(dir)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs the binary in `cwd`.
pub fn cli(args: &[&str], cwd: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sidewatch"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

/// Entry `i`: shaped like a real exchange, with ids that say which it is.
pub fn entry(i: u64) -> Entry {
    Entry {
        request_id: format!("req-{i}"),
        client: format!("10.0.0.{}", i % 3),
        model: Some(if i.is_multiple_of(2) { "iris" } else { "wine" }.into()),
        route: "POST /v2/models/iris/infer".into(),
        status: 200,
        latency_us: 1000 + i,
        verdicts: Verdicts {
            flagged: i.is_multiple_of(10),
            ..Verdicts::default()
        },
        ..Entry::default()
    }
}

/// Small segments and frequent checkpoints, synced after every batch.
pub fn options(dir: &Path) -> WriterOptions {
    WriterOptions {
        checkpoint_every: 16,
        checkpoint_interval: Duration::from_secs(60),
        fsync: FsyncPolicy::Always,
        segment_size: 4096,
        queue: 10_000,
        ..WriterOptions::new(dir, signing_key())
    }
}

/// Writes entries `range` with `options`, closes, and checks nothing was
/// lost.
pub fn write(options: WriterOptions, range: std::ops::Range<u64>) -> std::sync::Arc<AuditStats> {
    let writer = Writer::open(options).unwrap();
    for i in range {
        assert!(writer.submit(entry(i)));
    }
    let stats = writer.stats();
    writer.close();
    assert_eq!(stats.write_errors_total(), 0);
    assert_eq!(stats.dropped_total(), 0);
    stats
}

/// The segment files of `dir`, in chain order.
pub fn segments(dir: &Path) -> Vec<(u64, PathBuf)> {
    audit::segment::list(dir).unwrap()
}

/// Waits until `condition` holds, failing after [`DEADLINE`].
pub fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}
