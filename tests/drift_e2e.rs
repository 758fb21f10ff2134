//! End to end: sidewatch in front of an in-process KServe v2 model server.
//! 2,000 requests from the baseline's distribution leave every feature
//! undrifted; 2,000 more with two features shifted make exactly those two
//! drift, in `/v1/drift` and in `/metrics`.
//!
//! The window spans both phases, so the second verdict compares a 50/50
//! mixture with the baseline: a 1σ shift still moves the KS statistic far
//! past any threshold, while unshifted features stay put. alpha is 0.001
//! here so that a chance flag on an unshifted feature (probability alpha
//! per evaluation) cannot make this test flaky; the false-alarm rate at the
//! default alpha is proven by `tests/drift_statistics.rs`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::{BodyExt, Full};
use sidewatch::Sidecar;
use sidewatch::baseline::{BaselineBuilder, BuildOptions, FeatureKind, LineageInputs};
use sidewatch::demo::model::ModelServer;
use sidewatch::observation::FeatureValue;

const FEATURES: [&str; 4] = ["sepal_length", "sepal_width", "petal_length", "petal_width"];
const MEANS: [f64; 4] = [5.8, 3.0, 3.7, 1.2];
const STDS: [f64; 4] = [0.8, 0.4, 1.7, 0.7];

fn normal(rng: &mut fastrand::Rng) -> f64 {
    // Box–Muller: two uniforms give one standard normal.
    let (u, v) = (rng.f64().max(f64::MIN_POSITIVE), rng.f64());
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

fn row(rng: &mut fastrand::Rng, shift_sigmas: [f64; 4]) -> [f64; 4] {
    std::array::from_fn(|i| MEANS[i] + STDS[i] * (normal(rng) + shift_sigmas[i]))
}

fn baseline_file() -> std::path::PathBuf {
    let features = FEATURES
        .iter()
        .map(|f| (f.to_string(), FeatureKind::Numeric))
        .collect();
    let mut builder = BaselineBuilder::new("iris", features, BuildOptions::default());
    let mut rng = fastrand::Rng::with_seed(1);
    for _ in 0..5000 {
        let values: Vec<FeatureValue> = row(&mut rng, [0.0; 4])
            .iter()
            .map(|&x| FeatureValue::Number(x))
            .collect();
        builder.add_row(&values, None);
    }
    let baseline = builder
        .finish(LineageInputs::live(5000, std::time::SystemTime::now()))
        .expect("baseline builds");
    let dir = std::env::temp_dir().join(format!(
        "sidewatch-e2e-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("iris.baseline.json");
    baseline.save(&path).expect("save baseline");
    path
}

async fn send_rows(sidecar: &Sidecar, n: usize, seed: u64, shift: [f64; 4]) {
    let client = http1_client::<Full<Bytes>>();
    let url = format!("http://{}/v2/models/iris/infer", sidecar.proxy_addr());
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..8u64)
        .map(|t| {
            let (client, url, next) = (client.clone(), url.clone(), next.clone());
            tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(seed * 100 + t);
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    let x = row(&mut rng, shift);
                    let body = format!(
                        r#"{{"inputs":[{{"name":"input","shape":[1,4],"datatype":"FP32","data":[{},{},{},{}]}}]}}"#,
                        x[0], x[1], x[2], x[3]
                    );
                    let request = Request::post(&url)
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(body)))
                        .expect("request");
                    let response = tokio::time::timeout(DEADLINE, client.request(request))
                        .await
                        .expect("answer in time")
                        .expect("response");
                    assert_eq!(response.status(), 200);
                    response.into_body().collect().await.expect("body");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("traffic task");
    }
}

async fn drift(sidecar: &Sidecar) -> serde_json::Value {
    let (status, body) = admin_get(sidecar, "/v1/drift").await;
    assert_eq!(status, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    report["models"][0].clone()
}

/// Waits for an evaluation that covers at least `count` observations.
async fn evaluated(sidecar: &Sidecar, count: u64) -> serde_json::Value {
    wait_until(
        &format!("an evaluation over {count} observations"),
        || async { drift(sidecar).await["window_count"].as_u64().unwrap_or(0) >= count },
    )
    .await;
    drift(sidecar).await
}

fn drifted(model: &serde_json::Value) -> Vec<String> {
    model["features"]
        .as_array()
        .map(|features| {
            features
                .iter()
                .filter(|f| f["drifted"] == true)
                .filter_map(|f| f["feature"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shifted_features_drift_and_nothing_else_does() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind model");
    let model = ModelServer::start(listener).expect("model server");
    let baseline = baseline_file();
    let extra = format!(
        "models:\n  - name: iris\n    protocol: kserve_v2\n    features: [{}]\n    baseline: {}\n\
         drift: {{ window: 10m, step: 100ms, min_samples: 200, alpha: 0.001 }}\nmirror: {{ queue: 65536 }}\n",
        FEATURES.join(", "),
        baseline.display()
    );
    let sidecar = Sidecar::start_monitoring(&config(model.addr(), &extra))
        .await
        .expect("sidecar");

    send_rows(&sidecar, 2000, 1, [0.0; 4]).await;
    let before = evaluated(&sidecar, 2000).await;
    assert_eq!(before["baseline"], "ready");
    assert_eq!(before["evaluated"], true);
    assert!(
        drifted(&before).is_empty(),
        "drift on in-distribution traffic: {before:#}"
    );
    assert_eq!(before["drifted_share"], 0.0);
    for feature in before["features"].as_array().expect("features") {
        let methods: Vec<&str> = feature["methods"]
            .as_array()
            .expect("methods")
            .iter()
            .filter_map(|m| m["method"].as_str())
            .collect();
        assert_eq!(
            methods,
            ["psi", "ks", "js", "wasserstein", "hellinger"],
            "{feature}"
        );
    }

    // sepal_width down by 1σ, petal_length up by 1σ.
    send_rows(&sidecar, 2000, 2, [0.0, -1.0, 1.0, 0.0]).await;
    let after = evaluated(&sidecar, 4000).await;
    assert_eq!(
        drifted(&after),
        ["sepal_width", "petal_length"],
        "{after:#}"
    );
    assert_eq!(after["drifted_share"], 0.5);

    let (_, metrics) = admin_get(&sidecar, "/metrics").await;
    assert!(
        metrics.contains("sidewatch_observations_total{model=\"iris\"} 4000"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sidewatch_drifted_share{model=\"iris\"} 0.5"),
        "{metrics}"
    );
    let pvalue = |feature: &str| {
        let prefix = format!(
            "sidewatch_drift_pvalue{{model=\"iris\",feature=\"{feature}\",method=\"ks\"}} "
        );
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no KS p-value for {feature} in\n{metrics}"))
    };
    assert!(pvalue("petal_length") < 1e-10);
    assert!(pvalue("sepal_length") > 0.001 / 4.0);
    let bins: u64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("sidewatch_feature_bin_total{model=\"iris\",feature=\"petal_width\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(bins, 4000, "every value counted in one bin");
    assert!(
        metrics.contains(
            "sidewatch_baseline_bin_ratio{model=\"iris\",feature=\"petal_width\",bin=\"0\"} 0.1"
        ),
        "{metrics}"
    );

    sidecar.shutdown().await;
    model.shutdown().await;
}
