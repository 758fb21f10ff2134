//! What the demo prints: the addresses to try, one line per second while
//! traffic flows, and a summary at the end.

mod anomaly;
mod concept;
mod drift;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::Sidecar;
use crate::sidecar::ShutdownReport;
use crate::telemetry::latency::Series;

use super::DriftTiming;
use super::anomalies::AnomalyTally;
use super::labels::{self, LabelStats};
use super::model::{CLASSES, MODEL_NAME};
use super::outlier::{EVERY, Outlier};
use super::phase::{self, PHASES};
use super::traffic::{CLIENTS, RATE, TrafficStats};
use super::watch::DriftWatch;

/// What a run observed, for the summary.
#[derive(Debug)]
pub struct Run<'a> {
    /// The clients' counters.
    pub traffic: &'a TrafficStats,
    /// The labeller's counters.
    pub labels: &'a LabelStats,
    /// The drift and concept-drift verdicts.
    pub watch: &'a DriftWatch,
    /// The anomaly verdicts.
    pub tally: &'a AnomalyTally,
}

/// The per-second view; remembers the previous line for the rate.
#[derive(Debug)]
pub struct Live {
    duration: Duration,
    last_requests: u64,
    last_elapsed: Duration,
}

// === impl Live ===

impl Live {
    /// Starts a view of a run lasting `duration`.
    pub fn new(duration: Duration) -> Self {
        Live {
            duration,
            last_requests: 0,
            last_elapsed: Duration::ZERO,
        }
    }

    /// The line for the moment `elapsed` into the run.
    pub fn line(
        &mut self,
        elapsed: Duration,
        sidecar: &Sidecar,
        traffic: &TrafficStats,
        watch: &DriftWatch,
        tally: &AnomalyTally,
    ) -> String {
        let requests = traffic.requests();
        let window = elapsed.saturating_sub(self.last_elapsed).as_secs_f64();
        let rate = if window > 0.0 {
            requests.saturating_sub(self.last_requests) as f64 / window
        } else {
            0.0
        };
        self.last_requests = requests;
        self.last_elapsed = elapsed;
        // Quantiles cover the whole run so far: a steadier read than one second's worth.
        let overhead = sidecar.stats().latency().overhead;
        // Errors only take room on the line once there are any.
        let errors = match traffic.errors() {
            0 => String::new(),
            n => format!("  errors {n}"),
        };
        format!(
            "{:>5.1}s  {:<8} requests {:>5} {:>4.0}/s{errors}  overhead p50 {:>3.0}µs p99 {:>4.0}µs  {}  {}  {}",
            elapsed.as_secs_f64(),
            phase::phase_at(elapsed, self.duration).name,
            requests,
            rate,
            overhead.quantile_seconds(0.5) * 1e6,
            overhead.quantile_seconds(0.99) * 1e6,
            anomaly::live(tally),
            concept::live(watch),
            drift::live(&watch.latest()),
        )
    }
}

/// What runs where, printed before the traffic starts.
pub fn banner(
    sidecar: &Sidecar,
    model: SocketAddr,
    duration: Duration,
    baseline: &Path,
    timing: DriftTiming,
) -> String {
    let proxy = sidecar.proxy_addr();
    let phases: Vec<String> = PHASES
        .iter()
        .map(|p| {
            let shift = p.describe_shift();
            if shift.is_empty() {
                format!("{} {:.0}%", p.name, p.share * 100.0)
            } else {
                format!("{} {:.0}% ({})", p.name, p.share * 100.0, shift.join(", "))
            }
        })
        .collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "sidewatch demo: {CLIENTS} clients -> sidecar -> {MODEL_NAME} model (KServe v2), ~{RATE:.0} req/s for {}",
        humantime::format_duration(duration)
    );
    let _ = writeln!(out, "  model server  http://{model}");
    let _ = writeln!(
        out,
        "  proxy         http://{proxy}/v2/models/{MODEL_NAME}/infer"
    );
    out.push_str(&admin_urls(sidecar.admin_addr()));
    let _ = writeln!(
        out,
        "  try           curl -s http://{proxy}/v2/models/{MODEL_NAME}/infer \\\n                  -d '{{\"inputs\":[{{\"name\":\"input\",\"shape\":[1,4],\"datatype\":\"FP32\",\"data\":[5.1,3.5,1.4,0.2]}}]}}'"
    );
    let _ = writeln!(out, "  phases        {}", phases.join(", "));
    let kinds: Vec<String> = Outlier::ALL
        .iter()
        .map(|k| format!("{} ({})", k.name(), k.describe()))
        .collect();
    let _ = writeln!(
        out,
        "  outliers      1 request in {EVERY}: {}",
        kinds.join(", ")
    );
    let _ = writeln!(
        out,
        "  labels        each flower's species, posted to /v1/feedback {}ms after its answer",
        labels::DELAY.as_millis()
    );
    let _ = write!(
        out,
        "  baseline      {} (removed at exit)\n  drift         window {}, evaluated every {}\nCtrl-C ends the traffic early.",
        baseline.display(),
        humantime::format_duration(timing.window),
        humantime::format_duration(timing.step),
    );
    out
}

/// The end-of-run report; `elapsed` is how long the traffic ran.
pub fn summary(
    elapsed: Duration,
    sidecar: &Sidecar,
    run: &Run<'_>,
    baseline: &Path,
    timing: DriftTiming,
) -> String {
    let Run {
        traffic,
        labels,
        watch,
        tally,
    } = *run;
    let mut out = String::from("\nsummary\n");
    let requests = traffic.requests();
    let seconds = elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
    let _ = writeln!(
        out,
        "  requests      {requests} in {seconds:.1}s ({:.1} req/s), {} rows, {} errors",
        requests as f64 / seconds,
        traffic.rows(),
        traffic.errors(),
    );
    let latency = sidecar.stats().latency();
    let _ = writeln!(
        out,
        "  latency       request  {}",
        quantiles(&latency.request)
    );
    let _ = writeln!(
        out,
        "                overhead {}",
        quantiles(&latency.overhead)
    );

    let predicted = traffic.predicted();
    let total: u64 = predicted.iter().sum();
    let classes: Vec<String> = CLASSES
        .iter()
        .zip(predicted)
        .map(|(name, n)| format!("{name} {n} ({:.1}%)", percent(n, total)))
        .collect();
    let _ = writeln!(out, "  predictions   {}", classes.join(", "));
    let _ = writeln!(
        out,
        "                {:.1}% match the species each flower was drawn from",
        percent(traffic.agreed(), traffic.flowers())
    );

    match sidecar.mirror_stats() {
        Some(mirror) => {
            let dropped: Vec<String> = mirror
                .dropped_by_reason()
                .filter(|(_, n)| *n > 0)
                .map(|(reason, n)| format!("{reason} {n}"))
                .collect();
            let dropped_total: u64 = mirror.dropped_by_reason().map(|(_, n)| n).sum();
            let _ = write!(
                out,
                "  mirror        offered {}, consumed {}, dropped {dropped_total}",
                mirror.offered(),
                mirror.consumed(),
            );
            if !dropped.is_empty() {
                let _ = write!(out, " ({})", dropped.join(", "));
            }
            out.push('\n');
        }
        None => out.push_str("  mirror        off\n"),
    }
    let stats = watch.stats();
    let _ = writeln!(
        out,
        "  monitor       {} observations, {} decode errors, {} shard-queue drops",
        stats.observations(),
        stats.decode_errors(),
        stats.shard_drops(),
    );
    drift::summary(&mut out, watch, elapsed, baseline, timing);
    concept::summary(&mut out, watch, labels, elapsed);
    anomaly::summary(&mut out, tally, traffic.injected());
    out.push_str(&admin_urls(sidecar.admin_addr()));
    out
}

/// The last line, after everything stopped.
pub fn stopped(report: ShutdownReport) -> String {
    format!(
        "stopped: {} connections cut, mirror {}",
        report.connections_cut,
        if report.mirror_flushed {
            "flushed"
        } else {
            "not fully flushed"
        }
    )
}

fn admin_urls(admin: SocketAddr) -> String {
    format!(
        "  admin         http://{admin}/metrics\n                http://{admin}/v1/stats\n                http://{admin}/v1/drift\n                http://{admin}/v1/anomalies\n                http://{admin}/v1/feedback\n                http://{admin}/readyz\n"
    )
}

fn quantiles(series: &Series) -> String {
    format!(
        "p50 {:<8} p99 {:<8} max {}",
        human(series.quantile_seconds(0.5)),
        human(series.quantile_seconds(0.99)),
        human(series.max_seconds())
    )
}

/// Seconds in the unit that reads best at that size.
fn human(seconds: f64) -> String {
    if seconds < 1e-3 {
        format!("{:.0}µs", seconds * 1e6)
    } else if seconds < 1.0 {
        format!("{:.2}ms", seconds * 1e3)
    } else {
        format!("{seconds:.2}s")
    }
}

fn percent(part: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        part as f64 * 100.0 / total as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_read_in_a_fitting_unit() {
        assert_eq!(human(0.000_085), "85µs");
        assert_eq!(human(0.001_234), "1.23ms");
        assert_eq!(human(2.5), "2.50s");
        assert_eq!(human(0.0), "0µs");
    }

    #[test]
    fn percentages_survive_an_empty_run() {
        assert_eq!(percent(0, 0), 0.0);
        assert_eq!(percent(1, 4), 25.0);
    }
}
