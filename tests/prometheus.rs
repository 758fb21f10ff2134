//! A real Prometheus scraping two sidewatch replicas: the per-bin counters
//! and baseline ratios let PromQL compute drift for the whole fleet. PSI
//! computed by Prometheus over both replicas equals PSI over the pooled
//! traffic, and the shipped recording rules (deploy/prometheus) evaluate.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::Full;
use sidewatch::Sidecar;
use sidewatch::baseline::{self, BaselineBuilder, BuildOptions, FeatureKind, LineageInputs};
use sidewatch::detect::drift;
use sidewatch::observation::FeatureValue;

const RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/prometheus/sidewatch.rules.yml"
);

fn normal(rng: &mut fastrand::Rng) -> f64 {
    let (u, v) = (rng.f64().max(f64::MIN_POSITIVE), rng.f64());
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

async fn start_prometheus(dir: &Path, targets: &[SocketAddr]) -> Daemon {
    let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\nrule_files: ['{RULES}']\n\
             scrape_configs:\n  - job_name: sidewatch\n    static_configs: [{{ targets: [{}] }}]\n",
            targets.join(", ")
        ),
    )
    .expect("write prometheus.yml");
    let args = [
        format!("--config.file={}", config.display()),
        format!("--storage.tsdb.path={}", dir.join("data").display()),
    ];
    start_daemon(&tool("prometheus", "prometheus"), &args).await
}

/// Runs an instant query and returns `(labels, value)` per series.
async fn query(prometheus: &Daemon, promql: &str) -> Vec<(serde_json::Value, f64)> {
    let encoded: String = promql
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let uri = format!("http://{}/api/v1/query?query={encoded}", prometheus.addr);
    let (parts, body) = send(
        Request::get(uri)
            .body(Full::new(Bytes::new()))
            .expect("request"),
    )
    .await;
    assert_eq!(parts.status, 200, "{}", String::from_utf8_lossy(&body));
    let answer: serde_json::Value = serde_json::from_slice(&body).expect("json");
    answer["data"]["result"]
        .as_array()
        .map(|series| {
            series
                .iter()
                .filter_map(|s| Some((s["metric"].clone(), s["value"][1].as_str()?.parse().ok()?)))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_computes_fleet_psi_from_the_bin_counters() {
    let dir = std::env::temp_dir().join(format!(
        "sidewatch-prom-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");

    // A baseline of two standard-normal features.
    let features = vec![
        ("a".to_owned(), FeatureKind::Numeric),
        ("b".to_owned(), FeatureKind::Numeric),
    ];
    let mut builder = BaselineBuilder::new("m", features, BuildOptions::default());
    let mut rng = fastrand::Rng::with_seed(3);
    for _ in 0..5000 {
        builder.add_row(
            &[
                FeatureValue::Number(normal(&mut rng)),
                FeatureValue::Number(normal(&mut rng)),
            ],
            None,
        );
    }
    let baseline = builder
        .finish(LineageInputs::live(5000, std::time::SystemTime::now()))
        .expect("baseline");
    let baseline_path = dir.join("m.baseline.json");
    baseline.save(&baseline_path).expect("save");

    let upstream = upstream(|_| async move {
        Response::new(full(
            r#"{"outputs":[{"name":"p","shape":[1,2],"datatype":"FP32","data":[0.3,0.7]}]}"#,
        ))
    })
    .await;
    let extra = format!(
        "models: [{{ name: m, protocol: kserve_v2, features: [a, b], baseline: {} }}]\n",
        baseline_path.display()
    );
    let replicas = [
        Sidecar::start_monitoring(&config(upstream.addr, &extra))
            .await
            .expect("replica 1"),
        Sidecar::start_monitoring(&config(upstream.addr, &extra))
            .await
            .expect("replica 2"),
    ];
    let prometheus =
        start_prometheus(&dir, &[replicas[0].admin_addr(), replicas[1].admin_addr()]).await;

    // increase() needs a sample from before the traffic, as a real fleet
    // has from its first scrape.
    wait_until("Prometheus has scraped both idle replicas", || async {
        let scraped = query(&prometheus, "count(sidewatch_feature_bin_total == 0)").await;
        scraped.first().map(|s| s.1) == Some(40.0)
    })
    .await;

    // Replica 1 sees the baseline's distribution, replica 2 a shifted `a`.
    let mut pooled = [vec![0u64; 10], vec![0u64; 10]];
    for (replica, shift) in replicas.iter().zip([0.0, 1.0]) {
        for _ in 0..300 {
            let row = [normal(&mut rng) + shift, normal(&mut rng)];
            for (f, x) in row.iter().enumerate() {
                let edges = &baseline.features[f]
                    .numeric
                    .as_ref()
                    .expect("numeric")
                    .edges;
                let bin = baseline::bin_index(edges, *x).expect("finite");
                pooled[f].resize(edges.len() + 1, 0);
                pooled[f][bin] += 1;
            }
            let body = format!(
                r#"{{"inputs":[{{"name":"x","shape":[1,2],"datatype":"FP64","data":[{},{}]}}]}}"#,
                row[0], row[1]
            );
            let (parts, _) = send(
                Request::post(format!("http://{}/v2/models/m/infer", replica.proxy_addr()))
                    .body(Full::new(Bytes::from(body)))
                    .expect("request"),
            )
            .await;
            assert_eq!(parts.status, 200);
        }
    }

    wait_until("Prometheus has scraped all 600 observations", || async {
        query(&prometheus, "sum(sidewatch_observations_total)")
            .await
            .first()
            .map(|s| s.1)
            == Some(600.0)
    })
    .await;
    wait_until("Prometheus has scraped every bin count", || async {
        query(&prometheus, "sum(sidewatch_feature_bin_total)")
            .await
            .first()
            .map(|s| s.1)
            == Some(1200.0)
    })
    .await;

    let share = "sum by (model, feature, bin) (sidewatch_feature_bin_total) / on (model, feature) group_left sum by (model, feature) (sidewatch_feature_bin_total)";
    let reference = "max by (model, feature, bin) (sidewatch_baseline_bin_ratio)";
    let fleet_psi = format!(
        "sum by (feature) ((clamp_min({share}, 0.0001) - on (model, feature, bin) group_left clamp_min({reference}, 0.0001)) \
         * ln(clamp_min({share}, 0.0001) / on (model, feature, bin) group_left clamp_min({reference}, 0.0001)))"
    );
    let from_prometheus = query(&prometheus, &fleet_psi).await;
    assert_eq!(from_prometheus.len(), 2, "{from_prometheus:?}");
    for (labels, value) in from_prometheus {
        let feature = labels["feature"].as_str().expect("feature label");
        let f = if feature == "a" { 0 } else { 1 };
        let proportions =
            drift::proportions(&pooled[f].iter().map(|&n| n as f64).collect::<Vec<_>>())
                .expect("proportions");
        let reference = &baseline.features[f]
            .numeric
            .as_ref()
            .expect("numeric")
            .proportions;
        let expected = drift::psi(reference, &proportions).expect("psi");
        assert!(
            (value - expected).abs() < 1e-9,
            "{feature}: Prometheus {value} vs pooled {expected}"
        );
        if feature == "a" {
            assert!(
                value > 0.1,
                "the shifted half of the fleet shows in fleet PSI: {value}"
            );
        }
    }

    // The shipped recording rules evaluate on the same data. Their first
    // evaluations ran before any traffic (0/0: NaN), and later ones may have
    // seen only part of it, so wait for an evaluation made after the last
    // scrape checked above.
    let scraped_all = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64();
    wait_until("the fleet PSI recording rule has values", || async {
        let recorded = query(&prometheus, "sidewatch:fleet_psi:10m").await;
        let evaluated = query(&prometheus, "min(timestamp(sidewatch:fleet_psi:10m))").await;
        recorded.len() == 2
            && recorded.iter().all(|(_, v)| v.is_finite())
            && evaluated.first().is_some_and(|s| s.1 > scraped_all + 1.0)
    })
    .await;
    let recorded = query(&prometheus, "sidewatch:fleet_psi:10m").await;
    let psi = |f: &str| {
        recorded
            .iter()
            .find(|(l, _)| l["feature"] == f)
            .map_or(f64::NAN, |s| s.1)
    };
    assert!(psi("a") > psi("b"), "recorded fleet PSI: {recorded:?}");

    for replica in replicas {
        replica.shutdown().await;
    }
}

#[test]
fn the_shipped_rules_pass_promtool() {
    let output = Command::new(tool("promtool", "prometheus"))
        .args(["check", "rules", RULES])
        .output()
        .expect("promtool");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
