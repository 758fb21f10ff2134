//! Alerts end to end: a real Alertmanager (Debian's prometheus-alertmanager)
//! receives an alert from a sidecar whose upstream starts failing, with the
//! rule's labels and annotations, and sees it resolve once the upstream
//! recovers. A webhook receiver gets signed bodies it can verify.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::Full;
use sidewatch::alert::config::Secret;
use sidewatch::alert::sink::{SIGNATURE_HEADER, TIMESTAMP_HEADER, verify};

async fn start_alertmanager(dir: &Path) -> Daemon {
    let config = dir.join("alertmanager.yml");
    std::fs::write(
        &config,
        "route: { receiver: sink, group_wait: 1s, group_interval: 1s, repeat_interval: 1h }\n\
         receivers: [{ name: sink }]\n",
    )
    .expect("write alertmanager.yml");
    let args = [
        format!("--config.file={}", config.display()),
        format!("--storage.path={}", dir.join("data").display()),
        // No gossip port: a single instance on loopback.
        "--cluster.listen-address=".to_owned(),
    ];
    start_daemon(
        &tool("prometheus-alertmanager", "prometheus-alertmanager"),
        &args,
    )
    .await
}

/// Alertmanager's current (unresolved) alerts named `alertname`.
async fn active_alerts(alertmanager: &Daemon, alertname: &str) -> Vec<serde_json::Value> {
    let uri = format!("http://{}/api/v2/alerts", alertmanager.addr);
    let (parts, body) = send(
        Request::get(uri)
            .body(Full::new(Bytes::new()))
            .expect("request"),
    )
    .await;
    assert_eq!(parts.status, 200, "{}", String::from_utf8_lossy(&body));
    let alerts: Vec<serde_json::Value> = serde_json::from_slice(&body).expect("alerts json");
    alerts
        .into_iter()
        .filter(|a| a["labels"]["alertname"] == alertname)
        .collect()
}

/// An upstream answering 500 while `failing` is set, 200 otherwise.
async fn flaky_upstream(failing: Arc<AtomicBool>) -> Upstream {
    upstream(move |_| {
        let failing = failing.clone();
        async move {
            let status = if failing.load(Ordering::Relaxed) {
                500
            } else {
                200
            };
            Response::builder()
                .status(status)
                .body(full("{}"))
                .expect("static response")
        }
    })
    .await
}

async fn request_through(proxy: SocketAddr) -> u16 {
    let request = Request::post(format!("http://{proxy}/v2/models/m/infer"))
        .body(Full::new(Bytes::from_static(b"{}")))
        .expect("request");
    send(request).await.0.status.as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_error_alert_reaches_alertmanager_and_resolves() {
    let dir = std::env::temp_dir().join(format!("sidewatch-am-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let alertmanager = start_alertmanager(&dir).await;
    let failing = Arc::new(AtomicBool::new(true));
    let upstream = flaky_upstream(failing.clone()).await;
    let sidecar = sidecar(
        upstream.addr,
        &format!(
            "alerts:\n  evaluate_every: 100ms\n  resend_every: 1s\n  rules:\n\
             \x20   - name: UpstreamErrors\n      signal: upstream.error_rate\n      above: 0.5\n      resolve_below: 0.1\n\
             \x20     severity: critical\n      labels: {{ team: ml }}\n\
             \x20     annotations: {{ summary: \"upstream errors at {{{{ value }}}}\", runbook_url: \"https://runbooks/upstream\" }}\n\
             \x20 sinks:\n    - {{ type: alertmanager, url: \"http://{}\" }}\n    - {{ type: log }}\n",
            alertmanager.addr
        ),
    )
    .await;

    let fired = poll("the alert is active in Alertmanager", || async {
        assert_eq!(request_through(sidecar.proxy_addr()).await, 500);
        active_alerts(&alertmanager, "UpstreamErrors").await.pop()
    })
    .await;
    assert_eq!(fired["labels"]["severity"], "critical");
    assert_eq!(fired["labels"]["team"], "ml");
    assert_eq!(fired["annotations"]["summary"], "upstream errors at 1");
    assert_eq!(
        fired["annotations"]["runbook_url"],
        "https://runbooks/upstream"
    );
    assert_eq!(
        fired["generatorURL"],
        format!("http://{}/v1/alerts", sidecar.admin_addr())
    );
    assert_eq!(fired["status"]["state"], "active");
    let (status, alerts) = admin_get(&sidecar, "/v1/alerts").await;
    assert_eq!(status, 200);
    assert!(alerts.contains("\"UpstreamErrors\""), "{alerts}");
    let (_, metrics) = admin_get(&sidecar, "/metrics").await;
    assert!(
        metrics
            .contains("sidewatch_alert_notifications_total{sink=\"alertmanager\",result=\"sent\"}"),
        "{metrics}"
    );

    failing.store(false, Ordering::Relaxed);
    wait_until("the alert is resolved in Alertmanager", || async {
        assert_eq!(request_through(sidecar.proxy_addr()).await, 200);
        active_alerts(&alertmanager, "UpstreamErrors")
            .await
            .is_empty()
    })
    .await;
    let (_, alerts) = admin_get(&sidecar, "/v1/alerts").await;
    let document: serde_json::Value = serde_json::from_str(&alerts).expect("json");
    let ours: Vec<&serde_json::Value> = document["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .filter(|a| a["labels"]["alertname"] == "UpstreamErrors")
        .collect();
    assert!(!ours.is_empty());
    assert!(ours.iter().all(|a| a["state"] == "resolved"), "{alerts}");
    let (_, metrics) = admin_get(&sidecar, "/metrics").await;
    assert!(
        metrics.contains(
            "sidewatch_alerts_firing{alertname=\"UpstreamErrors\",severity=\"critical\"} 0"
        ),
        "{metrics}"
    );
    sidecar.shutdown().await;
    drop(alertmanager);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_notifications_are_signed_and_sent_once_per_transition() {
    let dir = std::env::temp_dir().join(format!("sidewatch-hook-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let secret_file = dir.join("hook.secret");
    std::fs::write(&secret_file, "a-webhook-secret-of-32-bytes-len\n").expect("secret");
    let mut receiver = ok_upstream("ok").await;
    let failing = Arc::new(AtomicBool::new(true));
    let upstream = flaky_upstream(failing.clone()).await;
    let sidecar = sidecar(
        upstream.addr,
        &format!(
            "alerts:\n  evaluate_every: 100ms\n  resend_every: 100ms\n  rules:\n\
             \x20   - {{ name: UpstreamErrors, signal: upstream.error_rate, above: 0.5 }}\n\
             \x20 sinks:\n    - {{ type: webhook, url: \"http://{}/hook\", secret_file: \"{}\" }}\n",
            receiver.addr,
            secret_file.display()
        ),
    )
    .await;
    // Errors until the webhook hears of it.
    let deadline = std::time::Instant::now() + DEADLINE;
    let first = loop {
        request_through(sidecar.proxy_addr()).await;
        if let Ok(received) = receiver.received.try_recv() {
            break received;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until the webhook receives the firing alert"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let secret = Secret(b"a-webhook-secret-of-32-bytes-len".to_vec());
    let header = |name: &str| first.headers[name].to_str().expect("ascii").to_owned();
    assert!(verify(
        &secret,
        &header(TIMESTAMP_HEADER),
        &header(SIGNATURE_HEADER),
        &first.body,
        now,
        Duration::from_secs(300)
    ));
    let body: serde_json::Value = serde_json::from_slice(&first.body).expect("json");
    assert_eq!(body["status"], "firing");
    assert_eq!(body["alert"]["labels"]["alertname"], "UpstreamErrors");
    // The next call is the resolution, not a repeat of "firing", even though
    // the resend interval passes several times while it fires.
    let second = next_received(&mut receiver).await;
    let body: serde_json::Value = serde_json::from_slice(&second.body).expect("json");
    assert_eq!(body["status"], "resolved");
    sidecar.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
