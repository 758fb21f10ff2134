//! A drift alert end to end: a learned baseline, then traffic whose first
//! two features have moved makes `drift.ks.p_value` fire for the first
//! only (the rule's `features` selects it), and normal traffic resolves it once the window
//! has slid past the shift.

mod common;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::Full;
use sidewatch::Sidecar;
use sidewatch::demo::model::ModelServer;

async fn post(sidecar: &Sidecar, body: String) -> u16 {
    let (parts, _) = send(
        Request::post(format!(
            "http://{}/v2/models/iris/infer",
            sidecar.proxy_addr()
        ))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("request"),
    )
    .await;
    parts.status.as_u16()
}

fn iris_row(i: usize, shift: f64) -> String {
    let x = |base: f64, spread: f64| base + spread * (((i * 7919) % 100) as f64 / 100.0 - 0.5);
    format!(
        r#"{{"inputs":[{{"name":"input","shape":[1,4],"datatype":"FP32","data":[{},{},{},{}]}}]}}"#,
        x(5.8, 1.5) + shift,
        x(3.0, 0.8) + shift,
        x(3.7, 3.0),
        x(1.2, 1.4)
    )
}

/// `/v1/alerts` entries of the FeatureDrift rule.
async fn drift_alerts(sidecar: &Sidecar) -> Vec<serde_json::Value> {
    let (status, body) = admin_get(sidecar, "/v1/alerts").await;
    assert_eq!(status, 200, "{body}");
    let document: serde_json::Value = serde_json::from_str(&body).expect("json");
    document["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .filter(|a| a["labels"]["alertname"] == "FeatureDrift")
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drifted_feature_fires_and_resolves() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let model = ModelServer::start(listener).expect("model server");
    let extra = "models: [{ name: iris, baseline: { learn: 300 } }]\n\
                 drift: { window: 2s, step: 100ms, min_samples: 50, methods: [ks] }\n\
                 alerts:\n  evaluate_every: 100ms\n  rules:\n\
                 \x20   - { name: FeatureDrift, signal: drift.ks.p_value, features: [\"input_0\"], below: 0.001, resolve_above: 0.01, severity: warning }\n\
                 \x20 sinks: [{ type: log }]\n";
    let sidecar = Sidecar::start_monitoring(&config(model.addr(), extra))
        .await
        .expect("sidecar");
    for i in 0..300 {
        assert_eq!(post(&sidecar, iris_row(i, 0.0)).await, 200);
    }
    let mut i = 300;
    let deadline = std::time::Instant::now() + DEADLINE;
    let fired = loop {
        assert_eq!(post(&sidecar, iris_row(i, 3.0)).await, 200);
        i += 1;
        if let Some(alert) = drift_alerts(&sidecar)
            .await
            .into_iter()
            .find(|a| a["state"] == "firing")
        {
            break alert;
        }
        assert!(std::time::Instant::now() < deadline, "no drift alert fired");
    };
    assert_eq!(fired["labels"]["model"], "iris");
    assert_eq!(fired["labels"]["feature"], "input_0");
    assert_eq!(fired["labels"]["method"], "ks");
    assert!(fired["value"].as_f64().expect("value") < 0.001);
    // input_1 drifted as much, but the rule does not select it.
    let (_, drift) = admin_get(&sidecar, "/v1/drift").await;
    let drift: serde_json::Value = serde_json::from_str(&drift).expect("json");
    let input_1 = drift["models"][0]["features"]
        .as_array()
        .expect("features")
        .iter()
        .find(|f| f["feature"] == "input_1")
        .cloned()
        .expect("input_1");
    assert_eq!(input_1["drifted"], true, "{input_1}");
    assert!(
        drift_alerts(&sidecar)
            .await
            .iter()
            .all(|a| a["labels"]["feature"] == "input_0")
    );

    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        assert_eq!(post(&sidecar, iris_row(i, 0.0)).await, 200);
        i += 1;
        let alerts = drift_alerts(&sidecar).await;
        if alerts.iter().all(|a| a["state"] == "resolved") {
            assert_eq!(alerts.len(), 1, "{alerts:?}");
            assert_eq!(alerts[0]["fingerprint"], fired["fingerprint"]);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the drift alert never resolved: {alerts:?}"
        );
    }
    sidecar.shutdown().await;
    model.shutdown().await;
}
