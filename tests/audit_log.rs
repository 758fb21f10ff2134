//! The audit log end to end: writer → segments → verify, query, keygen and
//! torn-tail recovery, through the library and the real binary.

mod audit_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use audit_support::{cli, entry, json_lines, keygen};
use sidewatch::audit::{self, Filter, FsyncPolicy, Writer, WriterOptions};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sw-audit-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn keys(dir: &Path) -> (PathBuf, PathBuf) {
    keygen(dir, &[]);
    (dir.join("audit.key"), dir.join("audit.pub"))
}

fn write(dir: &Path, key: &Path, range: std::ops::Range<u64>) {
    let writer = Writer::open(WriterOptions {
        dir: dir.to_path_buf(),
        key: audit::load_signing_key(key).unwrap(),
        checkpoint_every: 16,
        checkpoint_interval: Duration::from_secs(60),
        fsync: FsyncPolicy::Always,
        segment_size: 2048,
        queue: 10_000,
        encryption: None,
        retention: audit::Retention::default(),
    })
    .unwrap();
    for i in range {
        assert!(writer.submit(entry(i)));
    }
    let stats = writer.stats();
    writer.close();
    assert_eq!(stats.write_errors_total(), 0);
    assert_eq!(stats.dropped_total(), 0);
}

#[test]
fn written_log_verifies_queries_and_survives_a_torn_tail() {
    let root = temp_dir("e2e");
    let (key, public) = keys(&root.join("keys"));
    let log = root.join("log");
    write(&log, &key, 0..100);

    let summary = audit::verify(&log, &audit::load_verifying_key(&public).unwrap(), &[]).unwrap();
    assert_eq!(summary.entries, 100);
    assert!(summary.segments > 1, "rotation by size: {summary:?}");
    assert!(summary.checkpoints > 100 / 16);

    let out = cli(
        &["audit", "verify", "log", "--pubkey", "keys/audit.pub"],
        &root,
    );
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("100 entries"));

    let out = cli(
        &["audit", "query", "log", "--model", "iris", "--flagged"],
        &root,
    );
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len(), 10, "req-0, req-10, …, req-90");
    assert!(lines.iter().all(|l| l["body"]["entry"]["model"] == "iris"));
    let mut one = Vec::new();
    let filter = Filter {
        request_id: Some("req-42".into()),
        ..Filter::default()
    };
    assert_eq!(audit::query(&log, &filter, &[], &mut one).unwrap(), 1);

    // A torn tail: half a frame after the closing checkpoint.
    let (_, last) = sidewatch::audit::segment::list(&log)
        .unwrap()
        .pop()
        .unwrap();
    let mut bytes = std::fs::read(&last).unwrap();
    bytes.extend_from_slice(&[40, 0, 0, 0, b'{']);
    std::fs::write(&last, &bytes).unwrap();
    let out = cli(
        &["audit", "verify", "log", "--pubkey", "keys/audit.pub"],
        &root,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("torn"));

    write(&log, &key, 100..150);
    let summary = audit::verify(&log, &audit::load_verifying_key(&public).unwrap(), &[]).unwrap();
    assert_eq!(summary.entries, 150);
    assert_eq!(summary.recoveries, 1);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_full_queue_drops_and_counts_without_waiting_and_the_log_stays_intact() {
    let root = temp_dir("full");
    let (key, public) = keys(&root.join("keys"));
    let log = root.join("log");
    let writer = Writer::open(WriterOptions {
        dir: log.clone(),
        key: audit::load_signing_key(&key).unwrap(),
        checkpoint_every: 100,
        checkpoint_interval: Duration::from_secs(60),
        fsync: FsyncPolicy::Always,
        segment_size: 1 << 20,
        queue: 4,
        encryption: None,
        retention: audit::Retention::default(),
    })
    .unwrap();
    let accepted = (0..20_000).filter(|&i| writer.submit(entry(i))).count() as u64;
    let stats = writer.stats();
    writer.close();
    assert!(stats.dropped_total() > 0, "a 4-slot queue must overflow");
    assert_eq!(accepted + stats.dropped_total(), 20_000);
    let summary = audit::verify(&log, &audit::load_verifying_key(&public).unwrap(), &[]).unwrap();
    assert_eq!(summary.entries, accepted);
    assert_eq!(stats.records_total(), summary.records);
    assert_eq!(
        stats.durable(),
        summary.records,
        "fsync: always leaves nothing undurable"
    );
    let _ = std::fs::remove_dir_all(&root);
}
