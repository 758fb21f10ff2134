//! The real binary: `config check`, and `run` draining in-flight requests
//! on SIGTERM before exiting 0.

mod common;

use std::io::{BufRead, BufReader};
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

/// Starts the binary and reads the proxy and admin addresses from its log.
fn spawn_run(args: &[&str]) -> (std::process::Child, std::net::SocketAddr) {
    let mut child = Command::new(BIN)
        .arg("run")
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sidewatch");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    // Read the log on a thread (and keep draining it, so the child never
    // blocks on a full pipe); the test waits for the start line with a deadline.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("proxy=").nth(1) {
                let addr = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let _ = tx.send(addr);
            }
        }
    });
    let proxy = rx
        .recv_timeout(DEADLINE)
        .expect("sidewatch logged its proxy address in time")
        .parse()
        .expect("proxy address in the log");
    (child, proxy)
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
    let (mut child, proxy) = spawn_run(&[
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--upstream",
        &upstream_url,
    ]);

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

#[test]
fn demo_runs_end_to_end_and_prints_a_summary() {
    // 6s: a 3s drift phase, and the demo's shortest window (2s), so the
    // shift is detected within about a second and the final window holds
    // only shifted traffic.
    let output = Command::new(BIN)
        .args(["demo", "--duration", "6s"])
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
    assert!(requests > 300, "only {requests} requests in 6s:\n{summary}");
    assert!(summary.contains(" 0 errors"), "{summary}");
    for url in ["/metrics", "/v1/drift"] {
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
    // ... and each was first flagged well within the 3s drift phase.
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
