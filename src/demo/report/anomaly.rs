//! The anomaly parts of what the demo prints: the count on the live line,
//! and the summary's table of rows flagged per detector, phase and
//! injection, with an example reason per detector.

use std::fmt::Write as _;

use crate::monitor::report::FlagReason;
use crate::monitor::stats::ANOMALY_DETECTORS;

use crate::demo::anomalies::{AnomalyTally, Counts, Group};
use crate::demo::outlier::{EVERY, Outlier};

/// The count on the live line.
pub fn live(tally: &AnomalyTally) -> String {
    format!("anomalies {:>4}", tally.flagged())
}

/// The summary's anomaly section; `injected` is the number of injected
/// rows answered, per [`Outlier::ALL`].
pub fn summary(out: &mut String, tally: &AnomalyTally, injected: [u64; Outlier::ALL.len()]) {
    let [baseline, drift, outliers] = Group::ALL.map(|g| tally.counts(g));
    let _ = writeln!(
        out,
        "  anomalies     {:<18} {:>16} {:>16} {:>10}",
        "rows flagged by", "baseline phase", "drift phase", "injected"
    );
    let pair = |c: &Counts, n: u64| (n, c.rows);
    for (i, name) in ANOMALY_DETECTORS.iter().enumerate() {
        let flagged = [&baseline, &drift, &outliers].map(|c| pair(c, c.by_detector[i]));
        row(out, name, flagged);
    }
    let flagged = [&baseline, &drift, &outliers].map(|c| pair(c, c.flagged));
    row(out, "any detector", flagged);
    let kinds: Vec<String> = Outlier::ALL
        .iter()
        .zip(injected)
        .map(|(kind, n)| format!("{} {n} ({})", kind.name(), kind.describe()))
        .collect();
    let _ = writeln!(
        out,
        "  injected      1 request in {EVERY}: {}",
        kinds.join(", ")
    );
    let mut first = true;
    for name in ANOMALY_DETECTORS {
        if let Some(example) = tally.example(name) {
            let label = if first { "for example" } else { "" };
            first = false;
            let _ = writeln!(
                out,
                "  {label:<14}{name:<18} {}: {}",
                example.request_id,
                reason(&example.reason)
            );
        }
    }
}

/// One detector's row from `(flagged, rows)` per [`Group`]: a share of
/// the flowers of each phase, and a count of the injected rows.
fn row(out: &mut String, name: &str, [baseline, drift, injected]: [(u64, u64); 3]) {
    let share = |(flagged, rows): (u64, u64)| format!("{flagged} ({:.2}%)", percent(flagged, rows));
    let _ = writeln!(
        out,
        "                {name:<18} {:>16} {:>16} {:>10}",
        share(baseline),
        share(drift),
        format!("{} of {}", injected.0, injected.1)
    );
}

/// A reason as a person would say it.
fn reason(reason: &FlagReason) -> String {
    let features = reason.features.join(", ");
    let (score, threshold) = (reason.score, reason.threshold);
    match reason.detector {
        "robust_z" => format!("{features} at z {score:.1} > {threshold}"),
        "mahalanobis" => format!("{features}: squared distance {score:.1} > {threshold:.1}"),
        "half_space_trees" => format!("score {score:.4} > {threshold:.4}"),
        "low_confidence" => format!("top probability {score:.2} < {threshold}"),
        "high_entropy" => format!("entropy {score:.2} > {threshold:.2} nats"),
        other => format!("{other} {score} vs {threshold}"),
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

    fn flag(detector: &'static str, features: &[&str], score: f64, threshold: f64) -> FlagReason {
        FlagReason {
            detector,
            features: features.iter().map(|f| f.to_string()).collect(),
            score,
            threshold,
        }
    }

    #[test]
    fn reasons_read_in_each_detector_s_terms() {
        assert_eq!(
            reason(&flag("robust_z", &["sepal_width"], 71.34, 4.0)),
            "sepal_width at z 71.3 > 4"
        );
        assert_eq!(
            reason(&flag(
                "mahalanobis",
                &["petal_width", "petal_length"],
                64.12,
                18.4668
            )),
            "petal_width, petal_length: squared distance 64.1 > 18.5"
        );
        assert_eq!(
            reason(&flag("low_confidence", &[], 0.5412, 0.6)),
            "top probability 0.54 < 0.6"
        );
        assert_eq!(
            reason(&flag("high_entropy", &[], 0.75, std::f64::consts::LN_2)),
            "entropy 0.75 > 0.69 nats"
        );
    }
}
