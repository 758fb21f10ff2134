//! Crash safety of the audit log through the real binary: twenty times,
//! `sidewatch run` with `audit.fsync: always` is SIGKILLed while eight
//! clients keep it writing. Before each kill the test reads how many
//! records the writer has reported durable (`sidewatch_audit_durable_records`
//! on `/metrics`); the binary is then restarted (it cuts any torn tail and
//! records the recovery) and stopped cleanly, and `sidewatch audit verify`
//! must pass with at least that many records in the chain, so nothing that
//! was reported durable went missing; and the log itself records each of
//! the twenty unclean stops.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::Full;

const BIN: &str = env!("CARGO_BIN_EXE_sidewatch");
const KILLS: usize = 20;
const CLIENTS: usize = 8;
/// Records written between kills at least, so every kill lands in the
/// middle of steady writing.
const RECORDS_PER_ROUND: f64 = 150.0;

fn sidewatch(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run sidewatch")
}

/// Clients that POST 1 KiB JSON bodies through `proxy` until `stop`;
/// failures (the proxy being killed) are expected and ignored.
fn load(proxy: std::net::SocketAddr, stop: &Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<()>> {
    (0..CLIENTS)
        .map(|c| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let client = http1_client::<Full<Bytes>>();
                let body = Bytes::from(format!(
                    "{{\"client\":{c},\"data\":\"{}\"}}",
                    "x".repeat(1000)
                ));
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let Ok(request) = Request::post(format!("http://{proxy}/v2/models/m/infer"))
                        .header("x-request-id", format!("c{c}-{i}"))
                        .body(Full::new(body.clone()))
                    else {
                        return;
                    };
                    let sent = tokio::time::timeout(DEADLINE, client.request(request)).await;
                    if !matches!(sent, Ok(Ok(_))) {
                        // Killed: wait for the test to stop the round.
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect()
}

fn verify(log: &Path, pubkey: &Path) -> String {
    let out = sidewatch(&[
        "audit",
        "verify",
        log.to_str().expect("utf-8"),
        "--pubkey",
        pubkey.to_str().expect("utf-8"),
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "verify failed: {text}");
    text
}

/// The record count in verify's summary (`intact: N records ...`).
fn records(summary: &str) -> u64 {
    summary
        .split("intact: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no record count in {summary:?}"))
}

async fn stop_cleanly(mut running: Running) {
    let kill = Command::new("kill")
        .args(["-TERM", &running.child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(kill.success());
    let status = tokio::task::spawn_blocking(move || running.child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert_eq!(status.code(), Some(0), "clean stop: {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_heavy_writes_loses_no_durable_record() {
    let dir = temp_dir("audit-crash");
    let keys = dir.join("keys");
    let log = dir.join("audit");
    assert!(
        sidewatch(&["keygen", "--out", keys.to_str().expect("utf-8")])
            .status
            .success()
    );
    let upstream = ok_upstream("{\"outputs\":[]}").await;
    let config = dir.join("sidewatch.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nupstream: http://{}\n\
             audit:\n  dir: {}\n  signing_key: {}\n  fsync: always\n  payloads: all\n\
             \x20 checkpoint: {{ every: 100, interval: 1s }}\n  segment_size: 256KiB\n",
            upstream.addr,
            log.display(),
            keys.join("audit.key").display()
        ),
    )
    .expect("write config");
    let config = config.to_str().expect("utf-8");
    let pubkey = keys.join("audit.pub");

    let mut reported = 0.0;
    let mut previous_records = 0;
    for round in 0..KILLS {
        let mut running = spawn_run(BIN, &["--config", config]);
        let stop = Arc::new(AtomicBool::new(false));
        let clients = load(running.proxy, &stop);
        let admin = running.admin;
        let target = reported + RECORDS_PER_ROUND;
        let durable_now = poll("the writer reports more records durable", || async move {
            sample(
                &metrics_text(admin).await?,
                "sidewatch_audit_durable_records",
            )
            .filter(|&d| d >= target)
        })
        .await;
        // Read once more right before the kill: durable only grows, so
        // this is a lower bound of what is on disk when the signal lands.
        let before_kill = metrics_text(admin)
            .await
            .and_then(|m| sample(&m, "sidewatch_audit_durable_records"))
            .unwrap_or(durable_now);
        running.child.kill().expect("SIGKILL");
        let _ = running.child.wait();
        stop.store(true, Ordering::Relaxed);
        for client in clients {
            let _ = client.await;
        }
        reported = before_kill;

        // Restart: the writer recovers the tail; a clean stop closes the log.
        let restarted = spawn_run(BIN, &["--config", config]);
        stop_cleanly(restarted).await;
        let summary = verify(&log, &pubkey);
        let count = records(&summary);
        assert!(
            count as f64 >= reported,
            "round {round}: {reported} records were reported durable before the kill, \
             the log holds {count}: {summary}"
        );
        assert!(count > previous_records, "round {round}: the chain grew");
        previous_records = count;
    }
    let summary = verify(&log, &pubkey);
    // Every kill left the log unclosed, and each restart said so in it.
    assert!(
        summary.contains(&format!(" {KILLS} unclean stops")),
        "{summary}"
    );
    eprintln!("after {KILLS} kills: {summary}");
    let _ = std::fs::remove_dir_all(&dir);
}
