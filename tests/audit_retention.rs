//! Retention: the writer prunes the oldest segments by count or age under
//! a signed pruning record, `verify` accepts that lawful pruning (and says
//! so) but still rejects a segment deleted without one.

mod audit_support;

use std::time::{Duration, SystemTime};

use audit_support::{TempDir, cli, entry, keygen, options, public_key, segments, write};
use sidewatch::audit::{self, Body, Filter, Record, Retention, Writer, WriterOptions};

fn with_retention(dir: &std::path::Path, retention: Retention) -> WriterOptions {
    WriterOptions {
        retention,
        ..options(dir)
    }
}

/// The pruning records in `dir`.
fn prunings(dir: &std::path::Path) -> Vec<audit::Prune> {
    let mut out = Vec::new();
    audit::query(dir, &Filter::default(), &[], &mut out).unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .filter_map(|l| match Record::parse(l.as_bytes()).unwrap().body {
            Body::Prune(p) => Some(p),
            _ => None,
        })
        .collect()
}

#[test]
fn pruning_by_count_verifies_and_a_deletion_without_record_does_not() {
    let root = TempDir::new("keep-count");
    let log = root.join("log");
    let keep = Retention {
        max_age: None,
        max_segments: Some(3),
    };
    write(with_retention(&log, keep), 0..300);
    // And across a restart: the chain and the pruning carry on.
    write(with_retention(&log, keep), 300..400);

    let files = segments(&log);
    assert_eq!(files.len(), 3, "{files:?}");
    let summary = audit::verify(&log, &public_key(), &[]).unwrap();
    let first = files[0].0;
    assert!(first > 0);
    assert_eq!(summary.pruned_before, first);
    assert!(summary.prunings >= 1, "{summary:?}");
    assert!(summary.entries < 400);
    assert!(
        summary
            .to_string()
            .contains(&format!("sequences 0..={} lawfully pruned", first - 1))
    );
    let last = prunings(&log).pop().unwrap();
    assert_eq!(
        last.last_seq + 1,
        first,
        "the latest pruning ends where the log starts"
    );
    assert_eq!(last.reason, "max_segments");
    assert!(last.segments.iter().all(|s| !log.join(s).exists()));
    // The entries still present are the newest ones, in order.
    let mut out = Vec::new();
    let n = audit::query(
        &log,
        &Filter {
            request_id: Some("req-399".into()),
            ..Filter::default()
        },
        &[],
        &mut out,
    )
    .unwrap();
    assert_eq!(n, 1);

    // The CLI says so too.
    keygen(&root.join("keys"), &[]);
    let out = cli(
        &["audit", "verify", "log", "--pubkey", "keys/audit.pub"],
        &root.0,
    );
    assert!(!out.status.success(), "another public key must not verify");
    std::fs::write(
        root.join("keys/audit.pub"),
        hex::encode(public_key().as_bytes()),
    )
    .unwrap();
    let out = cli(
        &["audit", "verify", "log", "--pubkey", "keys/audit.pub"],
        &root.0,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("lawfully pruned"));

    // Deleting the oldest kept segment, which no pruning record covers.
    std::fs::remove_file(&files[0].1).unwrap();
    let error = audit::verify(&log, &public_key(), &[]).unwrap_err();
    assert_eq!(error.seq, Some(files[1].0));
    assert!(error.reason.contains("no pruning record covers"), "{error}");
    let out = cli(
        &["audit", "verify", "log", "--pubkey", "keys/audit.pub"],
        &root.0,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("segments deleted"));
}

#[test]
fn a_middle_segment_deleted_from_a_pruned_log_is_caught() {
    let root = TempDir::new("keep-middle");
    let log = root.join("log");
    let keep = Retention {
        max_age: None,
        max_segments: Some(4),
    };
    write(with_retention(&log, keep), 0..300);
    let files = segments(&log);
    assert_eq!(files.len(), 4);
    audit::verify(&log, &public_key(), &[]).unwrap();
    std::fs::remove_file(&files[1].1).unwrap();
    let error = audit::verify(&log, &public_key(), &[]).unwrap_err();
    assert!(error.reason.contains("segment removed"), "{error}");
    assert_eq!(error.seq, Some(files[1].0));
}

#[test]
fn pruning_by_age_removes_only_old_segments_and_never_the_current_one() {
    let root = TempDir::new("keep-age");
    let log = root.join("log");
    write(options(&log), 0..200);
    let before = segments(&log);
    assert!(before.len() > 3);
    // Every segment but the last (which the writer appends to) is old.
    let old = SystemTime::now() - Duration::from_secs(7200);
    for (_, path) in &before[..before.len() - 1] {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(old).unwrap();
    }
    let keep = Retention {
        max_age: Some(Duration::from_secs(3600)),
        max_segments: None,
    };
    write(with_retention(&log, keep), 200..210);

    let after = segments(&log);
    assert_eq!(after[0], before[before.len() - 1], "{after:?}");
    let summary = audit::verify(&log, &public_key(), &[]).unwrap();
    assert_eq!(summary.pruned_before, before[before.len() - 1].0);
    let pruning = prunings(&log).pop().unwrap();
    assert_eq!(pruning.reason, "max_age");
    assert_eq!(pruning.first_seq, 0);
    assert_eq!(pruning.segments.len(), before.len() - 1);
}

#[test]
fn segments_left_behind_by_a_crash_before_removal_still_verify() {
    let root = TempDir::new("keep-crash");
    let log = root.join("log");
    let copy = root.join("copy");
    write(options(&log), 0..200);
    std::fs::create_dir_all(&copy).unwrap();
    for (_, path) in segments(&log) {
        std::fs::copy(&path, copy.join(path.file_name().unwrap())).unwrap();
    }
    let keep = Retention {
        max_age: None,
        max_segments: Some(2),
    };
    // No new entries: the segments it prunes are the ones copied.
    write(with_retention(&log, keep), 200..200);
    let pruning = prunings(&log).pop().unwrap();
    // Put the pruned files back, as if the writer had stopped after the
    // pruning record was durable but before it removed them.
    for name in &pruning.segments {
        std::fs::copy(copy.join(name), log.join(name)).unwrap();
    }
    let summary = audit::verify(&log, &public_key(), &[]).unwrap();
    assert_eq!(summary.pruned_before, 0);
    assert_eq!(summary.entries, 200);
    // A restarted writer finishes the job under the same policy.
    write(with_retention(&log, keep), 200..230);
    assert_eq!(segments(&log).len(), 2);
    audit::verify(&log, &public_key(), &[]).unwrap();
}

#[test]
fn a_full_queue_and_retention_still_leave_a_verifiable_log() {
    let root = TempDir::new("keep-busy");
    let log = root.join("log");
    let writer = Writer::open(WriterOptions {
        queue: 64,
        retention: Retention {
            max_age: None,
            max_segments: Some(2),
        },
        ..options(&log)
    })
    .unwrap();
    let accepted = (0..5000).filter(|&i| writer.submit(entry(i))).count() as u64;
    let stats = writer.stats();
    writer.close();
    assert_eq!(accepted + stats.dropped_total(), 5000);
    assert_eq!(stats.write_errors_total(), 0);
    let summary = audit::verify(&log, &public_key(), &[]).unwrap();
    assert!(summary.pruned_before > 0);
    assert!(segments(&log).len() <= 2);
}

#[test]
fn a_closed_log_never_keeps_more_segments_than_its_policy() {
    // Closing at every position of a segment, the one where the last
    // entry fills it included: the pruning counts the segment that takes
    // the closing records.
    let root = TempDir::new("keep-close");
    let keep = Retention {
        max_age: None,
        max_segments: Some(2),
    };
    for n in 20..70 {
        let log = root.join(&format!("log-{n}"));
        write(with_retention(&log, keep), 0..n);
        let files = segments(&log);
        assert!(files.len() <= 2, "{n} entries: {files:?}");
        audit::verify(&log, &public_key(), &[]).unwrap();
        // Idle restarts start a new segment after a full one instead of
        // growing it, and still keep to the policy.
        let oversized = files
            .iter()
            .filter(|(_, p)| std::fs::metadata(p).unwrap().len() >= 4096)
            .count();
        for _ in 0..3 {
            write(with_retention(&log, keep), n..n);
        }
        let after = segments(&log);
        assert!(after.len() <= 2, "{n} entries, idle restarts: {after:?}");
        let grown = after
            .iter()
            .filter(|(_, p)| std::fs::metadata(p).unwrap().len() >= 4096 + 1024)
            .count();
        assert_eq!(
            grown, 0,
            "{n} entries: a segment kept growing ({oversized} full)"
        );
        audit::verify(&log, &public_key(), &[]).unwrap();
    }
    // A tail under another format (encryption turned on) is not reopened
    // either, even by a run that writes nothing but its closing records.
    let log = root.join("log-foreign");
    write(with_retention(&log, keep), 0..40);
    let key = audit_support::encryption_key(7);
    let encrypted = WriterOptions {
        encryption: Some(key.clone()),
        ..with_retention(&log, keep)
    };
    write(encrypted, 40..40);
    let files = segments(&log);
    assert!(files.len() <= 2, "{files:?}");
    audit::verify(&log, &public_key(), &[key]).unwrap();
}
