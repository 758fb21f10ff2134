//! The audit log fed by the real proxy: every exchange becomes one entry,
//! joined with the detectors' verdicts on its rows, naming the alerts that
//! fire, with flagged payloads redacted, and the log verifies afterwards.
//!
//! A sidecar watches model `m` (three features, a seeded baseline) behind
//! an in-process KServe v2 server. Steady requests of two in-distribution
//! rows each, a few with one row twelve standard deviations out, a health
//! check (no rows), and a request carrying the client's `traceparent` go
//! through it. Every request carries a secret under `/parameters/api_key`,
//! which `audit.redact` must keep out of the log. An alert on
//! `latency.p99 > 0` fires after the first requests, so the entries written
//! after it name its fingerprint.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::Full;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sidewatch::Sidecar;
use sidewatch::baseline::{BaselineBuilder, BuildOptions, FeatureKind, LineageInputs};
use sidewatch::observation::FeatureValue;

const MEANS: [f64; 3] = [5.0, 3.0, 10.0];
const STDS: [f64; 3] = [2.0, 0.5, 1.0];
const STEADY: usize = 300;
const OUTLIERS: usize = 4;
const AFTER_ALERT: usize = 20;
/// Pairs of concurrent requests sharing one request id.
const TWINS: usize = 20;
const SECRET: &str = "sk-do-not-log-me";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn normal(rng: &mut fastrand::Rng) -> f64 {
    let (u, v) = (1.0 - rng.f64(), rng.f64());
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// A row near the means: within 2.5 σ on every feature, so no detector
/// has reason to flag it.
fn steady_row(rng: &mut fastrand::Rng) -> [f64; 3] {
    std::array::from_fn(|i| MEANS[i] + STDS[i] * normal(rng).clamp(-2.5, 2.5) * 0.5)
}

fn build_baseline(dir: &Path) -> PathBuf {
    let features = ["x1", "x2", "x3"]
        .iter()
        .map(|f| (f.to_string(), FeatureKind::Numeric))
        .collect();
    let mut builder = BaselineBuilder::new("m", features, BuildOptions::default());
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..5_000 {
        let row: [f64; 3] = std::array::from_fn(|i| MEANS[i] + STDS[i] * normal(&mut rng));
        builder.add_row(&row.map(FeatureValue::Number), None);
    }
    let baseline = builder
        .finish(LineageInputs::live(5_000, std::time::SystemTime::now()))
        .expect("baseline builds");
    let path = dir.join("m.baseline.json");
    baseline.save(&path).expect("save baseline");
    path
}

/// A KServe v2 server answering every row with the same probabilities and
/// echoing the request id in its body, so response bodies differ.
async fn model_server() -> Upstream {
    upstream(|received| async move {
        let request: Value = serde_json::from_slice(&received.body).unwrap_or_default();
        let rows = request["inputs"][0]["shape"][0].as_u64().unwrap_or(0) as usize;
        let body = json!({
            "model_name": "m",
            "id": request["id"],
            "outputs": [{
                "name": "probabilities",
                "shape": [rows, 3],
                "datatype": "FP64",
                "data": ([0.96, 0.03, 0.01]).repeat(rows),
            }],
        });
        Response::builder()
            .header("content-type", "application/json")
            .body(full(body.to_string()))
            .expect("response")
    })
    .await
}

/// What the test sent and got back for one request id.
struct Sent {
    request: Bytes,
    response: Bytes,
    status: u16,
}

async fn infer(sidecar: &Sidecar, id: &str, rows: &[[f64; 3]], traceparent: Option<&str>) -> Sent {
    let body = json!({
        "id": id,
        "parameters": { "api_key": SECRET },
        "inputs": [{
            "name": "input",
            "shape": [rows.len(), 3],
            "datatype": "FP64",
            "data": rows.concat(),
        }],
    });
    let request = Bytes::from(body.to_string());
    let mut builder = Request::post(format!("http://{}/v2/models/m/infer", sidecar.proxy_addr()))
        .header("content-type", "application/json")
        .header("x-request-id", id);
    if let Some(traceparent) = traceparent {
        builder = builder.header("traceparent", traceparent);
    }
    let (parts, response) = send(builder.body(Full::new(request.clone())).expect("request")).await;
    Sent {
        request,
        response,
        status: parts.status.as_u16(),
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn sidewatch(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sidewatch"))
        .args(args)
        .output()
        .expect("run sidewatch")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_exchange_becomes_one_verified_entry_with_its_verdicts_and_alerts() {
    let dir = temp_dir("audit-pipeline");
    let baseline = build_baseline(&dir);
    let keys = dir.join("keys");
    let status = sidewatch(&["keygen", "--out", keys.to_str().expect("utf-8 path")]);
    assert!(status.status.success(), "{status:?}");
    let log = dir.join("audit");
    let model = model_server().await;
    let extra = format!(
        "models: [{{ name: m, protocol: kserve_v2, features: [x1, x2, x3], baseline: {baseline} }}]\n\
         anomaly: {{ zscore: 6 }}\n\
         mirror: {{ workers: 2 }}\n\
         alerts:\n  evaluate_every: 50ms\n  rules:\n\
         \x20   - {{ name: AnyLatency, signal: latency.p99, above: 0, severity: info }}\n\
         \x20 sinks: [{{ type: log }}]\n\
         audit:\n  dir: {log}\n  payloads: flagged\n  redact: [/parameters/api_key]\n\
         \x20 signing_key: {key}\n  checkpoint: {{ every: 50, interval: 1s }}\n  segment_size: 64KiB\n",
        baseline = baseline.display(),
        log = log.display(),
        key = keys.join("audit.key").display(),
    );
    let sidecar = Sidecar::start_monitoring(&config(model.addr, &extra))
        .await
        .expect("sidecar");

    let mut sent: HashMap<String, Sent> = HashMap::new();
    let mut rng = fastrand::Rng::with_seed(8);
    let mut outliers = Vec::new();
    for i in 0..STEADY {
        let id = format!("steady-{i}");
        let rows = [steady_row(&mut rng), steady_row(&mut rng)];
        sent.insert(id.clone(), infer(&sidecar, &id, &rows, None).await);
        if i % (STEADY / OUTLIERS) == 0 {
            let id = format!("outlier-{i}");
            let mut far = steady_row(&mut rng);
            far[2] = MEANS[2] + 12.0 * STDS[2];
            sent.insert(id.clone(), infer(&sidecar, &id, &[far], None).await);
            outliers.push(id);
        }
    }
    // Clients choose request ids: pairs of concurrent requests share one,
    // an outlier and an ordinary row. Each entry must carry its own
    // exchange's verdict, whichever of the four messages reaches the feed
    // first.
    let mut twins: Vec<(String, Bytes, Bytes)> = Vec::new();
    for k in 0..TWINS {
        let id = format!("twin-{k}");
        let mut far = steady_row(&mut rng);
        far[2] = MEANS[2] + 12.0 * STDS[2];
        let (far, near) = ([far], [steady_row(&mut rng)]);
        let (flagged, plain) = tokio::join!(
            infer(&sidecar, &id, &far, None),
            infer(&sidecar, &id, &near, None)
        );
        twins.push((id, flagged.request, plain.request));
    }
    let traceparent = format!("00-{TRACE_ID}-00f067aa0ba902b7-01");
    sent.insert(
        "traced".into(),
        infer(&sidecar, "traced", &[MEANS], Some(&traceparent)).await,
    );
    let health = Request::get(format!("http://{}/v2/health/ready", sidecar.proxy_addr()))
        .header("x-request-id", "health")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let (parts, body) = send(health).await;
    sent.insert(
        "health".into(),
        Sent {
            request: Bytes::new(),
            response: body,
            status: parts.status.as_u16(),
        },
    );

    // Entries written from now on name the alert.
    let fingerprint = poll("the latency alert fires", || async {
        let (_, body) = admin_get(&sidecar, "/v1/alerts").await;
        let document: Value = serde_json::from_str(&body).ok()?;
        document["alerts"]
            .as_array()?
            .iter()
            .find(|a| a["state"] == "firing")
            .and_then(|a| a["fingerprint"].as_str().map(str::to_owned))
    })
    .await;
    let before = sent.len();
    wait_until("every entry so far is written", || async {
        let (_, metrics) = admin_get(&sidecar, "/metrics").await;
        // Checkpoints are records too, so at least as many as entries.
        sample(&metrics, "sidewatch_audit_records_total").is_some_and(|n| n >= before as f64)
    })
    .await;
    for i in 0..AFTER_ALERT {
        let id = format!("alerted-{i}");
        let rows = [steady_row(&mut rng)];
        sent.insert(id.clone(), infer(&sidecar, &id, &rows, None).await);
    }
    let (_, metrics) = admin_get(&sidecar, "/metrics").await;
    for line in [
        "sidewatch_audit_write_errors_total 0",
        "sidewatch_audit_dropped_total{reason=\"feed_queue_full\"} 0",
        "sidewatch_audit_dropped_total{reason=\"writer\"} 0",
        "sidewatch_audit_payloads_dropped_total 0",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    let feed = sidecar.audit().expect("audit on").stats().clone();
    sidecar.shutdown().await;
    // Every body held for a payload was given back once its entry was written.
    assert_eq!(feed.payload_bytes_held(), 0);

    let pubkey = keys.join("audit.pub");
    let verified = sidewatch(&[
        "audit",
        "verify",
        log.to_str().expect("utf-8"),
        "--pubkey",
        pubkey.to_str().expect("utf-8"),
    ]);
    assert!(
        verified.status.success(),
        "verify failed: {}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
    let queried = sidewatch(&["audit", "query", log.to_str().expect("utf-8")]);
    assert!(queried.status.success(), "{queried:?}");
    let records: Vec<Value> = String::from_utf8_lossy(&queried.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("query prints JSON lines"))
        .collect();
    let mut entries: HashMap<String, Value> = HashMap::new();
    let mut twin_entries: Vec<Value> = Vec::new();
    for record in &records {
        let Some(entry) = record["body"].get("entry") else {
            continue;
        };
        let id = entry["request_id"].as_str().expect("request id").to_owned();
        if id.starts_with("twin-") {
            twin_entries.push(entry.clone());
            continue;
        }
        assert!(
            entries.insert(id.clone(), entry.clone()).is_none(),
            "{id} was written twice"
        );
    }
    assert_eq!(entries.len(), sent.len(), "one entry per exchange");
    assert_eq!(twin_entries.len(), 2 * TWINS, "both twins of every pair");
    for (id, flagged, plain) in &twins {
        for (body, should_flag) in [(flagged, true), (plain, false)] {
            let entry = twin_entries
                .iter()
                .find(|e| e["request_id"] == id.as_str() && e["request_sha256"] == hex_sha256(body))
                .unwrap_or_else(|| panic!("no entry for a twin {id}"));
            assert_eq!(
                entry["verdicts"]["flagged"], should_flag,
                "{id}: the entry got its own exchange's verdict: {entry}"
            );
        }
    }
    let raw: Vec<u8> = std::fs::read_dir(&log)
        .expect("log dir")
        .flat_map(|e| std::fs::read(e.expect("entry").path()).unwrap_or_default())
        .collect();
    assert!(
        !raw.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
        "the redacted secret reached the disk"
    );

    for (id, exchange) in &sent {
        let entry = &entries[id];
        assert_eq!(entry["status"], exchange.status, "{id}");
        assert_eq!(entry["client"], "127.0.0.1", "{id}");
        assert_eq!(
            entry["request_sha256"],
            hex_sha256(&exchange.request),
            "{id}"
        );
        assert_eq!(
            entry["response_sha256"],
            hex_sha256(&exchange.response),
            "{id}"
        );
        let verdicts = &entry["verdicts"];
        if id == "health" {
            assert_eq!(entry["route"], "GET /v2/health/ready");
            assert_eq!(verdicts["rows"], 0);
            continue;
        }
        assert_eq!(entry["route"], "POST /v2/models/m/infer", "{id}");
        assert_eq!(entry["model"], "m", "{id}");
        let rows = if id.starts_with("steady-") { 2 } else { 1 };
        assert_eq!(verdicts["rows"], rows, "{id}: {entry}");
        assert_eq!(
            verdicts["judged"], rows,
            "{id}: every verdict joined: {entry}"
        );
        let flagged = outliers.contains(id);
        assert_eq!(verdicts["flagged"], flagged, "{id}: {entry}");
        if flagged {
            let anomalies = verdicts["anomalies"].as_array().expect("anomalies");
            assert!(
                anomalies
                    .iter()
                    .any(|a| a["detector"] == "robust_z" && a["features"] == json!(["x3"])),
                "{id}: {entry}"
            );
            // Flagged payloads are kept, minus the redacted pointer.
            let payload = &entry["payload"]["request"];
            assert_eq!(payload["id"], id.as_str(), "{entry}");
            assert!(payload["parameters"].get("api_key").is_none(), "{entry}");
            assert_eq!(entry["payload"]["response"]["id"], id.as_str());
        } else {
            assert!(entry["payload"].is_null(), "{id}: {entry}");
        }
        if id.starts_with("alerted-") {
            assert!(
                entry["alerts"]
                    .as_array()
                    .is_some_and(|a| a.contains(&json!(fingerprint))),
                "{id} does not name the firing alert {fingerprint}: {entry}"
            );
        }
    }
    assert_eq!(entries["traced"]["trace_id"], TRACE_ID);
    assert!(
        entries["steady-0"]["trace_id"]
            .as_str()
            .is_some_and(|t| t.len() == 32)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
