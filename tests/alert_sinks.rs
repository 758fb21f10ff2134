//! Sink delivery: a receiver that fails twice is retried until it accepts,
//! and an unreachable one is given up on after `max_attempts`; both are
//! counted in `sidewatch_alert_notifications_total`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use http::Response;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_receivers_are_retried_then_given_up() {
    let dir = std::env::temp_dir().join(format!("sidewatch-sinks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let secret_file = dir.join("hook.secret");
    std::fs::write(&secret_file, "0123456789abcdef0123").expect("secret");
    // Answers 503 to the first two deliveries, then 200.
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let mut receiver = upstream(move |_| {
        let n = seen.fetch_add(1, Ordering::Relaxed);
        async move {
            let status = if n < 2 { 503 } else { 200 };
            Response::builder()
                .status(status)
                .body(full(""))
                .expect("static response")
        }
    })
    .await;
    let model = ok_upstream("{}").await;
    let nobody = closed_port().await;
    let sidecar = sidecar(
        model.addr,
        &format!(
            "alerts:\n  evaluate_every: 50ms\n  resend_every: 1h\n  rules:\n\
             \x20   - {{ name: Slow, signal: latency.p99, above: 0 }}\n\
             \x20 sinks:\n\
             \x20   - {{ type: webhook, url: \"http://{}/hook\", secret_file: \"{}\", backoff: 10ms, max_attempts: 5 }}\n\
             \x20   - {{ type: alertmanager, url: \"http://{nobody}\", backoff: 10ms, max_attempts: 3, timeout: 1s }}\n",
            receiver.addr,
            secret_file.display()
        ),
    )
    .await;
    // p99 since start stays above 0 after the first request: the alert
    // fires once and stays firing, so exactly one notification goes out.
    let metrics = traffic_until(&sidecar, |m| {
        notifications(m, "webhook", "sent") >= 1 && notifications(m, "alertmanager", "failed") >= 1
    })
    .await;
    assert_eq!(
        notifications(&metrics, "webhook", "retried"),
        2,
        "{metrics}"
    );
    assert_eq!(notifications(&metrics, "webhook", "sent"), 1, "{metrics}");
    assert_eq!(notifications(&metrics, "webhook", "failed"), 0, "{metrics}");
    assert_eq!(
        notifications(&metrics, "alertmanager", "retried"),
        2,
        "{metrics}"
    );
    assert_eq!(
        notifications(&metrics, "alertmanager", "failed"),
        1,
        "{metrics}"
    );
    // The three webhook attempts carried the same notification id.
    let mut ids = Vec::new();
    for _ in 0..3 {
        let received = next_received(&mut receiver).await;
        let body: serde_json::Value = serde_json::from_slice(&received.body).expect("json");
        ids.push(body["id"].as_str().expect("id").to_owned());
    }
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert!(
        metrics.contains("sidewatch_alerts_firing{alertname=\"Slow\",severity=\"warning\"} 1"),
        "{metrics}"
    );
    sidecar.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
