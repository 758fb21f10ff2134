//! The concept-drift parts of what the demo prints: which detectors fired
//! and the accuracy on the live line, and in the summary when each fired
//! (Page–Hinkley and ADWIN on the prediction scores, DDM on the labelled
//! errors) and how the rolling accuracy moved.

use std::fmt::Write as _;
use std::time::Duration;

use crate::demo::FEEDBACK_WINDOW;
use crate::demo::labels::LabelStats;
use crate::demo::watch::{ConceptFlag, DriftWatch};

/// The accuracy and the concept detectors that fired, for the live line:
/// `accuracy 96.1%  concept: adwin, ddm`.
pub fn live(watch: &DriftWatch) -> String {
    let fired: Vec<&str> = watch
        .concept()
        .filter(|(_, flag)| flag.events > 0)
        .map(|(name, _)| name)
        .collect();
    format!(
        "accuracy {}  concept: {}",
        accuracy(watch.accuracy()),
        if fired.is_empty() {
            "none".to_owned()
        } else {
            fired.join(", ")
        }
    )
}

/// The summary's concept-drift and accuracy lines. `elapsed` is how long
/// the traffic ran.
pub fn summary(out: &mut String, watch: &DriftWatch, labels: &LabelStats, elapsed: Duration) {
    let flags: Vec<(&str, ConceptFlag)> = watch.concept().collect();
    let began = watch.drift_start().filter(|s| *s < elapsed).is_some();
    let mut after: Vec<(&str, Duration, u64)> = flags
        .iter()
        .filter_map(|(name, flag)| Some((*name, flag.first.after?, flag.events)))
        .collect();
    after.sort_by_key(|(_, at, _)| *at);
    let fired: Vec<String> = after
        .iter()
        .map(|(name, at, events)| {
            let events = if *events == 1 {
                String::new()
            } else {
                format!(" ({events} events)")
            };
            format!("{name} +{:.1}s{events}", at.as_secs_f64())
        })
        .collect();
    match (began, fired.is_empty()) {
        (false, _) => out.push_str("  concept drift the drift phase did not begin\n"),
        (true, true) => out.push_str("  concept drift nothing fired in the drift phase\n"),
        (true, false) => {
            let _ = writeln!(
                out,
                "  concept drift {} after the drift phase began",
                fired.join(", ")
            );
        }
    }
    out.push_str(
        "                (page_hinkley and adwin watch the prediction scores, ddm the labels' errors)\n",
    );
    let before: Vec<String> = flags
        .iter()
        .filter_map(|(name, flag)| {
            Some(format!(
                "{name} at {:.1}s",
                flag.first.before?.as_secs_f64()
            ))
        })
        .collect();
    if !before.is_empty() {
        let _ = writeln!(
            out,
            "                false alarms: {} (baseline phase)",
            before.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "  accuracy      {} before the drift phase, {} at the end (over the last {FEEDBACK_WINDOW} labels)",
        accuracy(watch.accuracy_before_drift()),
        accuracy(watch.accuracy()),
    );
    let _ = write!(
        out,
        "                {} labels posted to /v1/feedback, {} joined to their prediction",
        labels.queued(),
        labels.joined(),
    );
    if labels.lost() > 0 {
        let _ = write!(out, ", {} refused or given up", labels.lost());
    }
    out.push('\n');
}

fn accuracy(value: Option<f64>) -> String {
    value.map_or("-".to_owned(), |a| format!("{:.1}%", a * 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_reads_as_a_percentage_once_known() {
        assert_eq!(accuracy(None), "-");
        assert_eq!(accuracy(Some(0.9612)), "96.1%");
    }
}
