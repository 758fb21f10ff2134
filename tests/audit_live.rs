//! Verifying a live log: while `sidewatch run` is still writing (and after
//! it is SIGKILLed), `audit verify` refuses the log for lacking a closing
//! checkpoint, `audit verify --live` accepts it and says how many records
//! no signature vouches for yet, and a single altered byte in a signed
//! part still fails `--live`.

mod common;

use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::Full;

const BIN: &str = env!("CARGO_BIN_EXE_sidewatch");

fn verify(log: &Path, pubkey: &Path, live: bool) -> (bool, String) {
    let mut command = Command::new(BIN);
    command
        .args(["audit", "verify"])
        .arg(log)
        .arg("--pubkey")
        .arg(pubkey);
    if live {
        command.arg("--live");
    }
    let out = command.output().expect("run verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("copy dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy segment");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_log_verifies_with_live_and_an_altered_byte_still_fails() {
    let dir = temp_dir("audit-live");
    let keys = dir.join("keys");
    let (secret, pubkey) = sidewatch::audit::generate_keys(&keys).expect("keys");
    let log = dir.join("audit");
    let upstream = ok_upstream("{\"outputs\":[]}").await;
    let config = dir.join("sidewatch.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nupstream: http://{}\n\
             audit:\n  dir: {}\n  signing_key: {}\n  fsync: always\n\
             \x20 checkpoint: {{ every: 50, interval: 1h }}\n",
            upstream.addr,
            log.display(),
            secret.display()
        ),
    )
    .expect("write config");
    let mut running = spawn_run(BIN, &["--config", config.to_str().expect("utf-8")]);
    for i in 0..120 {
        let request = Request::post(format!("http://{}/v2/models/m/infer", running.proxy))
            .header("x-request-id", format!("req-{i}"))
            .body(Full::new(Bytes::from_static(b"{}")))
            .expect("request");
        send(request).await;
    }
    let admin = running.admin;
    poll("every entry is durable", || async move {
        sample(
            &metrics_text(admin).await?,
            "sidewatch_audit_durable_records",
        )
        .filter(|&n| n >= 122.0)
    })
    .await;

    let (ok, text) = verify(&log, &pubkey, false);
    assert!(!ok, "a live log has no closing checkpoint: {text}");
    assert!(text.contains("closing checkpoint"), "{text}");
    let (ok, text) = verify(&log, &pubkey, true);
    assert!(ok, "{text}");
    // 120 entries and a checkpoint after every 50 records: the two
    // checkpoints sign 0..=101, the last 20 entries are not signed yet.
    assert!(
        text.contains("122 records (120 entries, 2 checkpoints"),
        "{text}"
    );
    assert!(
        text.contains("the last 20 records are hash-chained but not yet signed"),
        "{text}"
    );

    // One altered byte inside the signed part still fails.
    let copy = dir.join("altered");
    copy_dir(&log, &copy);
    let segment = std::fs::read_dir(&copy)
        .expect("copy")
        .map(|e| e.expect("entry").path())
        .min()
        .expect("a segment");
    let mut bytes = std::fs::read(&segment).expect("read segment");
    let at = bytes
        .windows(6)
        .position(|w| w == b"req-10")
        .expect("an entry of the signed part");
    bytes[at + 4] = b'9';
    std::fs::write(&segment, bytes).expect("write segment");
    let (ok, text) = verify(&copy, &pubkey, true);
    assert!(!ok, "an altered record passed --live: {text}");

    // A frame cut short at the end (a write in progress) is accepted as
    // such by --live, and named.
    let cut = dir.join("cut");
    copy_dir(&log, &cut);
    let last = std::fs::read_dir(&cut)
        .expect("cut")
        .map(|e| e.expect("entry").path())
        .max()
        .expect("a segment");
    let len = std::fs::metadata(&last).expect("metadata").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&last)
        .and_then(|f| f.set_len(len - 7))
        .expect("truncate");
    let (ok, text) = verify(&cut, &pubkey, true);
    assert!(ok, "{text}");
    assert!(text.contains("ends in a partial frame"), "{text}");
    assert!(!verify(&cut, &pubkey, false).0);

    // A crashed writer leaves a log that still verifies as live.
    running.child.kill().expect("SIGKILL");
    let _ = running.child.wait();
    let (ok, text) = verify(&log, &pubkey, true);
    assert!(ok, "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
