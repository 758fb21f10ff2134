use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::*;
use crate::monitor::stats::CONCEPT_DETECTORS;
use crate::observation::{FeatureValue, Prediction};

const T0: SystemTime = SystemTime::UNIX_EPOCH;

struct Fixture {
    hub: FeedbackHub,
    now: Arc<AtomicU64>,
    classifier: Arc<ModelFeedback>,
    regressor: Arc<ModelFeedback>,
}

fn fixture(ttl: Duration, capacity: usize) -> Fixture {
    let settings = Feedback {
        enabled: true,
        ttl,
        capacity,
        window: 100,
        ddm: crate::config::DEFAULT_DDM,
    };
    let classifier = Arc::new(ModelFeedback::new(
        Arc::new(ModelStats::new(Arc::from("iris"), "kserve_v2")),
        &settings,
    ));
    let regressor = Arc::new(ModelFeedback::new(
        Arc::new(ModelStats::new(Arc::from("price"), "kserve_v2")),
        &settings,
    ));
    let now = Arc::new(AtomicU64::new(0));
    let seen = now.clone();
    let clock: Clock = Arc::new(move || T0 + Duration::from_millis(seen.load(Ordering::Relaxed)));
    Fixture {
        hub: FeedbackHub::new(vec![classifier.clone(), regressor.clone()], clock),
        now,
        classifier,
        regressor,
    }
}

fn observation(id: &str, row: u32, at_ms: u64, prediction: Prediction) -> Observation {
    Observation {
        model: Arc::from("m"),
        version: None,
        time: T0 + Duration::from_millis(at_ms),
        request_id: Arc::from(id),
        exchange: 0,
        row,
        features: vec![FeatureValue::Number(1.0)],
        prediction: Some(prediction),
    }
}

fn class(c: u32) -> Prediction {
    Prediction {
        class: Some(c),
        ..Prediction::default()
    }
}

fn value(x: f64) -> Prediction {
    Prediction {
        value: Some(x),
        score: Some(x),
        ..Prediction::default()
    }
}

fn answer(hub: &FeedbackHub, body: &str) -> (u16, Value) {
    hub.answer(body.as_bytes())
}

#[test]
fn ddm_is_the_third_concept_detector() {
    assert_eq!(CONCEPT_DETECTORS[DDM], "ddm");
}

#[test]
fn a_label_joins_its_prediction_once() {
    let f = fixture(Duration::from_secs(60), 100);
    f.classifier.record(&[observation("a", 0, 0, class(2))]);
    let (status, body) = answer(&f.hub, r#"{"request_id":"a","label":2}"#);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "joined");
    assert_eq!(body["model"], "iris");
    assert_eq!(body["correct"], true);
    assert_eq!(f.classifier.accuracy(), Some(1.0));

    let (status, body) = answer(&f.hub, r#"{"request_id":"a","label":1}"#);
    assert_eq!((status, &body["kind"]), (409, &json!("duplicate_feedback")));
    let (status, body) = answer(&f.hub, r#"{"request_id":"nope","label":1}"#);
    assert_eq!((status, &body["kind"]), (404, &json!("unknown_request_id")));
    assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()));
    assert_eq!(f.classifier.results("joined"), 1);
    assert_eq!(f.classifier.results("duplicate"), 1);
    assert_eq!(count(&f.hub.unattributed, "unknown"), 1);
}

#[test]
fn labels_may_be_numbers_strings_or_booleans() {
    let f = fixture(Duration::from_secs(60), 100);
    f.classifier.record(&[
        observation("n", 0, 0, class(1)),
        observation("s", 0, 0, class(1)),
        observation("b", 0, 0, class(1)),
    ]);
    for body in [
        r#"{"request_id":"n","label":1}"#,
        r#"{"request_id":"s","label":"1"}"#,
        r#"{"request_id":"b","label":true}"#,
    ] {
        let (status, answer) = answer(&f.hub, body);
        assert_eq!((status, &answer["correct"]), (200, &json!(true)), "{body}");
    }
}

#[test]
fn values_give_the_mean_absolute_error() {
    let f = fixture(Duration::from_secs(60), 100);
    f.regressor.record(&[
        observation("x", 0, 0, value(10.0)),
        observation("x", 1, 0, value(20.0)),
    ]);
    let (status, body) = answer(
        &f.hub,
        r#"[{"request_id":"x","value":12.5},{"request_id":"x","row":1,"value":19}]"#,
    );
    assert_eq!(status, 200);
    assert_eq!(body["counts"]["joined"], 2, "{body}");
    assert_eq!(body["results"][0]["absolute_error"], 2.5);
    assert_eq!(body["results"][1]["row"], 1);
    assert_eq!(f.regressor.mae(), Some(1.75));
    assert_eq!(f.regressor.accuracy(), None);
}

#[test]
fn the_wrong_kind_of_truth_is_refused_and_the_prediction_stays() {
    let f = fixture(Duration::from_secs(60), 100);
    f.classifier.record(&[observation("c", 0, 0, class(0))]);
    f.regressor.record(&[observation("r", 0, 0, value(1.0))]);
    for (body, kind) in [
        (
            r#"{"request_id":"c","value":1.0}"#,
            "feedback_kind_mismatch",
        ),
        (r#"{"request_id":"r","label":1}"#, "feedback_kind_mismatch"),
        (r#"{"request_id":"c","label":"setosa"}"#, "invalid_label"),
        (r#"{"request_id":"c","label":1.5}"#, "invalid_label"),
    ] {
        let (status, answer) = answer(&f.hub, body);
        assert_eq!((status, &answer["kind"]), (422, &json!(kind)), "{body}");
        assert_eq!(answer["result"], "invalid");
    }
    let (status, _) = answer(&f.hub, r#"{"request_id":"c","label":0}"#);
    assert_eq!(status, 200);
    assert_eq!(f.classifier.results("invalid"), 3);
}

#[test]
fn malformed_bodies_and_items_are_400() {
    let f = fixture(Duration::from_secs(60), 100);
    for body in [
        "not json",
        "42",
        r#"{"label":1}"#,
        r#"{"request_id":7,"label":1}"#,
        r#"{"request_id":"a"}"#,
        r#"{"request_id":"a","label":1,"value":2}"#,
        r#"{"request_id":"a","value":"high"}"#,
        r#"{"request_id":"a","label":null}"#,
        r#"{"request_id":"a","label":1,"row":-1}"#,
        r#"{"request_id":"a","label":1,"colour":"red"}"#,
        r#"{"request_id":"","label":1}"#,
    ] {
        let (status, answer) = answer(&f.hub, body);
        assert_eq!(
            (status, &answer["kind"]),
            (400, &json!("malformed_feedback")),
            "{body}"
        );
    }
    let long = format!(r#"{{"request_id":"{}","label":1}}"#, "x".repeat(300));
    assert_eq!(answer(&f.hub, &long).0, 400);
    assert_eq!(count(&f.hub.unattributed, "invalid"), 12);
}

#[test]
fn a_batch_answers_every_item_and_counts_them() {
    let f = fixture(Duration::from_secs(10), 100);
    f.classifier.record(&[
        observation("old", 0, 0, class(1)),
        observation("ok", 0, 9_000, class(1)),
        observation("bad", 0, 9_000, class(1)),
    ]);
    f.now.store(11_000, Ordering::Relaxed);
    let (status, body) = answer(
        &f.hub,
        r#"[{"request_id":"ok","label":0},{"request_id":"old","label":1},
            {"request_id":"who","label":1},{"request_id":"bad","value":1},"junk",
            {"request_id":"ok","label":0}]"#,
    );
    assert_eq!(status, 200);
    let statuses: Vec<u64> = body["results"]
        .as_array()
        .map(|r| r.iter().filter_map(|r| r["status"].as_u64()).collect())
        .unwrap_or_default();
    assert_eq!(statuses, [200, 410, 404, 422, 400, 409], "{body:#}");
    assert_eq!(body["results"][0]["correct"], false);
    assert_eq!(body["results"][1]["kind"], "feedback_expired");
    assert_eq!(
        body["counts"],
        json!({"joined": 1, "unknown": 1, "expired": 1, "invalid": 2, "duplicate": 1})
    );
    assert_eq!(f.classifier.accuracy(), Some(0.0));
    assert!(
        answer(&f.hub, "[]").1["results"]
            .as_array()
            .is_some_and(Vec::is_empty)
    );
}

#[test]
fn expired_and_evicted_predictions_are_410_not_404() {
    let f = fixture(Duration::from_secs(10), 2);
    f.classifier.record(&[observation("a", 0, 0, class(0))]);
    f.classifier.record(&[observation("b", 0, 1_000, class(0))]);
    f.classifier.record(&[observation("c", 0, 2_000, class(0))]);
    let (status, body) = answer(&f.hub, r#"{"request_id":"a","label":0}"#);
    assert_eq!((status, &body["kind"]), (410, &json!("feedback_evicted")));
    assert_eq!(body["model"], "iris");
    f.now.store(11_500, Ordering::Relaxed);
    let (status, body) = answer(&f.hub, r#"{"request_id":"b","label":0}"#);
    assert_eq!((status, &body["kind"]), (410, &json!("feedback_expired")));
    assert_eq!(answer(&f.hub, r#"{"request_id":"c","label":0}"#).0, 200);
    assert_eq!(f.classifier.results("expired"), 2);
    let summary = f.hub.summary();
    assert_eq!(summary["models"][0]["evicted"], 1);
    assert_eq!(summary["models"][0]["expired"], 1);
}

#[test]
fn rows_without_a_class_or_value_are_not_recorded() {
    let f = fixture(Duration::from_secs(10), 10);
    f.classifier
        .record(&[observation("p", 0, 0, Prediction::default())]);
    assert_eq!(f.hub.summary()["models"][0]["pending"], 0);
    assert_eq!(answer(&f.hub, r#"{"request_id":"p","label":0}"#).0, 404);
}

#[test]
fn a_rising_error_rate_on_feedback_trips_ddm() {
    let f = fixture(Duration::from_secs(3600), 100_000);
    let mut rng = fastrand::Rng::with_seed(11);
    let mut feed = |from: usize, n: usize, error_rate: f64| {
        for i in from..from + n {
            let id = format!("r{i}");
            f.classifier.record(&[observation(&id, 0, 0, class(1))]);
            let label = u32::from(rng.f64() >= error_rate);
            let body = format!(r#"{{"request_id":"{id}","label":{label}}}"#);
            assert_eq!(answer(&f.hub, &body).0, 200);
        }
    };
    feed(0, 2000, 0.1);
    assert_eq!(
        f.classifier.stats.concept_drifts(DDM),
        0,
        "stable error rate"
    );
    let accuracy = f.classifier.accuracy().unwrap_or(0.0);
    assert!((0.8..=0.97).contains(&accuracy), "{accuracy}");
    feed(2000, 2000, 0.5);
    assert!(f.classifier.stats.concept_drifts(DDM) >= 1);
    assert!(f.classifier.ddm().last_drift.is_some());
    assert_eq!(
        f.hub.summary()["models"][0]["ddm"]["events"].as_u64(),
        Some(f.classifier.stats.concept_drifts(DDM))
    );
}

#[test]
fn metrics_show_results_accuracy_and_mae() {
    let f = fixture(Duration::from_secs(60), 100);
    f.classifier.record(&[observation("a", 0, 0, class(1))]);
    f.regressor.record(&[observation("b", 0, 0, value(1.0))]);
    answer(
        &f.hub,
        r#"[{"request_id":"a","label":1},{"request_id":"b","value":3},{"request_id":"z","value":3}]"#,
    );
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(FeedbackMetrics(Arc::new(f.hub))));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap_or_default();
    for line in [
        "sidewatch_feedback_total{model=\"iris\",result=\"joined\"} 1",
        "sidewatch_feedback_total{model=\"unknown\",result=\"unknown\"} 1",
        "sidewatch_feedback_accuracy{model=\"iris\"} 1.0",
        "sidewatch_feedback_mae{model=\"price\"} 2.0",
        "sidewatch_feedback_pending{model=\"iris\"} 0",
        "sidewatch_concept_warning{model=\"iris\",detector=\"ddm\"} 0",
    ] {
        assert!(text.contains(line), "{line} missing in\n{text}");
    }
    assert!(!text.contains("sidewatch_feedback_accuracy{model=\"price\"}"));
}
