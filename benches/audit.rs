//! The audit log's throughput: records a second from `Writer::submit` until
//! they are durable (Ed25519 checkpoint every 1000 records, `fsync` every
//! 100 ms, plaintext and encrypted), and the scan rates of `audit verify`
//! and `audit query` over a 200,000-record log.
//!
//! Entries are shaped like real ones (64-character request id, trace id,
//! model and version, route, both body hashes, two anomaly scores); a ring
//! of them is built up front and cloned per submit, as the feed would hand
//! over a fresh one. The submitting thread keeps the queue from
//! overflowing, so nothing is dropped and every record is timed.
//!
//! Run: `taskset -c 1 cargo bench --bench audit` (one core for the writer,
//! the submitter and the scans). Scan benches print the log's size, so
//! MB/s = size / time per scan.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use ed25519_dalek::SigningKey;
use sidewatch::audit::record::{Anomaly, sha256_hex};
use sidewatch::audit::{
    self, EncryptionKey, Entry, Filter, FsyncPolicy, Verdicts, Writer, WriterOptions,
};

/// Entries in the ring cloned from.
const RING: usize = 1024;

/// Records in the log the scans read. `cargo bench` passes `--bench`;
/// `cargo test` runs each bench once without it, as a smoke test of a
/// debug build, where a small log will do.
fn scan_records() -> u64 {
    if std::env::args().any(|a| a == "--bench") {
        200_000
    } else {
        2_000
    }
}

/// Entries submitted but not yet written beyond which the submitter waits
/// (the queue holds 65,536).
const IN_FLIGHT: u64 = 60_000;

fn entry(i: u64) -> Entry {
    Entry {
        request_id: format!("{:064x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        trace_id: Some(format!("{:032x}", u128::from(i) * 0x1234_5678_9abc_def1)),
        client: "10.12.0.7".into(),
        model: Some("fraud-detector".into()),
        model_version: Some("3".into()),
        route: "POST /v2/models/fraud-detector/infer".into(),
        status: 200,
        latency_us: 1_834 + i % 1000,
        request_sha256: sha256_hex(&i.to_le_bytes()),
        response_sha256: sha256_hex(&(!i).to_le_bytes()),
        verdicts: Verdicts {
            flagged: i.is_multiple_of(50),
            anomalies: vec![
                Anomaly {
                    detector: "zscore".into(),
                    score: Some(2.318_4 + (i % 7) as f64),
                    features: vec!["amount".into()],
                },
                Anomaly {
                    detector: "hst".into(),
                    score: Some(0.712_9),
                    features: vec![],
                },
            ],
            ..Verdicts::default()
        },
        ..Entry::default()
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("sw-bench-audit-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn options(dir: &Path, encryption: Option<&EncryptionKey>) -> WriterOptions {
    WriterOptions {
        checkpoint_every: 1000,
        checkpoint_interval: Duration::from_secs(10),
        fsync: FsyncPolicy::Interval(Duration::from_millis(100)),
        segment_size: 64 << 20,
        encryption: encryption.cloned(),
        ..WriterOptions::new(dir, SigningKey::from_bytes(&[7; 32]))
    }
}

/// Submits `n` entries from `ring` and waits until every one is durable;
/// the time from the first submit to then.
fn write(dir: &Path, encryption: Option<&EncryptionKey>, ring: &[Entry], n: u64) -> Duration {
    let writer = Writer::open(options(dir, encryption)).expect("open the audit log");
    let stats = writer.stats();
    let start = Instant::now();
    for i in 0..n {
        while i.saturating_sub(stats.records_total()) >= IN_FLIGHT {
            std::thread::yield_now();
        }
        writer.submit(ring[i as usize % ring.len()].clone());
    }
    // Entries and the checkpoints after every 1000 of them.
    let records = n + n / 1000;
    while stats.durable() < records {
        std::thread::sleep(Duration::from_micros(200));
    }
    let elapsed = start.elapsed();
    writer.close();
    assert_eq!(stats.dropped_total(), 0, "the bench must not drop");
    elapsed
}

fn writer(c: &mut Criterion) {
    let ring: Vec<Entry> = (0..RING as u64).map(entry).collect();
    let key = EncryptionKey::from_bytes(&[9; 32]);
    let mut group = c.benchmark_group("audit/writer");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    group.throughput(Throughput::Elements(1));
    for (name, encryption) in [("plain", None), ("encrypted", Some(&key))] {
        group.bench_function(format!("submit_to_durable/{name}"), |b| {
            b.iter_custom(|iters| {
                let dir = temp_dir(name);
                let elapsed = write(&dir, encryption, &ring, iters);
                let _ = std::fs::remove_dir_all(&dir);
                elapsed
            })
        });
    }
    group.finish();
}

/// A 200,000-record log in a fresh directory; its size in bytes.
fn scan_log(dir: &Path, encryption: Option<&EncryptionKey>, ring: &[Entry]) -> u64 {
    write(dir, encryption, ring, scan_records());
    let bytes = audit::segment::list(dir)
        .expect("list segments")
        .iter()
        .map(|(_, p)| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum();
    eprintln!(
        "audit/scan: {} records, {bytes} bytes ({:.1} MB), {}",
        scan_records() + scan_records() / 1000,
        bytes as f64 / 1e6,
        if encryption.is_some() {
            "encrypted"
        } else {
            "plain"
        }
    );
    bytes
}

fn scans(c: &mut Criterion) {
    let ring: Vec<Entry> = (0..RING as u64).map(entry).collect();
    let key = EncryptionKey::from_bytes(&[9; 32]);
    let public = SigningKey::from_bytes(&[7; 32]).verifying_key();
    let mut group = c.benchmark_group("audit/scan");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    // Entries and their checkpoints.
    group.throughput(Throughput::Elements(scan_records() + scan_records() / 1000));
    for (name, encryption) in [("plain", None), ("encrypted", Some(&key))] {
        let dir = temp_dir(&format!("scan-{name}"));
        // Built by the first bench that runs, so a filter that skips both
        // does not pay for it.
        let built = std::cell::OnceCell::new();
        let keys: Vec<EncryptionKey> = encryption.into_iter().cloned().collect();
        group.bench_function(format!("verify/{name}"), |b| {
            built.get_or_init(|| scan_log(&dir, encryption, &ring));
            b.iter(|| black_box(audit::verify(&dir, &public, &keys).expect("verifies")))
        });
        let filter = Filter {
            request_id: Some(ring[17].request_id.clone()),
            ..Filter::default()
        };
        group.bench_function(format!("query_request_id/{name}"), |b| {
            built.get_or_init(|| scan_log(&dir, encryption, &ring));
            b.iter(|| {
                let mut out = Vec::new();
                black_box(audit::query(&dir, &filter, &keys, &mut out).expect("query"))
            })
        });
        let _ = std::fs::remove_dir_all(&dir);
    }
    group.finish();
}

criterion_group!(benches, writer, scans);
criterion_main!(benches);
