//! Monitoring behaviour through the sidecar: learned baselines (frozen,
//! saved, reloaded after a restart), feature names from model metadata or
//! the first request, observe-mode validation, decode errors, prediction
//! counts, and a baseline that does not fit the model refusing to start.

mod common;

use std::path::PathBuf;

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::Full;
use sidewatch::Sidecar;
use sidewatch::baseline::{Baseline, BaselineBuilder, BuildOptions, FeatureKind, LineageInputs};
use sidewatch::demo::model::ModelServer;
use sidewatch::observation::FeatureValue;

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sidewatch-monitoring-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

async fn post(sidecar: &Sidecar, path: &str, body: String) -> u16 {
    let (parts, _) = send(
        Request::post(format!("http://{}{path}", sidecar.proxy_addr()))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("request"),
    )
    .await;
    parts.status.as_u16()
}

fn iris_row(i: usize) -> String {
    let x = |base: f64, spread: f64| base + spread * (((i * 7919) % 100) as f64 / 100.0 - 0.5);
    format!(
        r#"{{"inputs":[{{"name":"input","shape":[1,4],"datatype":"FP32","data":[{},{},{},{}]}}]}}"#,
        x(5.8, 1.5),
        x(3.0, 0.8),
        x(3.7, 3.0),
        x(1.2, 1.4)
    )
}

async fn model_drift(sidecar: &Sidecar) -> serde_json::Value {
    let (_, body) = admin_get(sidecar, "/v1/drift").await;
    serde_json::from_str::<serde_json::Value>(&body).expect("json")["models"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learned_baseline_is_frozen_saved_and_reloaded_after_a_restart() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let model = ModelServer::start(listener).expect("model server");
    let saved = temp_dir().join("iris.baseline.json");
    // No `features`: the names come from the server's model metadata.
    let extra = format!(
        "models: [{{ name: iris, baseline: {{ learn: 300, save: {} }} }}]\ndrift: {{ step: 100ms, min_samples: 50 }}\n",
        saved.display()
    );
    let sidecar = Sidecar::start_monitoring(&config(model.addr(), &extra))
        .await
        .expect("sidecar");
    wait_until("the shard reports it is learning", || async {
        model_drift(&sidecar).await["baseline"] == "learning"
    })
    .await;
    for i in 0..300 {
        assert_eq!(
            post(&sidecar, "/v2/models/iris/infer", iris_row(i)).await,
            200
        );
    }
    wait_until("the baseline is frozen", || async {
        model_drift(&sidecar).await["baseline"] == "ready"
    })
    .await;
    wait_until("the baseline is saved", || async { saved.exists() }).await;
    let baseline = Baseline::load(&saved).expect("saved baseline loads");
    let names: Vec<&str> = baseline.features.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["input_0", "input_1", "input_2", "input_3"]);
    assert_eq!(baseline.lineage.rows, 300);
    assert_eq!(baseline.lineage.source, "live");
    sidecar.shutdown().await;

    // After a restart the saved baseline is used at once, without traffic.
    let restarted = Sidecar::start_monitoring(&config(model.addr(), &extra))
        .await
        .expect("restart");
    wait_until("the reloaded baseline is ready", || async {
        model_drift(&restarted).await["baseline"] == "ready"
    })
    .await;
    restarted.shutdown().await;
    model.shutdown().await;
}

fn kserve_answer() -> Response<TestBody> {
    Response::builder()
        .header("content-type", "application/json")
        .body(full(r#"{"model_name":"m","outputs":[{"name":"probabilities","shape":[1,3],"datatype":"FP32","data":[0.1,0.7,0.2]}]}"#))
        .expect("response")
}

/// A KServe-speaking upstream with no metadata endpoint.
async fn answering_upstream() -> Upstream {
    upstream(|received| async move {
        if received.uri.path().ends_with("/infer") {
            kserve_answer()
        } else {
            Response::builder()
                .status(404)
                .body(full(""))
                .expect("response")
        }
    })
    .await
}

fn named_inputs(inputs: &[(&str, &str, &str)]) -> String {
    let tensors: Vec<String> = inputs
        .iter()
        .map(|(name, datatype, data)| {
            format!(r#"{{"name":"{name}","shape":[1],"datatype":"{datatype}","data":[{data}]}}"#)
        })
        .collect();
    format!(r#"{{"inputs":[{}]}}"#, tensors.join(","))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feature_names_come_from_the_first_request_without_metadata() {
    let upstream = answering_upstream().await;
    let extra =
        "models: [{ name: m, baseline: { learn: 20 } }]\ndrift: { step: 100ms, min_samples: 5 }\n";
    let sidecar = Sidecar::start_monitoring(&config(upstream.addr, extra))
        .await
        .expect("sidecar");
    for i in 0..20 {
        let body = named_inputs(&[("x", "FP32", &format!("{i}.5")), ("y", "FP32", "2.0")]);
        assert_eq!(post(&sidecar, "/v2/models/m/infer", body).await, 200);
    }
    wait_until("the baseline is learned", || async {
        model_drift(&sidecar).await["baseline"] == "ready"
    })
    .await;
    let report = model_drift(&sidecar).await;
    let names: Vec<&str> = report["features"]
        .as_array()
        .expect("features")
        .iter()
        .filter_map(|f| f["feature"].as_str())
        .collect();
    assert_eq!(names, ["x", "y"], "{report:#}");
    // Nothing in the window yet: listed, but not evaluated, and no
    // drifted_share gauge that would read as "no drift".
    assert_eq!(report["evaluated"], false);
    let (_, metrics) = admin_get(&sidecar, "/metrics").await;
    assert!(
        !metrics.contains("sidewatch_drifted_share{model=\"m\"}"),
        "{metrics}"
    );
    sidecar.shutdown().await;
}

fn small_baseline(dir: &std::path::Path, names: &[(&str, FeatureKind)]) -> PathBuf {
    let features = names.iter().map(|(n, k)| (n.to_string(), *k)).collect();
    let mut builder = BaselineBuilder::new("m", features, BuildOptions::default());
    for i in 0..200 {
        // Each numeric feature cycles with its own period, so they are not
        // collinear (a singular covariance would make any row an outlier).
        let row: Vec<FeatureValue> = names
            .iter()
            .enumerate()
            .map(|(k, (_, kind))| match kind {
                FeatureKind::Numeric => FeatureValue::Number(((i * (k + 3)) % 10) as f64 / 10.0),
                FeatureKind::Categorical => {
                    FeatureValue::Category(if i % 2 == 0 { "x" } else { "y" }.into())
                }
            })
            .collect();
        builder.add_row(&row, None);
    }
    let baseline = builder
        .finish(LineageInputs::live(200, std::time::SystemTime::now()))
        .expect("baseline");
    let path = dir.join("m.baseline.json");
    baseline.save(&path).expect("save");
    path
}

fn metric(metrics: &str, line_prefix: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(line_prefix)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_decode_errors_and_predictions_are_counted() {
    let upstream = answering_upstream().await;
    let baseline = small_baseline(
        &temp_dir(),
        &[
            ("a", FeatureKind::Numeric),
            ("b", FeatureKind::Numeric),
            ("c", FeatureKind::Categorical),
        ],
    );
    let extra = format!(
        "models: [{{ name: m, protocol: kserve_v2, features: [a, b, c], categorical: [c], baseline: {} }}]\n",
        baseline.display()
    );
    let sidecar = Sidecar::start_monitoring(&config(upstream.addr, &extra))
        .await
        .expect("sidecar");
    let bodies = [
        named_inputs(&[
            ("a", "FP32", "0.1"),
            ("b", "FP32", "0.2"),
            ("c", "BYTES", "\"x\""),
        ]),
        named_inputs(&[
            ("a", "FP32", "1000000"),
            ("b", "FP32", "0.2"),
            ("c", "BYTES", "\"x\""),
        ]),
        named_inputs(&[
            ("a", "FP32", "0.1"),
            ("zzz", "FP32", "1"),
            ("c", "BYTES", "\"y\""),
        ]),
        named_inputs(&[
            ("a", "FP32", "0.1"),
            ("b", "FP32", "0.2"),
            ("c", "BYTES", "\"unseen\""),
        ]),
        named_inputs(&[
            ("a", "BYTES", "\"oops\""),
            ("b", "FP32", "0.2"),
            ("c", "BYTES", "\"x\""),
        ]),
    ];
    for body in bodies {
        assert_eq!(post(&sidecar, "/v2/models/m/infer", body).await, 200);
    }
    // Malformed: the client still gets the upstream's answer; monitoring counts it.
    assert_eq!(
        post(&sidecar, "/v2/models/m/infer", "{\"inputs\": [".into()).await,
        200
    );
    let view = sidecar.monitor().expect("monitoring on");
    wait_until("every exchange is processed", || {
        let view = view.clone();
        async move {
            view.model("m")
                .is_some_and(|m| m.observations() == 5 && m.decode_errors() == 1)
        }
    })
    .await;
    let (_, metrics) = admin_get(&sidecar, "/metrics").await;
    let violations = |feature: &str, kind: &str| {
        metric(&metrics, &format!("sidewatch_validation_violations_total{{model=\"m\",feature=\"{feature}\",kind=\"{kind}\"}} ")).unwrap_or(u64::MAX)
    };
    assert_eq!(violations("a", "out_of_range"), 1, "{metrics}");
    assert_eq!(violations("b", "missing"), 1);
    assert_eq!(
        violations("a", "extra"),
        1,
        "extra inputs are counted on the first feature"
    );
    assert_eq!(violations("c", "unknown_category"), 1);
    assert_eq!(violations("a", "wrong_type"), 1);
    assert_eq!(violations("b", "out_of_range"), 0);
    assert_eq!(
        metric(
            &metrics,
            "sidewatch_decode_errors_total{model=\"m\",protocol=\"kserve_v2\"} "
        ),
        Some(1)
    );
    assert_eq!(
        metric(
            &metrics,
            "sidewatch_concept_drift_total{model=\"m\",detector=\"adwin\"} "
        ),
        Some(0),
        "steady scores: no concept drift"
    );
    assert!(
        !metrics.contains("sidewatch_decode_errors_total{model=\"m\",protocol=\"openai\"}"),
        "protocols the model does not speak stay out of the metrics"
    );
    assert_eq!(
        metric(
            &metrics,
            "sidewatch_predictions_total{model=\"m\",class=\"1\"} "
        ),
        Some(5)
    );
    assert_eq!(
        metric(&metrics, "sidewatch_observations_total{model=\"m\"} "),
        Some(5)
    );
    sidecar.shutdown().await;
}

#[tokio::test]
async fn a_baseline_that_does_not_fit_the_model_refuses_to_start() {
    let baseline = small_baseline(
        &temp_dir(),
        &[("a", FeatureKind::Numeric), ("b", FeatureKind::Numeric)],
    );
    let extra = format!(
        "models: [{{ name: m, features: [a, c], baseline: {} }}]\n",
        baseline.display()
    );
    let error = Sidecar::start_monitoring(&config(closed_port().await, &extra))
        .await
        .expect_err("mismatched baseline must not start");
    let message = error.to_string();
    assert!(
        message.contains("model m") && message.contains('c') && message.contains('b'),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outlier_is_flagged_with_its_reasons_and_request_id() {
    let upstream = answering_upstream().await;
    let baseline = small_baseline(
        &temp_dir(),
        &[("a", FeatureKind::Numeric), ("b", FeatureKind::Numeric)],
    );
    // The stub upstream always answers [0.1, 0.7, 0.2] (0.80 nats); allow
    // that much entropy so only the inputs decide here.
    let extra = format!(
        "models: [{{ name: m, protocol: kserve_v2, features: [a, b], baseline: {} }}]\n\
         anomaly: {{ max_entropy: 1.0 }}\n",
        baseline.display()
    );
    let sidecar = Sidecar::start_monitoring(&config(upstream.addr, &extra))
        .await
        .expect("sidecar");
    let send_row = |a: &str, id: &'static str| {
        let body = named_inputs(&[("a", "FP32", a), ("b", "FP32", "0.4")]);
        let uri = format!("http://{}/v2/models/m/infer", sidecar.proxy_addr());
        async move {
            let (parts, _) = send(
                Request::post(uri)
                    .header("x-request-id", id)
                    .body(Full::new(Bytes::from(body)))
                    .expect("request"),
            )
            .await;
            assert_eq!(parts.status, 200);
        }
    };
    send_row("0.5", "typical-1").await;
    send_row("0.3", "typical-2").await;
    send_row("50", "outlier").await;
    wait_until("the outlier is listed", || async {
        let (_, body) = admin_get(&sidecar, "/v1/anomalies").await;
        body.contains("\"outlier\"")
    })
    .await;
    let (_, body) = admin_get(&sidecar, "/v1/anomalies").await;
    let report: serde_json::Value = serde_json::from_str(&body).expect("json");
    let flagged = report["models"][0]["anomalies"]
        .as_array()
        .expect("anomalies");
    assert!(
        flagged.iter().all(|f| f["request_id"] == "outlier"),
        "only the outlier is flagged: {report:#}"
    );
    let reasons = flagged[0]["reasons"].as_array().expect("reasons");
    let robust_z = reasons
        .iter()
        .find(|r| r["detector"] == "robust_z")
        .unwrap_or_else(|| panic!("robust z flags it: {reasons:?}"));
    assert_eq!(robust_z["features"], serde_json::json!(["a"]));
    assert!(robust_z["score"].as_f64() > robust_z["threshold"].as_f64());
    let (_, metrics) = admin_get(&sidecar, "/metrics").await;
    assert_eq!(
        metric(
            &metrics,
            "sidewatch_anomalies_total{model=\"m\",detector=\"robust_z\"} "
        ),
        Some(1),
        "{metrics}"
    );
    sidecar.shutdown().await;
}
