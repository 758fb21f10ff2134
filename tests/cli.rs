//! The real binary: `config check`, `run` draining in-flight requests on
//! SIGTERM before exiting 0, and `demo` showing drift, concept drift and
//! anomalies in its summary.

mod common;

use std::process::{Command, Stdio};

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::Full;

const BIN: &str = env!("CARGO_BIN_EXE_sidewatch");

fn write_temp(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sidewatch-cli-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write temp file");
    path
}

#[test]
fn config_check_accepts_the_shipped_example() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/sidewatch.yaml");
    let output = Command::new(BIN)
        .args(["config", "check", example])
        .output()
        .expect("run");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("OK"));
}

#[test]
fn config_check_lists_every_problem_and_exits_1() {
    let path = write_temp(
        "bad.yaml",
        "listen: here\nupstream: http://127.0.0.1:8080\nlimits: { max_body: huge, header_timeout: never }\nmirror: { queue: 0 }\nmodels: [{ name: iris, colour: blue }]\n",
    );
    let output = Command::new(BIN)
        .args(["config", "check"])
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for key in [
        "listen:",
        "limits.max_body:",
        "limits.header_timeout:",
        "mirror.queue:",
        "models[0].colour",
    ] {
        assert!(stderr.contains(key), "{key} not reported in:\n{stderr}");
    }
    assert!(stderr.contains("5 problems"), "{stderr}");

    let output = Command::new(BIN)
        .args(["config", "check", "/nonexistent/sidewatch.yaml"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read config file"));
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_then_exits_0() {
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let held = release.clone();
    let mut upstream = upstream(move |_| {
        let held = held.clone();
        async move {
            held.notified().await;
            Response::new(full("done"))
        }
    })
    .await;
    let upstream_url = format!("http://{}", upstream.addr);
    let Running {
        mut child, proxy, ..
    } = spawn_run(
        BIN,
        &[
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--upstream",
            &upstream_url,
        ],
    );

    let in_flight = tokio::spawn(send(
        Request::get(format!("http://{proxy}/slow"))
            .body(Full::new(Bytes::new()))
            .expect("request"),
    ));
    next_received(&mut upstream).await;
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    wait_until("the proxy stops accepting", || async {
        tokio::net::TcpStream::connect(proxy).await.is_err()
    })
    .await;
    assert!(!in_flight.is_finished());

    release.notify_one();
    let (parts, body) = tokio::time::timeout(DEADLINE, in_flight)
        .await
        .expect("in time")
        .expect("task");
    assert_eq!(parts.status, 200);
    assert_eq!(body, Bytes::from("done"));
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
}

#[test]
fn run_without_an_upstream_says_so() {
    let output = Command::new(BIN)
        .args(["run", "--listen", "127.0.0.1:0"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("upstream: required"));
}

/// The number before `what` in `text`, e.g. `20` in `20 of 20`.
fn number_before(text: &str, what: &str) -> Option<f64> {
    text.split(what)
        .next()?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

#[test]
fn demo_runs_end_to_end_and_prints_a_summary() {
    // 10s: a 5s drift phase, and the demo's shortest windows (2.5s), so
    // the shift is detected within about a second, the final window holds
    // only shifted traffic, and the labels of the drift phase fill the
    // rolling accuracy's 1,000 by the end.
    let output = Command::new(BIN)
        .args(["demo", "--duration", "10s"])
        .stdin(Stdio::null())
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = stdout
        .split("\nsummary\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no summary in:\n{stdout}"));
    let requests: u64 = summary
        .split_whitespace()
        .skip_while(|w| *w != "requests")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no request count in:\n{summary}"));
    assert!(
        requests > 500,
        "only {requests} requests in 10s:\n{summary}"
    );
    assert!(summary.contains(" 0 errors"), "{summary}");
    for url in ["/metrics", "/v1/drift", "/v1/anomalies", "/v1/feedback"] {
        assert!(summary.contains(url), "{url} in the summary:\n{summary}");
    }
    assert!(
        summary.contains(&format!("offered {requests}")),
        "every request mirrored:\n{summary}"
    );
    assert!(summary.contains(" 0 decode errors"), "{summary}");
    assert!(summary.contains("baseline      ready"), "{summary}");

    // Exactly the two shifted features drifted at the end. The traffic is
    // seeded, so the final window holds the same rows run after run; only
    // its edges move with timing ...
    let field = |name: &str| {
        summary
            .lines()
            .find_map(|l| l.strip_prefix(&format!("  {name:<14}")))
            .unwrap_or_else(|| panic!("no `{name}` line in:\n{summary}"))
    };
    let drifted: Vec<&str> = field("drifted")
        .split(" (")
        .next()
        .unwrap_or_default()
        .split(", ")
        .collect();
    assert_eq!(drifted, ["sepal_width", "petal_length"], "{summary}");
    // ... and each was first flagged well within the 5s drift phase.
    let detected = field("detected");
    for feature in ["sepal_width", "petal_length"] {
        let after: f64 = detected
            .split(", ")
            .find_map(|item| item.strip_prefix(&format!("{feature} +")))
            .and_then(|rest| rest.split('s').next())
            .and_then(|seconds| seconds.parse().ok())
            .unwrap_or_else(|| panic!("{feature} not detected in the drift phase:\n{summary}"));
        assert!(after < 2.5, "{feature} detected {after}s in:\n{summary}");
    }

    // Concept drift: the shift lowers the prediction scores (ADWIN) and
    // triples the error rate of the labelled predictions (DDM). Each alone
    // caught it within 3s of the 5s phase in all of 200 simulated runs at
    // the demo's rate; at least one must have fired after the shift (on a
    // loaded machine the traffic may run slower, so no tighter time is
    // required), and the accuracy must have dropped.
    let concept = field("concept drift");
    let fired: Vec<(&str, f64)> = concept
        .split(" after")
        .next()
        .unwrap_or_default()
        .split(", ")
        .filter_map(|item| {
            let (name, rest) = item.split_once(" +")?;
            Some((name, rest.split('s').next()?.parse().ok()?))
        })
        .collect();
    assert!(
        fired
            .iter()
            .any(|(name, _)| ["page_hinkley", "adwin", "ddm"].contains(name)),
        "no concept-drift event in the drift phase:\n{summary}"
    );
    let accuracy: Vec<f64> = field("accuracy")
        .split('%')
        .filter_map(|part| part.split_whitespace().last()?.parse().ok())
        .collect();
    let [before, at_end] = accuracy[..] else {
        panic!("two accuracies expected:\n{summary}");
    };
    assert!(before > 90.0, "{summary}");
    assert!(before - at_end > 2.0, "the accuracy dropped:\n{summary}");
    let labels = summary
        .lines()
        .find(|l| l.contains("labels posted to /v1/feedback"))
        .unwrap_or_else(|| panic!("no label count in:\n{summary}"));
    let posted = number_before(labels, "labels posted");
    assert!(posted.is_some_and(|n| n > 500.0), "{labels}");
    assert_eq!(
        posted,
        number_before(labels, "joined"),
        "every label joined"
    );

    // Anomalies: counted per detector, and the injected outliers caught:
    // every typo by the robust z-score, (almost) every row by something.
    let anomaly_row = |name: &str| {
        summary
            .lines()
            .find_map(|l| l.trim_start().strip_prefix(name))
            .unwrap_or_else(|| panic!("no anomaly row `{name}` in:\n{summary}"))
    };
    for detector in [
        "robust_z",
        "mahalanobis",
        "half_space_trees",
        "low_confidence",
        "high_entropy",
    ] {
        let row = anomaly_row(detector);
        assert!(row.contains('%') && row.contains(" of "), "{row}");
    }
    let typos = field("injected")
        .split("typo ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no typo count in:\n{summary}"));
    assert!(typos > 0.0, "{summary}");
    assert_eq!(
        number_before(anomaly_row("robust_z"), "of"),
        Some(typos),
        "every typo caught by the robust z-score:\n{summary}"
    );
    let any = anomaly_row("any detector");
    let (flagged, injected) = (number_before(any, " of"), any.split(" of ").nth(1));
    let injected: f64 = injected
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no injected count in {any}"));
    assert!(injected >= 2.0 * typos - 1.0, "{summary}");
    assert!(
        flagged.is_some_and(|n| n >= injected - 1.0),
        "injected outliers flagged:\n{summary}"
    );
    assert!(
        field("for example").starts_with("robust_z") && summary.contains("-typo: sepal_"),
        "an injected typo as the robust z example:\n{summary}"
    );

    // The drift alert fired after the shift and went to the log sink.
    let alerts = field("alerts");
    assert!(
        alerts.starts_with("IrisFeaturesDrifted fired +"),
        "the drift alert fired after the shift:\n{summary}"
    );
    assert!(
        number_before(alerts, "sent").is_some_and(|n| n >= 1.0),
        "{alerts}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Alert. alertname=\"IrisFeaturesDrifted\" status=Firing"),
        "the log sink logged the alert:\n{stderr}"
    );
    // Every request is in the audit log, and it verifies.
    let audit = field("audit log");
    assert!(audit.starts_with("intact: "), "{summary}");
    let entries = audit
        .split(" entries")
        .next()
        .and_then(|before| before.rsplit('(').next())
        .and_then(|n| n.parse::<u64>().ok());
    assert_eq!(
        entries,
        Some(requests),
        "one audit entry per request:\n{audit}"
    );
    assert!(
        summary.contains("query:  sidewatch audit query "),
        "{summary}"
    );
}

#[test]
fn config_check_loads_baseline_files() {
    let path = write_temp(
        "missing-baseline.yaml",
        "upstream: http://127.0.0.1:8080\nmodels: [{ name: iris, baseline: /nonexistent/iris.baseline.json }]\n",
    );
    let output = Command::new(BIN)
        .args(["config", "check"])
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("model iris") && stderr.contains("/nonexistent/iris.baseline.json"),
        "{stderr}"
    );
}
