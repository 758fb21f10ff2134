//! A full disk under the live sidecar: the audit log's next segment is a
//! symlink to `/dev/full`, so its writes fail with ENOSPC from the kernel.
//! The proxy must keep answering every request, the errors must be counted
//! and fire the `audit.write_errors` alert; once the disk has room again
//! the writer catches up, the alert resolves and the log verifies.

#![cfg(target_os = "linux")]

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::Full;
use sidewatch::Sidecar;
use sidewatch::audit;

async fn alert_state(sidecar: &Sidecar) -> Option<String> {
    let (_, body) = admin_get(sidecar, "/v1/alerts").await;
    let document: serde_json::Value = serde_json::from_str(&body).ok()?;
    document["alerts"]
        .as_array()?
        .iter()
        .find(|a| a["labels"]["alertname"] == "AuditWriteErrors")
        .and_then(|a| a["state"].as_str().map(str::to_owned))
}

/// Makes `path` a symlink to `/dev/full`, unless the writer has just
/// created that segment itself (then the next one is the trap).
fn plant(path: &std::path::Path) {
    match std::os::unix::fs::symlink("/dev/full", path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => panic!("cannot plant {}: {e}", path.display()),
    }
}

/// Removes the trap at `path`, leaving a real segment alone.
fn unplant(path: &std::path::Path) {
    if path.is_symlink() {
        std::fs::remove_file(path).expect("remove trap");
    }
}

/// Sends one request and requires a prompt 200: auditing never holds a
/// request up, whatever the disk does.
async fn request(sidecar: &Sidecar, i: usize) {
    let started = Instant::now();
    let request = Request::post(format!("http://{}/v2/models/m/infer", sidecar.proxy_addr()))
        .header("x-request-id", format!("req-{i}"))
        .body(Full::new(Bytes::from(format!(
            "{{\"n\":{i},\"pad\":\"{}\"}}",
            "x".repeat(200)
        ))))
        .expect("request");
    let (parts, _) = send(request).await;
    assert_eq!(parts.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "request {i} took {:?}",
        started.elapsed()
    );
}

/// A sidecar auditing to small segments in a fresh directory, with
/// `extra` config, that has written its first [`FIRST`] entries; then every
/// name its next segment can take is made a trap (a 4 KiB segment holds a
/// few records, so the writer rotates into one within a few).
struct FullDisk {
    dir: PathBuf,
    log: PathBuf,
    public: PathBuf,
    sidecar: Sidecar,
    traps: Vec<PathBuf>,
}

const FIRST: usize = 20;

impl FullDisk {
    async fn start(name: &str, extra: &str) -> FullDisk {
        let dir = temp_dir(name);
        let (secret, public) = audit::generate_keys(&dir.join("keys")).expect("keys");
        let log = dir.join("audit");
        let upstream = ok_upstream("{\"outputs\":[]}").await;
        let sidecar = sidecar(
            upstream.addr,
            &format!(
                "{extra}audit:\n  dir: {}\n  signing_key: {}\n  payloads: all\n  fsync: always\n  segment_size: 4KiB\n\
                 \x20 checkpoint: {{ every: 5, interval: 1h }}\n",
                log.display(),
                secret.display()
            ),
        )
        .await;
        for i in 0..FIRST {
            request(&sidecar, i).await;
        }
        let written = poll("the first entries are written", || async {
            let (_, metrics) = admin_get(&sidecar, "/metrics").await;
            sample(&metrics, "sidewatch_audit_records_total").filter(|&n| n >= FIRST as f64)
        })
        .await as u64;
        let traps: Vec<PathBuf> = (written..written + 2_000)
            .map(|seq| log.join(audit::segment::file_name(seq)))
            .collect();
        for trap in &traps {
            plant(trap);
        }
        FullDisk {
            dir,
            log,
            public,
            sidecar,
            traps,
        }
    }
}

/// Room again: the traps are gone (a real segment stays).
fn free(traps: &[PathBuf]) {
    for trap in traps {
        unplant(trap);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fires_the_alert_and_never_stops_the_proxy() {
    let FullDisk {
        dir,
        log,
        public,
        sidecar,
        traps,
    } = FullDisk::start(
        "full-disk",
        "alerts:\n  evaluate_every: 50ms\n  rules:\n\
         \x20   - { name: AuditWriteErrors, signal: audit.write_errors, above: 0, severity: critical }\n\
         \x20 sinks: [{ type: log }]\n",
    )
    .await;
    let mut sent = FIRST;
    let deadline = Instant::now() + DEADLINE;
    while alert_state(&sidecar).await.as_deref() != Some("firing") {
        assert!(Instant::now() < deadline, "the audit alert never fired");
        request(&sidecar, sent).await;
        sent += 1;
    }
    let (_, metrics) = admin_get(&sidecar, "/metrics").await;
    assert!(
        sample(&metrics, "sidewatch_audit_write_errors_total").is_some_and(|n| n >= 1.0),
        "{metrics}"
    );

    // Room again: the writer catches up and the alert resolves.
    free(&traps);
    let stuck = sample(&metrics, "sidewatch_audit_records_total").unwrap_or(0.0);
    let deadline = Instant::now() + DEADLINE;
    loop {
        request(&sidecar, sent).await;
        sent += 1;
        let (_, metrics) = admin_get(&sidecar, "/metrics").await;
        let grew = sample(&metrics, "sidewatch_audit_records_total").is_some_and(|n| n > stuck);
        if grew && alert_state(&sidecar).await.as_deref() == Some("resolved") {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {metrics}");
    }
    let (_, metrics) = admin_get(&sidecar, "/metrics").await;
    sidecar.shutdown().await;

    let key = audit::load_verifying_key(&public).expect("public key");
    let summary = audit::verify(&log, &key, &[]).expect("the log verifies after the fault");
    // Entries the writer could not hold during the fault were counted as
    // dropped; everything else is in the log.
    let dropped: u64 = ["feed_queue_full", "writer"]
        .iter()
        .map(|reason| {
            let name = format!("sidewatch_audit_dropped_total{{reason=\"{reason}\"}}");
            sample(&metrics, &name).unwrap_or(0.0) as u64
        })
        .sum();
    assert_eq!(
        summary.entries + dropped,
        sent as u64,
        "every request is in the log or counted as dropped: {summary}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_while_the_disk_is_still_full_finishes_and_counts_the_loss() {
    let FullDisk {
        dir,
        log,
        public,
        sidecar,
        traps,
    } = FullDisk::start("full-disk-shutdown", "").await;
    let mut sent = FIRST;
    let deadline = Instant::now() + DEADLINE;
    loop {
        request(&sidecar, sent).await;
        sent += 1;
        let (_, metrics) = admin_get(&sidecar, "/metrics").await;
        if sample(&metrics, "sidewatch_audit_write_errors_total").is_some_and(|n| n >= 1.0) {
            break;
        }
        assert!(Instant::now() < deadline, "no write error: {metrics}");
    }
    let audit_stats = sidecar.audit().expect("audit on").writer_stats().clone();
    // The disk never recovers: shutdown must still finish, after the
    // writer's last bounded retries.
    tokio::time::timeout(DEADLINE, sidecar.shutdown())
        .await
        .expect("shutdown finishes while the disk is full");
    assert!(
        audit_stats.dropped_total() > 0,
        "the unwritten records are counted"
    );
    // What did get written still verifies as a log that was not closed
    // (with the traps gone: they are not segments).
    free(&traps);
    let key = audit::load_verifying_key(&public).expect("public key");
    assert!(
        audit::verify(&log, &key, &[]).is_err(),
        "no closing checkpoint"
    );
    let summary = audit::verify_live(&log, &key, &[]).expect("the written part verifies");
    assert!(summary.entries >= FIRST as u64, "{summary}");
    let _ = std::fs::remove_dir_all(&dir);
}
