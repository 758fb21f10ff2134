//! End to end: drift that no single feature shows, caught by the
//! multivariate detectors through the real proxy path.
//!
//! One sidecar in front of an in-process KServe v2 model server watches
//! three models with the same baseline: `x1` and `x2` correlated +0.9, `x3`
//! independent, each on its own scale. Each model then gets 2,000 rows:
//!
//! - `steady`: the baseline's distribution. Nothing drifts.
//! - `flipped`: corr(x1, x2) = −0.9 with every marginal unchanged. Rows
//!   leave the reference's principal plane: PCA reconstruction error
//!   drifts. Every univariate method on every feature stays quiet.
//! - `shifted`: x1 up and x2 down by 0.04σ each, a joint move along the
//!   direction the reference hardly varies in (Var(z1 − z2) = 0.2). Too
//!   small for any per-feature test, it is about 45 on the mean-shift scale
//!   against a χ²(3) threshold of 7.8; PCA, for which the move is tiny
//!   next to the residual spread, stays quiet.
//!
//! Each window holds exactly `drift.sample` (2,000) rows, so the KS
//! samples are the whole window and the verdicts depend only on the
//! seeded data, not on the order rows arrive in. The settings are the
//! defaults (alpha 0.05, Bonferroni, every method) but `min_samples`. With
//! these seeds the margins are wide: the smallest KS p-value is 0.16
//! (against 0.05 / 3), the flipped window's mean reconstruction error 1.12
//! (band 0.23–0.30), the shifted window's mean-shift statistic 51 (against
//! 7.8). The mean shift's verdict on the flip is not asserted: the mean has
//! not moved, and it fires on such windows only now and then, for a side
//! reason measured in `src/detect/multivariate/tests.rs`.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::Full;
use sidewatch::Sidecar;
use sidewatch::baseline::{BaselineBuilder, BuildOptions, FeatureKind, LineageInputs};
use sidewatch::observation::FeatureValue;

const FEATURES: [&str; 3] = ["x1", "x2", "x3"];
const MEANS: [f64; 3] = [5.0, 3.0, 10.0];
const STDS: [f64; 3] = [2.0, 0.5, 1.0];
const RHO: f64 = 0.9;
const ROWS: usize = 2000;
const BATCH: usize = 20;

fn normal(rng: &mut fastrand::Rng) -> f64 {
    let (u, v) = (1.0 - rng.f64(), rng.f64());
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// A row with corr(x1, x2) = `rho`, shifted by `shift` standard deviations.
fn row(rng: &mut fastrand::Rng, rho: f64, shift: [f64; 3]) -> [f64; 3] {
    let (z1, z2, z3) = (normal(rng), normal(rng), normal(rng));
    let z = [z1, rho * z1 + (1.0 - rho * rho).sqrt() * z2, z3];
    std::array::from_fn(|i| MEANS[i] + STDS[i] * (z[i] + shift[i]))
}

fn baseline_files(models: &[&str]) -> Vec<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "sidewatch-multivariate-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    models
        .iter()
        .map(|model| {
            let features = FEATURES
                .iter()
                .map(|f| (f.to_string(), FeatureKind::Numeric))
                .collect();
            let mut builder = BaselineBuilder::new(*model, features, BuildOptions::default());
            let mut rng = fastrand::Rng::with_seed(1);
            for _ in 0..5000 {
                let values: Vec<FeatureValue> = row(&mut rng, RHO, [0.0; 3])
                    .map(FeatureValue::Number)
                    .to_vec();
                builder.add_row(&values, None);
            }
            let baseline = builder
                .finish(LineageInputs::live(5000, std::time::SystemTime::now()))
                .expect("baseline builds");
            let path = dir.join(format!("{model}.baseline.json"));
            baseline.save(&path).expect("save baseline");
            path
        })
        .collect()
}

/// A KServe v2 model server for any model name: two class probabilities
/// per input row.
async fn model_server() -> Upstream {
    upstream(|received| async move {
        let request: serde_json::Value = serde_json::from_slice(&received.body).unwrap_or_default();
        let rows = request["inputs"][0]["shape"][0].as_u64().unwrap_or(0) as usize;
        let model = received
            .uri
            .path()
            .split('/')
            .nth(3)
            .unwrap_or("")
            .to_owned();
        let probabilities: Vec<f64> = (0..rows).flat_map(|_| [0.75, 0.25]).collect();
        let body = serde_json::json!({
            "model_name": model,
            "outputs": [{
                "name": "probabilities",
                "shape": [rows, 2],
                "datatype": "FP32",
                "data": probabilities,
            }],
        });
        Response::builder()
            .header("content-type", "application/json")
            .body(full(body.to_string()))
            .expect("response")
    })
    .await
}

/// Sends `ROWS` rows to `model` in batches of `BATCH`.
async fn send_rows(sidecar: &Sidecar, model: &'static str, seed: u64, rho: f64, shift: [f64; 3]) {
    let client = http1_client::<Full<Bytes>>();
    let url = format!("http://{}/v2/models/{model}/infer", sidecar.proxy_addr());
    let mut rng = fastrand::Rng::with_seed(seed);
    for _ in 0..ROWS / BATCH {
        let data: Vec<f64> = (0..BATCH).flat_map(|_| row(&mut rng, rho, shift)).collect();
        let body = serde_json::json!({
            "inputs": [{ "name": "input", "shape": [BATCH, 3], "datatype": "FP64", "data": data }],
        });
        let request = Request::post(&url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("request");
        let response = tokio::time::timeout(DEADLINE, client.request(request))
            .await
            .expect("answer in time")
            .expect("response");
        assert_eq!(response.status(), 200);
    }
}

async fn report(sidecar: &Sidecar, model: &str) -> serde_json::Value {
    let (status, body) = admin_get(sidecar, "/v1/drift").await;
    assert_eq!(status, 200, "{body}");
    let reports: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    reports["models"]
        .as_array()
        .and_then(|models| models.iter().find(|m| m["model"] == model))
        .cloned()
        .unwrap_or_else(|| panic!("no report for {model}: {body}"))
}

/// The first evaluation that covers every row sent to `model`.
async fn evaluated(sidecar: &Sidecar, model: &str) -> serde_json::Value {
    wait_until(&format!("{model} evaluated over {ROWS} rows"), || async {
        report(sidecar, model).await["window_count"].as_u64() == Some(ROWS as u64)
    })
    .await;
    report(sidecar, model).await
}

/// Every univariate verdict: per feature, and per method of each feature.
fn univariate_flags(report: &serde_json::Value) -> Vec<String> {
    let mut flags = Vec::new();
    for feature in report["features"].as_array().expect("features") {
        let name = feature["feature"].as_str().unwrap_or("?");
        if feature["drifted"] != false {
            flags.push(name.to_owned());
        }
        for method in feature["methods"].as_array().expect("methods") {
            if method["drifted"] != false {
                flags.push(format!("{name}/{}", method["method"]));
            }
        }
    }
    flags
}

/// `(drifted, method)` for each multivariate method, in report order.
fn multivariate(report: &serde_json::Value) -> Vec<(bool, String)> {
    let joint = &report["multivariate"];
    assert_eq!(joint["evaluated"], true, "{report:#}");
    assert_eq!(joint["complete_rows"], ROWS as u64);
    joint["methods"]
        .as_array()
        .expect("methods")
        .iter()
        .map(|m| {
            assert_eq!(m["samples"], ROWS as u64, "{m}");
            let drifted = m["drifted"].as_bool().expect("drifted");
            (drifted, m["method"].as_str().unwrap_or("?").to_owned())
        })
        .collect()
}

fn gauge(metrics: &str, name: &str, labels: &str) -> f64 {
    let prefix = format!("{name}{{{labels}}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name}{{{labels}}} in\n{metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joint_drift_that_no_feature_shows_is_caught() {
    const MODELS: [&str; 3] = ["steady", "flipped", "shifted"];
    let model = model_server().await;
    let baselines = baseline_files(&MODELS);
    let models: String = MODELS
        .iter()
        .zip(&baselines)
        .map(|(name, path)| {
            format!(
                "  - {{ name: {name}, protocol: kserve_v2, features: [x1, x2, x3], baseline: {} }}\n",
                path.display()
            )
        })
        .collect();
    let extra = format!(
        "models:\n{models}drift: {{ window: 10m, step: 100ms, min_samples: 1000 }}\nmirror: {{ queue: 65536 }}\n"
    );
    let sidecar = Arc::new(
        Sidecar::start_monitoring(&config(model.addr, &extra))
            .await
            .expect("sidecar"),
    );

    let traffic = [
        ("steady", 11, RHO, [0.0; 3]),
        ("flipped", 12, -RHO, [0.0; 3]),
        ("shifted", 13, RHO, [0.04, -0.04, 0.0]),
    ];
    let tasks: Vec<_> = traffic
        .into_iter()
        .map(|(name, seed, rho, shift)| {
            let sidecar = sidecar.clone();
            tokio::spawn(async move { send_rows(&sidecar, name, seed, rho, shift).await })
        })
        .collect();
    for task in tasks {
        task.await.expect("traffic");
    }

    let steady = evaluated(&sidecar, "steady").await;
    let flipped = evaluated(&sidecar, "flipped").await;
    let shifted = evaluated(&sidecar, "shifted").await;
    for report in [&steady, &flipped, &shifted] {
        assert_eq!(report["evaluated"], true, "{report:#}");
        // Every default method ran on every feature, and none flagged one.
        for feature in report["features"].as_array().expect("features") {
            assert_eq!(feature["methods"].as_array().map(Vec::len), Some(5));
        }
        assert_eq!(univariate_flags(report), Vec::<String>::new(), "{report:#}");
        assert_eq!(report["drifted_share"], 0.0);
    }

    let pca = "pca_reconstruction".to_owned();
    let shift = "mahalanobis_shift".to_owned();
    assert_eq!(
        multivariate(&steady),
        [(false, pca.clone()), (false, shift.clone())],
        "{steady:#}"
    );
    assert_eq!(steady["multivariate_drifted"], false);
    assert_eq!(
        multivariate(&flipped)[0],
        (true, pca.clone()),
        "PCA sees the flip: {flipped:#}"
    );
    assert_eq!(flipped["multivariate_drifted"], true);
    assert_eq!(
        multivariate(&shifted),
        [(false, pca.clone()), (true, shift.clone())],
        "the mean shift sees the joint move: {shifted:#}"
    );
    assert_eq!(shifted["multivariate_drifted"], true);
    let flip_pca = &flipped["multivariate"]["methods"][0];
    let (error, upper) = (
        flip_pca["score"].as_f64().unwrap_or(0.0),
        flip_pca["upper"].as_f64().unwrap_or(f64::INFINITY),
    );
    assert!(error > 2.0 * upper, "far outside the band: {flip_pca}");

    let (status, metrics) = admin_get(&sidecar, "/metrics").await;
    assert_eq!(status, 200);
    let flag = |model: &str, method: &str| {
        let labels = format!("model=\"{model}\",method=\"{method}\"");
        gauge(&metrics, "sidewatch_multivariate_drifted", &labels)
    };
    assert_eq!(
        [
            flag("steady", "pca_reconstruction"),
            flag("steady", "mahalanobis_shift"),
            flag("flipped", "pca_reconstruction"),
            flag("shifted", "pca_reconstruction"),
            flag("shifted", "mahalanobis_shift"),
        ],
        [0.0, 0.0, 1.0, 0.0, 1.0]
    );
    let score = gauge(
        &metrics,
        "sidewatch_multivariate_drift_score",
        "model=\"flipped\",method=\"pca_reconstruction\"",
    );
    let upper = gauge(
        &metrics,
        "sidewatch_multivariate_drift_threshold",
        "model=\"flipped\",method=\"pca_reconstruction\",bound=\"upper\"",
    );
    assert!((score - error).abs() < 1e-9 && score > upper);
    let t = gauge(
        &metrics,
        "sidewatch_multivariate_drift_score",
        "model=\"shifted\",method=\"mahalanobis_shift\"",
    );
    let threshold = gauge(
        &metrics,
        "sidewatch_multivariate_drift_threshold",
        "model=\"shifted\",method=\"mahalanobis_shift\",bound=\"upper\"",
    );
    assert!(
        t > threshold && (threshold - 7.8147).abs() < 1e-3,
        "{t} vs {threshold}"
    );
    for model in MODELS {
        let share = gauge(
            &metrics,
            "sidewatch_drifted_share",
            &format!("model=\"{model}\""),
        );
        assert_eq!(share, 0.0, "multivariate drift is not a feature's");
    }

    let Ok(sidecar) = Arc::try_unwrap(sidecar) else {
        panic!("traffic tasks still hold the sidecar");
    };
    sidecar.shutdown().await;
}
