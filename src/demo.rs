//! `sidewatch demo`: a model server, the sidecar in front of it and traffic
//! through it, all in one process, so one command on a fresh machine shows
//! the proxy, its tee, drift, anomaly and concept-drift detection at work.
//!
//! ```text
//! traffic (8 clients) ──► sidecar proxy ──► model server (iris, KServe v2)
//! baseline, then drift;     │ tee
//! 1% injected outliers      ▼
//!       │              mirror queue ──► monitor: decode, window, drift tests,
//!       │                               anomaly detectors, concept drift
//!       │ species                          │ (/v1/drift, verdicts,
//!       ▼                                  │  /v1/anomalies)
//!   labeller ──► POST /v1/feedback ──► accuracy, DDM
//!                          live line and summary ◄──┘
//! ```
//!
//! The baseline is drawn in process from the baseline phase's distribution
//! before anything starts; halfway through, the traffic shifts two features
//! (see `phase.rs`) and the live line shows when the monitor notices: the
//! features drift, the prediction scores drop (Page–Hinkley, ADWIN) and
//! the labelled accuracy falls (DDM). Throughout, one request in a hundred
//! carries a row no flower has (`outlier.rs`) for the anomaly detectors.

mod anomalies;
mod baseline;
mod evidence;
mod labels;
pub mod model;
mod outlier;
mod phase;
mod report;
mod traffic;
mod watch;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::time::{Instant, MissedTickBehavior};

use crate::config::{Config, Overrides};
use crate::sidecar::Sidecar;
use anomalies::AnomalyTally;
use baseline::BaselineFile;
use evidence::Evidence;
use labels::LabelStats;
use model::{FEATURES, MODEL_NAME, ModelServer};
use traffic::TrafficStats;
use watch::DriftWatch;

/// The proxy's usual port, used when free so the printed URLs are familiar.
const PROXY_PORT: u16 = 8000;
/// The admin server's usual port, likewise.
const ADMIN_PORT: u16 = 9464;
/// How long the summary waits for the mirror to catch up with the traffic.
const MIRROR_CATCH_UP: Duration = Duration::from_secs(2);
/// How often the drift verdict is read, so that the time of the first
/// detection is known to a tenth of a second, not to the live line's second.
const POLL: Duration = Duration::from_millis(100);
/// Observations a window needs before it is tested: about a second of
/// traffic, and enough for KS to see a shift of a few tenths of a σ.
const MIN_SAMPLES: u64 = 200;
/// sidewatch's default significance level, spelled out so the summary can
/// name it; Bonferroni spreads it over the six tests (KS on four features,
/// chi-square on the classes, KS on the score). The demo keeps the default
/// to show what a user gets: the shifts are detected within a second or two
/// even so, and the measurements are rounded to the millimetre, which makes
/// KS conservative (tied values), so chance flags on the unshifted features
/// are rarer than alpha suggests.
const ALPHA: f64 = 0.05;
/// The window stays within these bounds whatever the run's length.
const MIN_WINDOW: Duration = Duration::from_secs(2);
const MAX_WINDOW: Duration = Duration::from_secs(10);
/// Labels the rolling accuracy covers (`feedback.window`, the default):
/// about four seconds of traffic, so the accuracy shown just before the
/// drift phase is the baseline phase's, and the one at the end the drift
/// phase's.
const FEEDBACK_WINDOW: usize = 1000;
/// How long the summary waits for the labeller to post the last labels.
const LABELS_CATCH_UP: Duration = Duration::from_secs(5);

/// The drift window and its step for a run of a given length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DriftTiming {
    /// What each evaluation compares with the baseline.
    window: Duration,
    /// How often the window advances and is evaluated.
    step: Duration,
}

/// Runs the demo: traffic for `duration` (or until Ctrl-C), then a summary.
pub async fn run(duration: Duration) -> anyhow::Result<()> {
    let listener = TcpListener::bind(any_port())
        .await
        .context("cannot listen for the model server")?;
    let model = ModelServer::start(listener).context("cannot start the model server")?;
    let baseline = BaselineFile::create()?;
    let evidence = Evidence::create()?;
    let timing = DriftTiming::for_run(duration);
    let sidecar = start_sidecar(model.addr(), baseline.path(), &evidence, timing).await?;
    let monitor = sidecar
        .monitor()
        .context("the sidecar does not monitor anything")?;
    let drift_start = phase::drift_start(duration);
    let mut watch = DriftWatch::new(&monitor, drift_start)
        .context("the sidecar does not monitor the demo model")?;
    println!(
        "{}",
        report::banner(&sidecar, model.addr(), duration, baseline.path(), timing)
    );

    let traffic_stats = Arc::new(TrafficStats::default());
    let label_stats = Arc::new(LabelStats::default());
    let (label_tx, label_rx) = tokio::sync::mpsc::unbounded_channel();
    let started = Instant::now();
    let shift_at = evidence::shift_time(SystemTime::now(), drift_start);
    let mut tally = AnomalyTally::new(&monitor, SystemTime::now(), drift_start);
    let labeller = tokio::spawn(labels::run(
        sidecar.admin_addr(),
        label_rx,
        label_stats.clone(),
    ));
    let mut traffic = tokio::spawn(traffic::run(
        sidecar.proxy_addr(),
        duration,
        traffic_stats.clone(),
        label_tx,
    ));
    let mut live = report::Live::new(duration);
    let second = Duration::from_secs(1);
    let mut ticks = tokio::time::interval_at(started + second, second);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut polls = tokio::time::interval(POLL);
    polls.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    let mut interruptible = true;
    let traffic_result = loop {
        tokio::select! {
            joined = &mut traffic => {
                break joined.context("the traffic generator panicked").and_then(|r| r);
            }
            _ = ticks.tick() => {
                watch.poll(started.elapsed());
                tally.drain();
                println!("{}", live.line(started.elapsed(), &sidecar, &traffic_stats, &watch, &tally));
            }
            _ = polls.tick() => {
                watch.poll(started.elapsed());
                tally.drain();
            }
            interrupted = &mut interrupt, if interruptible => match interrupted {
                Ok(()) => {
                    traffic.abort();
                    println!("interrupted: stopping the traffic");
                    break Ok(());
                }
                Err(error) => {
                    tracing::warn!(%error, "Cannot listen for Ctrl-C; the demo runs to the end.");
                    interruptible = false;
                }
            },
        }
    };
    let elapsed = started.elapsed();

    // Report and shut down whatever happened to the traffic; its error comes last.
    let expected = traffic_stats
        .requests()
        .saturating_sub(traffic_stats.errors());
    wait_for_mirror(&sidecar, expected).await;
    // The traffic's end closed the labeller's channel: it posts the rest.
    match tokio::time::timeout(LABELS_CATCH_UP, labeller).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(error))) => tracing::warn!(error = format!("{error:#}"), "Labeller failed."),
        Ok(Err(error)) => tracing::warn!(%error, "Labeller panicked."),
        Err(_) => tracing::warn!("The labeller did not finish; the summary is partial."),
    }
    watch
        .settle(traffic_stats.rows(), timing.step, started)
        .await;
    tally.drain();
    println!(
        "{}",
        report::summary(
            elapsed,
            &sidecar,
            &report::Run {
                traffic: &traffic_stats,
                labels: &label_stats,
                watch: &watch,
                tally: &tally,
            },
            baseline.path(),
            timing
        )
    );
    let mut alerts = String::new();
    evidence::alert_summary(sidecar.alerts().map(|r| &**r), shift_at, &mut alerts);
    print!("{alerts}");
    let stopped = sidecar.shutdown().await;
    model.shutdown().await;
    // The log is closed (final checkpoint) only once the sidecar stopped.
    print!("{}", evidence.verify());
    println!("{}", report::stopped(stopped));
    traffic_result.context("the traffic generator failed")
}

fn any_port() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

/// `port` on localhost if nothing listens there now, otherwise port 0.
fn free_or_any(port: u16) -> SocketAddr {
    let preferred = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match std::net::TcpListener::bind(preferred) {
        Ok(_) => preferred,
        Err(error) => {
            tracing::info!(port, %error, "Port is busy; the demo uses a free one.");
            any_port()
        }
    }
}

async fn start_sidecar(
    upstream: SocketAddr,
    baseline: &Path,
    evidence: &Evidence,
    timing: DriftTiming,
) -> anyhow::Result<Sidecar> {
    let (listen, admin) = (free_or_any(PROXY_PORT), free_or_any(ADMIN_PORT));
    let files = Files { baseline, evidence };
    match Sidecar::start_monitoring(&config(listen, admin, upstream, &files, timing)?).await {
        Ok(sidecar) => return Ok(sidecar),
        // Another process may have taken a port since it was probed.
        Err(error) if (listen, admin) != (any_port(), any_port()) => {
            tracing::info!(%error, "Retrying on free ports.");
        }
        Err(error) => return Err(error).context("cannot start the sidecar"),
    }
    let config = config(any_port(), any_port(), upstream, &files, timing)?;
    Sidecar::start_monitoring(&config)
        .await
        .context("cannot start the sidecar")
}

/// The files the demo's config names.
struct Files<'a> {
    baseline: &'a Path,
    evidence: &'a Evidence,
}

/// A path as a YAML scalar: a JSON string is a valid YAML double-quoted
/// scalar, whatever the path holds.
fn yaml_path(path: &Path) -> anyhow::Result<String> {
    let text = path
        .to_str()
        .with_context(|| format!("the path {} is not UTF-8", path.display()))?;
    serde_json::to_string(text).context("cannot quote a path")
}

/// The sidecar's config for the demo, written as a user would write it.
fn config(
    listen: SocketAddr,
    admin: SocketAddr,
    upstream: SocketAddr,
    files: &Files<'_>,
    timing: DriftTiming,
) -> anyhow::Result<Config> {
    let baseline = yaml_path(files.baseline)?;
    let audit_dir = yaml_path(files.evidence.log())?;
    let signing_key = yaml_path(files.evidence.signing_key())?;
    let alert = evidence::ALERT;
    let yaml = format!(
        r#"
listen: "{listen}"
admin: "{admin}"
upstream: "http://{upstream}"
upstream_protocol: http1
health_path: /v2/health/ready
models:
  - name: {MODEL_NAME}
    protocol: kserve_v2
    features: [{features}]
    baseline: {baseline}
drift:
  window: {window}ms
  step: {step}ms
  min_samples: {MIN_SAMPLES}
  alpha: {ALPHA}
feedback:
  window: {FEEDBACK_WINDOW}
mirror:
  queue: 4096
  max_payload: 64KiB
  workers: 1
limits:
  max_body: 1MiB
  request_timeout: 5s
shutdown:
  drain: 2s
alerts:
  evaluate_every: 250ms
  rules:
    # Half the features drifting is no chance flag: one of four at most.
    - name: {alert}
      signal: drift.drifted_share
      above: 0.3
      resolve_below: 0.1
      for: 500ms
      severity: warning
      annotations:
        summary: "{{{{ labels.model }}}}: a share of {{{{ value }}}} of its features drifted (threshold {{{{ threshold }}}})"
        runbook_url: https://example.com/runbooks/feature-drift
  sinks: [{{ type: log }}]
audit:
  dir: {audit_dir}
  payloads: flagged
  redact: [/parameters]
  signing_key: {signing_key}
  checkpoint: {{ every: 1000, interval: 5s }}
"#,
        features = FEATURES.join(", "),
        window = timing.window.as_millis(),
        step = timing.step.as_millis(),
    );
    Config::from_yaml(&yaml, &Overrides::default()).context("the demo's config is invalid")
}

/// Waits until the proxy has offered an exchange for each of the `expected`
/// answered requests and the consumers have taken them all, so that the
/// summary's counts are final. The proxy offers an exchange just after the
/// client got the last byte, hence the wait.
async fn wait_for_mirror(sidecar: &Sidecar, expected: u64) {
    let Some(mirror) = sidecar.mirror_stats() else {
        return;
    };
    let deadline = Instant::now() + MIRROR_CATCH_UP;
    loop {
        let dropped: u64 = mirror.dropped_by_reason().map(|(_, n)| n).sum();
        let offered = mirror.offered();
        if offered >= expected && mirror.consumed() + dropped >= offered {
            return;
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                offered,
                expected,
                "The mirror did not catch up; the summary is partial."
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// === impl DriftTiming ===

impl DriftTiming {
    /// A quarter of the run, that is half the drift phase, within
    /// [`MIN_WINDOW`] and [`MAX_WINDOW`], rounded to a tenth of a second.
    ///
    /// Half the phase because detection comes a fraction of a window after
    /// the shift (once the shifted rows are a large enough share of it), and
    /// by the end of the run the window holds only shifted traffic, so the
    /// final verdict compares the new distribution with the baseline cleanly.
    /// Below 2 s a window would hold too few rows for `min_samples`; above
    /// 10 s (2,600 rows) more rows no longer help, as the tests sample at
    /// most `drift.sample` values, and detection only gets slower.
    ///
    /// The step is a tenth of the window, at most a second: the window
    /// moves smoothly and the live line sees a fresh verdict every second.
    fn for_run(duration: Duration) -> DriftTiming {
        let quarter = (duration / 4).clamp(MIN_WINDOW, MAX_WINDOW);
        let window = Duration::from_millis(quarter.as_millis() as u64 / 100 * 100);
        DriftTiming {
            window,
            step: (window / 10).min(Duration::from_secs(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BaselineSource, Protocol};

    #[test]
    fn the_demo_config_is_valid() {
        let addr = |port| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let baseline = Path::new("/tmp/odd \"dir\"/iris.baseline.json");
        let timing = DriftTiming::for_run(Duration::from_secs(30));
        let evidence = Evidence::create().expect("key pair");
        let files = Files {
            baseline,
            evidence: &evidence,
        };
        let config =
            config(addr(8000), addr(0), addr(40_000), &files, timing).expect("valid config");
        assert_eq!(config.listen, addr(8000));
        assert_eq!(config.upstream.authority.as_str(), "127.0.0.1:40000");
        assert_eq!(config.models.len(), 1);
        assert_eq!(config.models[0].name, "iris");
        assert_eq!(config.models[0].protocol, Some(Protocol::KserveV2));
        assert_eq!(config.models[0].features, FEATURES);
        assert_eq!(
            config.models[0].baseline,
            Some(BaselineSource::File(baseline.to_owned()))
        );
        assert_eq!(config.drift.window, timing.window);
        assert_eq!(config.drift.step, timing.step);
        assert_eq!(config.drift.min_samples, MIN_SAMPLES);
        assert_eq!(config.drift.alpha, ALPHA);
        assert!(config.mirror.enabled);
        assert_eq!(
            config.audit.as_ref().map(|a| a.dir.as_path()),
            Some(evidence.log())
        );
        assert_eq!(config.alerts.rules.len(), 1);
        if let Some(dir) = evidence.log().parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    #[test]
    fn the_window_is_half_the_drift_phase_within_bounds() {
        let timing = |secs| {
            let t = DriftTiming::for_run(Duration::from_secs_f64(secs));
            (t.window.as_millis(), t.step.as_millis())
        };
        assert_eq!(timing(30.0), (7500, 750));
        assert_eq!(timing(20.0), (5000, 500));
        assert_eq!(timing(13.0), (3200, 320));
        assert_eq!(timing(6.0), (2000, 200));
        assert_eq!(timing(0.5), (2000, 200));
        assert_eq!(timing(600.0), (10_000, 1000));
    }
}
