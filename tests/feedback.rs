//! Ground-truth feedback through the real proxy path: predictions from an
//! in-process KServe v2 model, feedback posted by the `x-request-id` the
//! proxy answered with, rolling accuracy / MAE on `/metrics`, DDM tripping
//! when the error rate rises (and not while it holds), batches, unknown and
//! expired ids; and verdicts handed to a subscriber.

mod common;

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::Full;
use serde_json::{Value, json};
use sidewatch::Sidecar;
use sidewatch::baseline::{BaselineBuilder, BuildOptions, FeatureKind, LineageInputs};
use sidewatch::observation::FeatureValue;

/// A KServe v2 model server: `clf` answers class probabilities, `[0.9, 0.1]`
/// for a negative input and `[0.1, 0.9]` otherwise; `reg` answers `2x`.
async fn models() -> Upstream {
    upstream(|received| async move {
        let path = received.uri.path().to_owned();
        let request: Value = serde_json::from_slice(&received.body).unwrap_or(Value::Null);
        let x = request["inputs"][0]["data"][0].as_f64().unwrap_or(0.0);
        let body = if path.starts_with("/v2/models/reg/") {
            json!({"model_name": "reg", "outputs": [
                {"name": "y", "shape": [1, 1], "datatype": "FP32", "data": [2.0 * x]}]})
        } else {
            let p = if x < 0.0 { [0.9, 0.1] } else { [0.1, 0.9] };
            json!({"model_name": "clf", "outputs": [
                {"name": "probabilities", "shape": [1, 2], "datatype": "FP32", "data": p}]})
        };
        Response::builder()
            .header("content-type", "application/json")
            .body(full(body.to_string()))
            .expect("response")
    })
    .await
}

/// Sends one row to `model` and returns the request id the proxy answered
/// with (it generates one when the client sends none).
async fn predict(sidecar: &Sidecar, model: &str, x: f64, id: Option<&str>) -> String {
    let body =
        format!(r#"{{"inputs":[{{"name":"x","shape":[1,1],"datatype":"FP32","data":[{x}]}}]}}"#);
    let mut request = Request::post(format!(
        "http://{}/v2/models/{model}/infer",
        sidecar.proxy_addr()
    ))
    .header("content-type", "application/json");
    if let Some(id) = id {
        request = request.header("x-request-id", id);
    }
    let (parts, _) = send(request.body(Full::new(Bytes::from(body))).expect("request")).await;
    assert_eq!(parts.status, 200);
    parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("the proxy answers with a request id")
        .to_owned()
}

async fn post_feedback(sidecar: &Sidecar, body: String) -> (u16, Value) {
    let (parts, body) = send(
        Request::post(format!("http://{}/v1/feedback", sidecar.admin_addr()))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("request"),
    )
    .await;
    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (parts.status.as_u16(), value)
}

async fn processed(sidecar: &Sidecar, model: &str, n: u64) {
    let view = sidecar.monitor().expect("monitoring on");
    wait_until(&format!("{n} observations of {model}"), || {
        let view = view.clone();
        let model = model.to_owned();
        async move { view.model(&model).is_some_and(|m| m.observations() >= n) }
    })
    .await;
}

fn metric(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(prefix)?.trim().parse().ok())
}

async fn metrics(sidecar: &Sidecar) -> String {
    admin_get(sidecar, "/metrics").await.1
}

/// Sends `n` predictions to `clf` and posts their labels in batches of 100,
/// every `wrong_every`-th label contradicting the prediction.
async fn predict_and_label(sidecar: &Sidecar, start: u64, n: usize, wrong_every: usize) {
    let mut predicted = Vec::with_capacity(n);
    for i in 0..n {
        let x = if i % 3 == 0 { -1.0 } else { 1.0 };
        let id = predict(sidecar, "clf", x, None).await;
        predicted.push((id, u32::from(x >= 0.0)));
    }
    processed(sidecar, "clf", start + n as u64).await;
    for (b, chunk) in predicted.chunks(100).enumerate() {
        let items: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, (id, class))| {
                let wrong = (b * 100 + i) % wrong_every == wrong_every - 1;
                json!({"request_id": id, "label": if wrong { 1 - class } else { *class }})
            })
            .collect();
        let (status, answer) = post_feedback(sidecar, Value::from(items).to_string()).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["counts"]["joined"], chunk.len(), "{answer:#}");
    }
}

async fn ddm_state(sidecar: &Sidecar) -> Value {
    let (_, body) = admin_get(sidecar, "/v1/drift").await;
    let report: Value = serde_json::from_str(&body).expect("json");
    report["models"][0]["concept"]
        .as_array()
        .and_then(|c| c.iter().find(|d| d["detector"] == "ddm").cloned())
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accuracy_holds_while_the_error_rate_does_and_ddm_trips_when_it_rises() {
    let upstream = models().await;
    let extra = "models: [{ name: clf, protocol: kserve_v2, features: [x] }]\n\
                 drift: { step: 100ms, window: 1s }\nfeedback: { window: 200 }\n";
    let sidecar = Sidecar::start_monitoring(&config(upstream.addr, extra))
        .await
        .expect("sidecar");

    // 10% wrong, evenly: the rate DDM learns as normal.
    predict_and_label(&sidecar, 0, 600, 10).await;
    let text = metrics(&sidecar).await;
    assert_eq!(
        metric(&text, "sidewatch_feedback_accuracy{model=\"clf\"} "),
        Some(0.9),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "sidewatch_feedback_total{model=\"clf\",result=\"joined\"} "
        ),
        Some(600.0)
    );
    assert_eq!(
        metric(
            &text,
            "sidewatch_concept_drift_total{model=\"clf\",detector=\"ddm\"} "
        ),
        Some(0.0),
        "a steady error rate is not drift"
    );
    assert!(text.contains("sidewatch_feedback_mae") && !text.contains("sidewatch_feedback_mae{"));

    // Half wrong: DDM fires, /metrics counts it and /v1/drift shows it.
    predict_and_label(&sidecar, 600, 1000, 2).await;
    let text = metrics(&sidecar).await;
    assert!(
        metric(
            &text,
            "sidewatch_concept_drift_total{model=\"clf\",detector=\"ddm\"} "
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "sidewatch_feedback_accuracy{model=\"clf\"} "),
        Some(0.5)
    );
    wait_until("/v1/drift shows the DDM event", || async {
        let ddm = ddm_state(&sidecar).await;
        ddm["events"].as_u64().is_some_and(|n| n >= 1) && ddm["last_event_at"].is_string()
    })
    .await;
    assert!(ddm_state(&sidecar).await["warning"].is_boolean());
    let (_, summary) = admin_get(&sidecar, "/v1/feedback").await;
    let summary: Value = serde_json::from_str(&summary).expect("json");
    assert_eq!(summary["models"][0]["results"]["joined"], 1600);
    assert_eq!(summary["models"][0]["pending"], 0);
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_feedback_gets_its_own_answer() {
    let upstream = models().await;
    let extra = "models:\n  - { name: clf, protocol: kserve_v2, features: [x] }\n  \
                 - { name: reg, protocol: kserve_v2, features: [x] }\n";
    let sidecar = Sidecar::start_monitoring(&config(upstream.addr, extra))
        .await
        .expect("sidecar");
    let generated = predict(&sidecar, "clf", 1.0, None).await;
    let chosen = predict(&sidecar, "clf", -1.0, Some("client-chosen-id")).await;
    assert_eq!(chosen, "client-chosen-id");
    let regression = predict(&sidecar, "reg", 3.0, None).await;
    let other = predict(&sidecar, "reg", 1.0, None).await;
    processed(&sidecar, "clf", 2).await;
    processed(&sidecar, "reg", 2).await;

    // One object: its own status.
    let (status, answer) = post_feedback(
        &sidecar,
        json!({"request_id": generated, "label": 1}).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"], "joined");
    assert_eq!(answer["model"], "clf");
    assert_eq!(answer["correct"], true);
    let (status, answer) = post_feedback(
        &sidecar,
        json!({"request_id": generated, "label": 1}).to_string(),
    )
    .await;
    assert_eq!(
        (status, &answer["kind"]),
        (409, &json!("duplicate_feedback"))
    );
    let (status, answer) = post_feedback(
        &sidecar,
        json!({"request_id": "never-seen", "label": 1}).to_string(),
    )
    .await;
    assert_eq!(
        (status, &answer["kind"]),
        (404, &json!("unknown_request_id"))
    );
    assert!(answer["error"].is_string());
    let (status, answer) = post_feedback(
        &sidecar,
        json!({"request_id": regression, "label": 1}).to_string(),
    )
    .await;
    assert_eq!(
        (status, &answer["kind"]),
        (422, &json!("feedback_kind_mismatch")),
        "a label for a regressor"
    );
    let (status, _) = post_feedback(&sidecar, "{\"request_id\": ".to_owned()).await;
    assert_eq!(status, 400);
    let huge = format!("[{}]", vec!["{}"; 400_000].join(","));
    let (status, answer) = post_feedback(&sidecar, huge).await;
    assert_eq!((status, &answer["kind"]), (413, &json!("body_too_large")));

    // A batch: 200, one answer per item, counted.
    let (status, answer) = post_feedback(
        &sidecar,
        json!([
            {"request_id": "client-chosen-id", "label": "0"},
            {"request_id": regression, "value": 5.0},
            {"request_id": other, "label": 1},
            {"request_id": "never-seen", "value": 1.0},
            {"request_id": generated, "label": 1},
            {"label": 1},
        ])
        .to_string(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let results: Vec<(&str, u64)> = answer["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            (
                r["result"].as_str().unwrap_or(""),
                r["status"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        results,
        [
            ("joined", 200),
            ("joined", 200),
            ("invalid", 422),
            ("unknown", 404),
            ("duplicate", 409),
            ("invalid", 400),
        ]
    );
    assert_eq!(
        answer["counts"],
        json!({"joined": 2, "unknown": 1, "expired": 0, "invalid": 2, "duplicate": 1})
    );
    assert_eq!(answer["results"][1]["absolute_error"], 1.0);

    let text = metrics(&sidecar).await;
    for (line, value) in [
        ("sidewatch_feedback_accuracy{model=\"clf\"} ", 1.0),
        ("sidewatch_feedback_mae{model=\"reg\"} ", 1.0),
        (
            "sidewatch_feedback_total{model=\"clf\",result=\"joined\"} ",
            2.0,
        ),
        (
            "sidewatch_feedback_total{model=\"clf\",result=\"duplicate\"} ",
            2.0,
        ),
        (
            "sidewatch_feedback_total{model=\"reg\",result=\"invalid\"} ",
            2.0,
        ),
        (
            "sidewatch_feedback_total{model=\"unknown\",result=\"unknown\"} ",
            2.0,
        ),
        (
            "sidewatch_feedback_total{model=\"unknown\",result=\"invalid\"} ",
            2.0,
        ),
        ("sidewatch_feedback_pending{model=\"reg\"} ", 1.0),
        (
            "sidewatch_concept_warning{model=\"clf\",detector=\"ddm\"} ",
            0.0,
        ),
    ] {
        assert_eq!(metric(&text, line), Some(value), "{line}\n{text}");
    }
    assert!(!text.contains("sidewatch_feedback_accuracy{model=\"reg\"}"));
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_after_the_ttl_is_gone_not_unknown() {
    let upstream = models().await;
    let extra = "models: [{ name: clf, protocol: kserve_v2, features: [x] }]\n\
                 feedback: { ttl: 200ms }\n";
    let sidecar = Sidecar::start_monitoring(&config(upstream.addr, extra))
        .await
        .expect("sidecar");
    let id = predict(&sidecar, "clf", 1.0, None).await;
    processed(&sidecar, "clf", 1).await;
    wait_until("the prediction expires", || async {
        let (_, body) = admin_get(&sidecar, "/v1/feedback").await;
        let summary: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        summary["models"][0]["expired"] == 1 && summary["models"][0]["pending"] == 0
    })
    .await;
    let (status, answer) =
        post_feedback(&sidecar, json!({"request_id": id, "label": 1}).to_string()).await;
    assert_eq!(
        (status, &answer["kind"]),
        (410, &json!("feedback_expired")),
        "{answer}"
    );
    assert_eq!(answer["model"], "clf");
    let text = metrics(&sidecar).await;
    assert_eq!(
        metric(
            &text,
            "sidewatch_feedback_total{model=\"clf\",result=\"expired\"} "
        ),
        Some(1.0)
    );
    sidecar.shutdown().await;
}

fn baseline_file() -> std::path::PathBuf {
    let features = ["a", "b"]
        .iter()
        .map(|f| (f.to_string(), FeatureKind::Numeric))
        .collect();
    let mut builder = BaselineBuilder::new("m", features, BuildOptions::default());
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..1000 {
        let row = [rng.f64(), rng.f64()].map(FeatureValue::Number);
        builder.add_row(&row, None);
    }
    let baseline = builder
        .finish(LineageInputs::live(1000, std::time::SystemTime::now()))
        .expect("baseline");
    let dir = std::env::temp_dir().join(format!(
        "sidewatch-feedback-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("m.baseline.json");
    baseline.save(&path).expect("save");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_receives_each_verdict_with_its_anomaly_reasons() {
    let upstream = upstream(|_| async {
        Response::builder()
            .header("content-type", "application/json")
            .body(full(
                r#"{"outputs":[{"name":"p","shape":[1,2],"datatype":"FP32","data":[0.95,0.05]}]}"#,
            ))
            .expect("response")
    })
    .await;
    let extra = format!(
        "models: [{{ name: m, protocol: kserve_v2, features: [a, b], baseline: {} }}]\n",
        baseline_file().display()
    );
    let sidecar = Sidecar::start_monitoring(&config(upstream.addr, &extra))
        .await
        .expect("sidecar");
    let view = sidecar.monitor().expect("monitoring on");
    let verdicts = view.subscribe(64);
    let send_row = |a: f64, id: &'static str| {
        let body = format!(
            r#"{{"inputs":[{{"name":"a","shape":[1],"datatype":"FP32","data":[{a}]}},{{"name":"b","shape":[1],"datatype":"FP32","data":[0.5]}}]}}"#
        );
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
    send_row(0.4, "typical").await;
    send_row(80.0, "outlier").await;

    let mut received = Vec::new();
    wait_until("both verdicts arrive", || {
        received.extend(verdicts.try_iter());
        let done = received.len() >= 2;
        async move { done }
    })
    .await;
    let typical = received
        .iter()
        .find(|v| &*v.request_id == "typical")
        .expect("a verdict for the typical row");
    assert!(typical.anomalies.is_empty(), "{typical:?}");
    assert!(typical.violations.is_empty());
    assert_eq!(&*typical.model, "m");
    assert_eq!(typical.prediction.as_ref().and_then(|p| p.class), Some(0));
    let names: Vec<&str> = typical.drift.concept.iter().map(|c| c.detector).collect();
    assert_eq!(names, ["page_hinkley", "adwin", "ddm"]);

    let outlier = received
        .iter()
        .find(|v| &*v.request_id == "outlier")
        .expect("a verdict for the outlier");
    let robust_z = outlier
        .anomalies
        .iter()
        .find(|r| r.detector == "robust_z")
        .unwrap_or_else(|| panic!("robust z flags it: {outlier:?}"));
    assert_eq!(robust_z.features, ["a"]);
    assert!(robust_z.score > robust_z.threshold);
    assert!(
        outlier
            .violations
            .iter()
            .any(|v| v.feature == "a" && v.kind == "out_of_range"),
        "{outlier:?}"
    );

    // Both rows were scored, flagged or not.
    let text = metrics(&sidecar).await;
    assert_eq!(
        metric(
            &text,
            "sidewatch_anomaly_score_count{model=\"m\",detector=\"robust_z\"} "
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "sidewatch_anomaly_score_bucket{le=\"+Inf\",model=\"m\",detector=\"mahalanobis\"} "
        )
        .or_else(|| metric(
            &text,
            "sidewatch_anomaly_score_bucket{model=\"m\",detector=\"mahalanobis\",le=\"+Inf\"} "
        )),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "sidewatch_verdicts_dropped_total "),
        Some(0.0)
    );

    // A full subscriber loses verdicts, counted; the proxy does not wait.
    let stalled = view.subscribe(1);
    for id in ["x1", "x2", "x3"] {
        send_row(0.5, id).await;
    }
    wait_until("dropped verdicts are counted", || {
        let view = view.clone();
        async move { view.verdicts_dropped() >= 2 }
    })
    .await;
    assert_eq!(stalled.len(), 1);
    drop(stalled);
    drop(verdicts);
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_can_be_turned_off() {
    let upstream = models().await;
    let extra = "models: [{ name: clf, protocol: kserve_v2, features: [x] }]\n\
                 feedback: { enabled: false }\n";
    let sidecar = Sidecar::start_monitoring(&config(upstream.addr, extra))
        .await
        .expect("sidecar");
    let id = predict(&sidecar, "clf", 1.0, None).await;
    processed(&sidecar, "clf", 1).await;
    let (status, answer) =
        post_feedback(&sidecar, json!({"request_id": id, "label": 1}).to_string()).await;
    assert_eq!((status, &answer["kind"]), (404, &json!("feedback_off")));
    assert!(
        !metrics(&sidecar)
            .await
            .contains("sidewatch_feedback_total{")
    );
    sidecar.shutdown().await;
}
