//! End to end: per-request anomaly detection through the real proxy path.
//!
//! A sidecar watches one model, `m`, served by an in-process KServe v2
//! server, with a baseline of three features: `x1` and `x2` correlated
//! +0.9, `x3` independent, each on its own scale. It then gets
//! [`ROWS`] rows drawn from the baseline's own distribution, and four
//! outliers:
//!
//! - `far`: `x3` twelve standard deviations out (beyond the range
//!   validation allows), the others at their means;
//! - `joint`: `x1` two σ up and `x2` two σ down, each well within its own
//!   range, but against their correlation (about 80 on the squared
//!   Mahalanobis scale, where the threshold is 11.3);
//! - `corner`: four σ out on every feature, `x1` and `x2` against their
//!   correlation;
//! - `unsure`: an ordinary row the model answers with `[0.40, 0.35, 0.25]`.
//!
//! In-distribution traffic must be flagged at the rate each detector's
//! configuration promises, within a binomial tolerance of four standard
//! deviations (normal approximation; every expected count is at least 40):
//!
//! | detector | promise | expected rate |
//! |---|---|---|
//! | robust z (`anomaly.zscore: 3`) | a feature beyond 3 robust σ | per feature, P(\|x − median\| > 3 · 1.4826 · MAD) under the generating normal, for the baseline's median and MAD (≈ 2(1 − Φ(3)) = 0.27%) |
//! | Mahalanobis (`anomaly.mahalanobis_p: 0.01`) | χ²(3) quantile at 0.99 | 1% |
//! | Half-Space Trees | threshold at the baseline's 99.9th percentile score | 0.1%, with the variance of a quantile estimated from the baseline's scores added |
//!
//! The data are seeded and one client sends them in order through one
//! mirror worker, so the counts are the same on every run; the margins are
//! reported in the failure messages. The outliers must be flagged by the
//! right detectors, naming the right features, with scores above the
//! thresholds and near what the generating distribution gives, on both
//! `GET /v1/anomalies` and a verdict subscriber, under their request ids.
//!
//! Half-Space Trees are only required to flag `corner`. They cut the
//! baseline's range into cells and score how soon a row's cells run out
//! of mass. A value past the edge lands in the outermost cell however far
//! out it is, and a row against the correlation shares most of its cells
//! with ordinary rows: with these seeds `far` and `joint` score about 0.97,
//! under the calibrated threshold of 0.987, while `corner`, in a region
//! empty on every axis, scores 0.994.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::Full;
use serde_json::{Value, json};
use sidewatch::Sidecar;
use sidewatch::baseline::{Baseline, BaselineBuilder, BuildOptions, FeatureKind, LineageInputs};
use sidewatch::detect::anomaly::{CALIBRATION_QUANTILE, HalfSpaceTrees, HstConfig, MAD_TO_SIGMA};
use sidewatch::monitor::Verdict;
use sidewatch::observation::FeatureValue;
use statrs::distribution::{ContinuousCDF, Normal};

const FEATURES: [&str; 3] = ["x1", "x2", "x3"];
const MEANS: [f64; 3] = [5.0, 3.0, 10.0];
const STDS: [f64; 3] = [2.0, 0.5, 1.0];
const RHO: f64 = 0.9;
/// Baseline rows, all of them kept as the row sample Half-Space Trees are
/// trained and calibrated on (the default `row_cap` of 2,000 would leave
/// the 99.9th percentile to the second-highest score).
const BASELINE_ROWS: usize = 40_000;
/// In-distribution rows sent through the proxy.
const ROWS: usize = 40_000;
const BATCH: usize = 250;
const ZSCORE: f64 = 3.0;
const MAHALANOBIS_P: f64 = 0.01;
/// Standard deviations of tolerance around each expected count.
const TOLERANCE: f64 = 4.0;
/// The answer to an ordinary row, and to the request with id `unsure`.
const SURE: [f64; 3] = [0.96, 0.03, 0.01];
const UNSURE: [f64; 3] = [0.40, 0.35, 0.25];

fn normal(rng: &mut fastrand::Rng) -> f64 {
    let (u, v) = (1.0 - rng.f64(), rng.f64());
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// A row of the baseline's distribution.
fn row(rng: &mut fastrand::Rng) -> [f64; 3] {
    let (z1, z2, z3) = (normal(rng), normal(rng), normal(rng));
    let z = [z1, RHO * z1 + (1.0 - RHO * RHO).sqrt() * z2, z3];
    std::array::from_fn(|i| MEANS[i] + STDS[i] * z[i])
}

/// A row `z` standard deviations from the means, feature by feature.
fn at_sigmas(z: [f64; 3]) -> [f64; 3] {
    std::array::from_fn(|i| MEANS[i] + STDS[i] * z[i])
}

fn build_baseline() -> (Baseline, PathBuf) {
    let features = FEATURES
        .iter()
        .map(|f| (f.to_string(), FeatureKind::Numeric))
        .collect();
    let options = BuildOptions {
        row_cap: BASELINE_ROWS,
        ..BuildOptions::default()
    };
    let mut builder = BaselineBuilder::new("m", features, options);
    let mut rng = fastrand::Rng::with_seed(1);
    for _ in 0..BASELINE_ROWS {
        let values = row(&mut rng).map(FeatureValue::Number);
        builder.add_row(&values, None);
    }
    let baseline = builder
        .finish(LineageInputs::live(
            BASELINE_ROWS as u64,
            std::time::SystemTime::now(),
        ))
        .expect("baseline builds");
    let dir = std::env::temp_dir().join(format!(
        "sidewatch-anomaly-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("m.baseline.json");
    baseline.save(&path).expect("save baseline");
    (baseline, path)
}

/// A KServe v2 model server: [`SURE`] for every row, [`UNSURE`] for every
/// row of the request whose `id` is `unsure`.
async fn model_server() -> Upstream {
    upstream(|received| async move {
        let request: Value = serde_json::from_slice(&received.body).unwrap_or_default();
        let rows = request["inputs"][0]["shape"][0].as_u64().unwrap_or(0) as usize;
        let answer = if request["id"] == "unsure" {
            UNSURE
        } else {
            SURE
        };
        let body = json!({
            "model_name": "m",
            "outputs": [{
                "name": "probabilities",
                "shape": [rows, 3],
                "datatype": "FP64",
                "data": answer.repeat(rows),
            }],
        });
        Response::builder()
            .header("content-type", "application/json")
            .body(full(body.to_string()))
            .expect("response")
    })
    .await
}

/// Sends `rows` as one request with `id` as both its `x-request-id` and
/// its KServe `id`.
async fn send_rows(sidecar: &Sidecar, id: &str, rows: &[[f64; 3]]) {
    let body = json!({
        "id": id,
        "inputs": [{
            "name": "input",
            "shape": [rows.len(), 3],
            "datatype": "FP64",
            "data": rows.concat(),
        }],
    });
    let request = Request::post(format!("http://{}/v2/models/m/infer", sidecar.proxy_addr()))
        .header("content-type", "application/json")
        .header("x-request-id", id)
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let (parts, _) = send(request).await;
    assert_eq!(parts.status, 200);
}

/// Asserts `observed` is within [`TOLERANCE`] standard deviations of a
/// binomial count over `n` trials at rate `p`, its variance scaled by
/// `inflation` where the rate itself is estimated.
fn assert_rate(what: &str, observed: usize, n: usize, p: f64, inflation: f64) {
    let expected = n as f64 * p;
    let sd = (expected * (1.0 - p) * inflation).sqrt();
    let z = (observed as f64 - expected) / sd;
    assert!(
        z.abs() <= TOLERANCE,
        "{what}: {observed} flagged of {n}, expected {expected:.1} ± {sd:.1} (z = {z:.2})"
    );
    eprintln!("{what}: {observed} flagged of {n}, expected {expected:.1} ± {sd:.1} (z = {z:+.2})");
}

/// The rate at which `feature` exceeds the robust z threshold, given the
/// baseline's median and MAD and the distribution the rows are drawn from.
fn robust_z_rate(baseline: &Baseline, feature: usize) -> f64 {
    let profile = baseline.features[feature]
        .numeric
        .as_ref()
        .expect("numeric profile");
    let scale = MAD_TO_SIGMA * profile.mad;
    let standard = Normal::new(MEANS[feature], STDS[feature]).expect("normal");
    standard.cdf(profile.median - ZSCORE * scale) + standard.sf(profile.median + ZSCORE * scale)
}

fn metric(metrics: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok())
}

/// The reason `detector` gave in `reasons` (verdict or `/v1/anomalies`
/// JSON, as `(detector, features, score, threshold)`).
fn reason<'a>(
    reasons: &'a [(String, Vec<String>, f64, f64)],
    detector: &str,
) -> Option<&'a (String, Vec<String>, f64, f64)> {
    reasons.iter().find(|r| r.0 == detector)
}

fn verdict_reasons(verdict: &Verdict) -> Vec<(String, Vec<String>, f64, f64)> {
    verdict
        .anomalies
        .iter()
        .map(|r| {
            (
                r.detector.to_owned(),
                r.features.clone(),
                r.score,
                r.threshold,
            )
        })
        .collect()
}

fn json_reasons(flagged: &Value) -> Vec<(String, Vec<String>, f64, f64)> {
    flagged["reasons"]
        .as_array()
        .expect("reasons")
        .iter()
        .map(|r| {
            let features = r["features"]
                .as_array()
                .expect("features")
                .iter()
                .map(|f| f.as_str().unwrap_or("?").to_owned())
                .collect();
            (
                r["detector"].as_str().unwrap_or("?").to_owned(),
                features,
                r["score"].as_f64().unwrap_or(f64::NAN),
                r["threshold"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_distribution_rows_are_flagged_at_the_configured_rate_and_outliers_with_reasons() {
    let (baseline, path) = build_baseline();
    let model = model_server().await;
    let extra = format!(
        "models: [{{ name: m, protocol: kserve_v2, features: [x1, x2, x3], baseline: {} }}]\n\
         anomaly: {{ zscore: {ZSCORE}, mahalanobis_p: {MAHALANOBIS_P} }}\n\
         mirror: {{ workers: 1, queue: 4096 }}\n",
        path.display()
    );
    let sidecar = Sidecar::start_monitoring(&config(model.addr, &extra))
        .await
        .expect("sidecar");
    let view = sidecar.monitor().expect("monitoring on");
    let verdicts = view.subscribe(ROWS + 16);

    let mut rng = fastrand::Rng::with_seed(2);
    for b in 0..ROWS / BATCH {
        let rows: Vec<[f64; 3]> = (0..BATCH).map(|_| row(&mut rng)).collect();
        send_rows(&sidecar, &format!("steady-{b}"), &rows).await;
    }
    let outliers = [
        ("far", at_sigmas([0.0, 0.0, 12.0])),
        ("joint", at_sigmas([2.0, -2.0, 0.0])),
        ("corner", at_sigmas([4.0, -4.0, 4.0])),
        ("unsure", MEANS),
    ];
    for (id, values) in outliers {
        send_rows(&sidecar, id, &[values]).await;
    }
    let total = ROWS + outliers.len();
    let mut received: Vec<Verdict> = Vec::with_capacity(total);
    wait_until("a verdict for every row", || {
        received.extend(verdicts.try_iter());
        let done = received.len() >= total;
        async move { done }
    })
    .await;
    assert_eq!(received.len(), total);
    assert_eq!(view.verdicts_dropped(), 0);
    let stats = view.model("m").expect("model m");
    assert_eq!(stats.observations(), total as u64);

    // (a) In-distribution rows, flagged at the configured rates.
    let steady: Vec<&Verdict> = received
        .iter()
        .filter(|v| v.request_id.starts_with("steady-"))
        .collect();
    assert_eq!(steady.len(), ROWS);
    let mut flagged: HashMap<&str, usize> = HashMap::new();
    let mut robust_z_features = [0usize; 3];
    for verdict in &steady {
        for reason in &verdict.anomalies {
            *flagged.entry(reason.detector).or_default() += 1;
            assert!(reason.score > reason.threshold, "{reason:?}");
            if reason.detector == "robust_z" {
                for feature in &reason.features {
                    let i = FEATURES.iter().position(|f| f == feature).expect("known");
                    robust_z_features[i] += 1;
                }
            }
        }
    }
    let nominal = 2.0 * Normal::new(0.0, 1.0).expect("normal").sf(ZSCORE);
    for (i, feature) in FEATURES.iter().enumerate() {
        let p = robust_z_rate(&baseline, i);
        // 40,000 baseline rows pin the median and MAD down well enough
        // that the rate they imply is close to the nominal tail.
        assert!(
            (p / nominal - 1.0).abs() < 0.15,
            "{feature}: {p} vs {nominal}"
        );
        assert_rate(
            &format!("robust_z on {feature}"),
            robust_z_features[i],
            ROWS,
            p,
            1.0,
        );
    }
    assert_rate(
        "mahalanobis",
        flagged.get("mahalanobis").copied().unwrap_or(0),
        ROWS,
        MAHALANOBIS_P,
        1.0,
    );
    // The threshold is the baseline's own 99.9th percentile (above the
    // configured floor), itself estimated from the calibration scores:
    // their spread adds n/m times the binomial variance.
    let hst_config = HstConfig::default();
    let trees = HalfSpaceTrees::from_baseline(&baseline, &hst_config).expect("trees");
    assert!(trees.threshold() > hst_config.threshold, "calibrated");
    let calibration_scores = BASELINE_ROWS - hst_config.window;
    assert_rate(
        "half_space_trees",
        flagged.get("half_space_trees").copied().unwrap_or(0),
        ROWS,
        1.0 - CALIBRATION_QUANTILE,
        1.0 + ROWS as f64 / calibration_scores as f64,
    );
    // A confident model is never flagged for its confidence.
    assert_eq!(flagged.get("low_confidence"), None);
    assert_eq!(flagged.get("high_entropy"), None);

    // The counters agree with the verdicts, outliers included.
    let (_, metrics) = admin_get(&sidecar, "/metrics").await;
    for detector in [
        "robust_z",
        "mahalanobis",
        "half_space_trees",
        "low_confidence",
        "high_entropy",
    ] {
        let verdicts = received
            .iter()
            .filter(|v| v.anomalies.iter().any(|r| r.detector == detector))
            .count();
        let labels = format!("model=\"m\",detector=\"{detector}\"");
        assert_eq!(
            metric(&metrics, "sidewatch_anomalies_total", &labels),
            Some(verdicts as f64),
            "{detector}"
        );
    }

    // (b) The outliers, on a subscriber and on /v1/anomalies.
    let (status, body) = admin_get(&sidecar, "/v1/anomalies").await;
    assert_eq!(status, 200, "{body}");
    let listed: Value = serde_json::from_str(&body).expect("JSON");
    let listed = listed["models"]
        .as_array()
        .and_then(|models| models.iter().find(|m| m["model"] == "m"))
        .and_then(|m| m["anomalies"].as_array())
        .cloned()
        .unwrap_or_else(|| panic!("no anomalies for m: {body}"));
    assert!(listed.len() <= 100);
    let outlier = |id: &str| {
        let verdict = received
            .iter()
            .find(|v| &*v.request_id == id)
            .unwrap_or_else(|| panic!("no verdict for {id}"));
        let entry = listed
            .iter()
            .find(|a| a["request_id"] == id)
            .unwrap_or_else(|| panic!("{id} not in /v1/anomalies: {body}"));
        assert_eq!(entry["row"], 0);
        assert!(entry["time"].as_str().is_some_and(|t| !t.is_empty()));
        let reasons = verdict_reasons(verdict);
        assert_eq!(json_reasons(entry), reasons, "{id}: the same reasons");
        for (detector, _, score, threshold) in &reasons {
            if detector == "low_confidence" {
                assert!(score < threshold, "{id} {detector}");
            } else {
                assert!(score > threshold, "{id} {detector}");
            }
        }
        (verdict, reasons)
    };

    // Far out on x3: every numeric detector, each naming x3 where it can.
    let (verdict, reasons) = outlier("far");
    let (_, features, score, threshold) =
        reason(&reasons, "robust_z").unwrap_or_else(|| panic!("robust z: {reasons:?}"));
    assert_eq!(features, &["x3"]);
    assert!(
        (score - 12.0).abs() < 0.6 && *threshold == ZSCORE,
        "{score}"
    );
    let (_, features, score, threshold) =
        reason(&reasons, "mahalanobis").unwrap_or_else(|| panic!("mahalanobis: {reasons:?}"));
    assert_eq!(features, &["x3"]);
    // χ²(3) at 0.99.
    assert!((threshold - 11.345).abs() < 1e-3, "{threshold}");
    assert!((score / 144.0 - 1.0).abs() < 0.1, "{score}");
    assert!(
        verdict
            .violations
            .iter()
            .any(|v| v.feature == "x3" && v.kind == "out_of_range"),
        "{verdict:?}"
    );

    // Against the correlation: no feature is out of the ordinary on its
    // own, but the joint detectors see it.
    let (verdict, reasons) = outlier("joint");
    assert_eq!(reason(&reasons, "robust_z"), None, "{reasons:?}");
    let (_, features, score, _) =
        reason(&reasons, "mahalanobis").unwrap_or_else(|| panic!("mahalanobis: {reasons:?}"));
    assert!(
        !features.is_empty() && features.iter().all(|f| f == "x1" || f == "x2"),
        "{features:?}"
    );
    // (2² + 2² + 2 · 0.9 · 2 · 2) / (1 − 0.9²) = 80
    assert!((score / 80.0 - 1.0).abs() < 0.1, "{score}");
    assert!(verdict.violations.is_empty(), "{verdict:?}");

    // Out on every axis, in a corner the baseline never visited: the
    // trees flag it too, naming every feature (they cannot tell which
    // split isolated it).
    let (_, reasons) = outlier("corner");
    let (_, features, _, _) =
        reason(&reasons, "robust_z").unwrap_or_else(|| panic!("robust z: {reasons:?}"));
    let mut features = features.clone();
    features.sort();
    assert_eq!(features, FEATURES);
    let (_, features, score, _) =
        reason(&reasons, "mahalanobis").unwrap_or_else(|| panic!("mahalanobis: {reasons:?}"));
    assert!(
        !features.is_empty() && features.iter().all(|f| f == "x1" || f == "x2"),
        "x1 and x2 account for most of the distance: {features:?}"
    );
    // (4² + 4² + 2 · 0.9 · 4 · 4) / (1 − 0.9²) + 4² = 336
    assert!((score / 336.0 - 1.0).abs() < 0.1, "{score}");
    let (_, features, _, threshold) = reason(&reasons, "half_space_trees")
        .unwrap_or_else(|| panic!("half-space trees: {reasons:?}"));
    assert_eq!(features, &FEATURES);
    assert_eq!(*threshold, trees.threshold());

    // An ordinary row the model is unsure of: only the prediction checks.
    let (_, reasons) = outlier("unsure");
    let detectors: Vec<&str> = reasons.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(detectors, ["low_confidence", "high_entropy"]);
    let (_, features, score, threshold) = &reasons[0];
    assert!(features.is_empty());
    assert_eq!((*score, *threshold), (0.40, 0.6));
    let entropy: f64 = -UNSURE.iter().map(|p| p * p.ln()).sum::<f64>();
    let (_, _, score, threshold) = &reasons[1];
    assert!((score - entropy).abs() < 1e-9, "{score}");
    assert!((threshold - std::f64::consts::LN_2).abs() < 1e-12);

    drop(verdicts);
    sidecar.shutdown().await;
    let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
}
