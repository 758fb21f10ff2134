//! The admin port: Prometheus metrics that promtool accepts, health and
//! readiness that follow the upstream, and latency statistics.

mod common;

use std::io::Write;
use std::process::Command;

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::Full;

async fn traffic(sidecar: &sidewatch::Sidecar, path: &str, n: usize) {
    for _ in 0..n {
        let (parts, _) = send(
            Request::post(format!("http://{}{path}", sidecar.proxy_addr()))
                .body(Full::new(Bytes::from_static(b"{}")))
                .expect("request"),
        )
        .await;
        assert!(parts.status.is_success() || parts.status.is_server_error());
    }
}

#[tokio::test]
async fn metrics_pass_promtool_and_carry_the_documented_names() {
    let upstream = ok_upstream("{}").await;
    let sidecar = sidecar(upstream.addr, "models: [{ name: iris }]\n").await;
    traffic(&sidecar, "/v2/models/iris/infer", 5).await;
    traffic(&sidecar, "/v2/models/unconfigured/infer", 2).await;
    let (status, metrics) = admin_get(&sidecar, "/metrics").await;
    assert_eq!(status, 200);
    for expected in [
        "sidewatch_requests_total{model=\"iris\",code=\"200\"} 5",
        "sidewatch_requests_total{model=\"unknown\",code=\"200\"} 2",
        "sidewatch_request_duration_seconds_count 7",
        "sidewatch_upstream_duration_seconds_count 7",
        "sidewatch_proxy_overhead_seconds_bucket{le=\"+Inf\"} 7",
        "sidewatch_request_duration_seconds_bucket{le=\"60\"} 7",
        "sidewatch_request_duration_seconds_bucket{le=\"1e-05\"} 0",
        "sidewatch_mirror_queue_depth ",
        "sidewatch_mirror_dropped_total{reason=\"queue_full\"} 0",
        &format!(
            "sidewatch_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        ),
    ] {
        assert!(
            metrics.contains(expected),
            "{expected:?} missing from\n{metrics}"
        );
    }
    assert!(
        !metrics.contains("unconfigured"),
        "model label must stay bounded"
    );

    let promtool = which("promtool").unwrap_or_else(|| {
        panic!(
            "promtool is not installed: scripts/test installs it from Debian's prometheus package"
        )
    });
    let mut file = tempfile("metrics.prom");
    file.1.write_all(metrics.as_bytes()).expect("write metrics");
    let output = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file.0).expect("open metrics"))
        .output()
        .expect("run promtool");
    assert!(
        output.status.success(),
        "promtool rejected /metrics:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    sidecar.shutdown().await;
}

fn which(tool: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| std::path::Path::new(dir).join(tool))
        .find(|path| path.is_file())
}

fn tempfile(name: &str) -> (std::path::PathBuf, std::fs::File) {
    let dir = std::env::temp_dir().join(format!(
        "sidewatch-test-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    let file = std::fs::File::create(&path).expect("temp file");
    (path, file)
}

#[tokio::test]
async fn readyz_follows_the_upstream_health_path() {
    let healthy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = healthy.clone();
    let upstream = upstream(move |received| {
        let ok = flag.load(std::sync::atomic::Ordering::Relaxed);
        async move {
            let status = if received.uri.path() == "/v2/health/ready" && ok {
                200
            } else {
                503
            };
            Response::builder()
                .status(status)
                .body(full(""))
                .expect("response")
        }
    })
    .await;
    let sidecar = sidecar(upstream.addr, "").await;
    let (status, body) = admin_get(&sidecar, "/readyz").await;
    assert_eq!(status, 200, "{body}");

    healthy.store(false, std::sync::atomic::Ordering::Relaxed);
    let (status, body) = admin_get(&sidecar, "/readyz").await;
    assert_eq!(status, 503);
    let json: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(json["kind"], "upstream_not_ready");
    assert!(
        json["error"].as_str().is_some_and(|e| e.contains("503")),
        "{json}"
    );

    let (status, _) = admin_get(&sidecar, "/healthz").await;
    assert_eq!(status, 200, "liveness does not depend on the upstream");
    sidecar.shutdown().await;

    let down = sidecar_with_health(closed_port().await, "/custom/health").await;
    let (status, body) = admin_get(&down, "/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("/custom/health"), "{body}");
    down.shutdown().await;
}

async fn sidecar_with_health(upstream: std::net::SocketAddr, path: &str) -> sidewatch::Sidecar {
    sidecar(upstream, &format!("health_path: {path}\n")).await
}

#[tokio::test]
async fn stats_report_latency_quantiles_and_mirror_counts() {
    let upstream = ok_upstream("{}").await;
    let sidecar = sidecar(upstream.addr, "").await;
    traffic(&sidecar, "/x", 20).await;
    // A proxy thread hands its exchanges to the mirror in batches, when it
    // is about to idle: the last one may be offered just after the client
    // has its response.
    let stats = poll("the mirror was offered every exchange", || async {
        let (status, body) = admin_get(&sidecar, "/v1/stats").await;
        assert_eq!(status, 200);
        let stats: serde_json::Value = serde_json::from_str(&body).expect("json");
        (stats["mirror"]["offered"] == 20).then_some(stats)
    })
    .await;
    assert_eq!(stats["requests"], 20);
    for series in ["request", "upstream", "overhead"] {
        let s = &stats["latency_seconds"][series];
        assert_eq!(s["count"], 20, "{series}: {s}");
        let q = |k: &str| s[k].as_f64().unwrap_or(-1.0);
        assert!(
            q("p50") > 0.0
                && q("p50") <= q("p90")
                && q("p90") <= q("p99")
                && q("p99") <= q("p999")
                && q("p999") <= q("max") * 1.001,
            "{series}: {s}"
        );
    }
    let request_p50 = stats["latency_seconds"]["request"]["p50"]
        .as_f64()
        .unwrap_or(0.0);
    let overhead_p50 = stats["latency_seconds"]["overhead"]["p50"]
        .as_f64()
        .unwrap_or(1.0);
    assert!(
        overhead_p50 <= request_p50,
        "overhead is part of the request"
    );
    assert_eq!(stats["mirror"]["enabled"], true);
    assert_eq!(stats["mirror"]["offered"], 20);
    assert_eq!(stats["mirror"]["dropped"]["queue_full"], 0);

    let (status, body) = admin_get(&sidecar, "/nope").await;
    assert_eq!(status, 404);
    assert!(body.contains("\"kind\":\"not_found\""), "{body}");
    sidecar.shutdown().await;
}
