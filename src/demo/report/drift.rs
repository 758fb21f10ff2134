//! The drift parts of what the demo prints: the verdict on the live line,
//! and the summary's account of the baseline, the detection and the final
//! evaluation.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::monitor::report::{MethodResult, ModelDrift};

use crate::demo::baseline;
use crate::demo::phase::DRIFT;
use crate::demo::watch::{DriftWatch, FirstFlag, evaluated};
use crate::demo::{ALPHA, DriftTiming};

/// The verdict on the live line: `drift: none`, `drift: a, b (share 0.50)`.
pub fn live(report: &ModelDrift) -> String {
    if report.baseline != "ready" {
        return format!("drift: baseline {}", report.baseline);
    }
    if !evaluated(report) {
        return format!("drift: warming up ({} in window)", report.window_count);
    }
    let drifted = drifted_features(report);
    match (drifted.is_empty(), report.prediction.drifted) {
        (true, false) => "drift: none".to_owned(),
        (true, true) => "drift: predictions only".to_owned(),
        (false, predictions) => format!(
            "drift: {}{}",
            drifted.join(", "),
            if predictions { " + predictions" } else { "" }
        ),
    }
}

/// The summary's drift section. `elapsed` is how long the traffic ran.
pub fn summary(
    out: &mut String,
    watch: &DriftWatch,
    elapsed: Duration,
    baseline: &Path,
    timing: DriftTiming,
) {
    let _ = writeln!(
        out,
        "  baseline      {}: {} rows drawn like the baseline phase, with predictions\n                {} (removed at exit)",
        watch.latest().baseline,
        baseline::ROWS,
        baseline.display(),
    );
    let _ = writeln!(
        out,
        "  window        {}, evaluated every {}, alpha {ALPHA}",
        humantime::format_duration(timing.window),
        humantime::format_duration(timing.step),
    );
    detection(out, watch, elapsed);
    let Some(report) = watch.last_evaluated() else {
        let latest = watch.latest();
        let why = latest.note.as_deref().unwrap_or("no evaluation");
        let _ = writeln!(out, "  drifted       not evaluated ({why})");
        return;
    };
    final_table(out, report);
    let drifted = drifted_features(report);
    if drifted.is_empty() {
        out.push_str("  drifted       none\n");
    } else {
        let _ = writeln!(
            out,
            "  drifted       {} (share {:.2})",
            drifted.join(", "),
            report.drifted_share
        );
    }
}

/// When the shifted features were first flagged, and any false alarm.
fn detection(out: &mut String, watch: &DriftWatch, elapsed: Duration) {
    let flags: Vec<(&str, FirstFlag)> = watch
        .features()
        .chain([("predictions", watch.prediction())])
        .collect();
    match watch.drift_start().filter(|s| *s < elapsed) {
        Some(start) => {
            let _ = writeln!(
                out,
                "  drift phase   began at {:.1}s: {}",
                start.as_secs_f64(),
                DRIFT.describe_shift().join(", ")
            );
            let mut after: Vec<(&str, Duration)> = flags
                .iter()
                .filter_map(|(name, flag)| Some((*name, flag.after?)))
                .collect();
            after.sort_by_key(|(_, at)| *at);
            let list: Vec<String> = after
                .iter()
                .map(|(name, at)| format!("{name} +{:.1}s", at.as_secs_f64()))
                .collect();
            if list.is_empty() {
                out.push_str("  detected      nothing in the drift phase\n");
            } else {
                let _ = writeln!(
                    out,
                    "  detected      {} after the phase began",
                    list.join(", ")
                );
            }
        }
        None => {
            let _ = writeln!(
                out,
                "  drift phase   did not begin in the {:.1}s the traffic ran",
                elapsed.as_secs_f64()
            );
        }
    }
    // The baseline phase draws from the baseline's own distribution: any
    // flag there is a false alarm, and the demo says so rather than hide it.
    let before: Vec<String> = flags
        .iter()
        .filter_map(|(name, flag)| Some(format!("{name} at {:.1}s", flag.before?.as_secs_f64())))
        .collect();
    if before.is_empty() {
        out.push_str("  false alarms  none in the baseline phase\n");
    } else {
        let _ = writeln!(
            out,
            "  false alarms  {} (baseline phase)",
            before.join(", ")
        );
    }
}

/// The last evaluation: each feature's KS p-value and PSI, and the
/// predictions' tests.
fn final_table(out: &mut String, report: &ModelDrift) {
    let threshold = report
        .features
        .iter()
        .flat_map(|f| &f.methods)
        .find(|m| m.p_value.is_some())
        .map(|m| m.threshold);
    let _ = write!(
        out,
        "  at the end    {} observations in the window",
        report.window_count
    );
    match threshold {
        Some(t) => {
            let _ = writeln!(out, "; a p-value below {t:.1e} is drift");
        }
        None => out.push('\n'),
    }
    let _ = writeln!(
        out,
        "                {:<20} {:<5} {:>9} {:>7}",
        "", "test", "p-value", "PSI"
    );
    for feature in &report.features {
        let test = find(&feature.methods, "ks", None);
        let psi = find(&feature.methods, "psi", None);
        row(out, &feature.feature, test, psi, feature.drifted);
    }
    for (label, target, test) in [
        ("predicted class", "class", "chi2"),
        ("prediction score", "score", "ks"),
    ] {
        let test = find(&report.prediction.methods, test, Some(target));
        let psi = find(&report.prediction.methods, "psi", Some(target));
        if test.is_some() || psi.is_some() {
            let drifted = test.is_some_and(|t| t.drifted);
            row(out, label, test, psi, drifted);
        }
    }
}

fn row(
    out: &mut String,
    name: &str,
    test: Option<&MethodResult>,
    psi: Option<&MethodResult>,
    drifted: bool,
) {
    let _ = writeln!(
        out,
        "                {name:<20} {:<5} {:>9} {:>7}  {}",
        test.map_or("-", |t| t.method),
        test.and_then(|t| t.p_value).map_or("-".into(), p_value),
        psi.map_or("-".into(), |p| format!("{:.3}", p.score)),
        if drifted { "drifted" } else { "-" },
    );
}

fn find<'a>(
    methods: &'a [MethodResult],
    method: &str,
    target: Option<&str>,
) -> Option<&'a MethodResult> {
    methods
        .iter()
        .find(|m| m.method == method && m.target == target)
}

fn drifted_features(report: &ModelDrift) -> Vec<&str> {
    report
        .features
        .iter()
        .filter(|f| f.drifted)
        .map(|f| f.feature.as_str())
        .collect()
}

/// Small p-values in scientific notation; an underflow as a bound.
fn p_value(p: f64) -> String {
    if p == 0.0 {
        "<1e-300".to_owned()
    } else if p < 1e-3 {
        format!("{p:.1e}")
    } else {
        format!("{p:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::report::FeatureDrift;

    fn feature(name: &str, drifted: bool) -> FeatureDrift {
        FeatureDrift {
            feature: name.to_owned(),
            kind: "numeric",
            count: 500,
            drifted,
            methods: Vec::new(),
        }
    }

    fn ks(p_value: f64) -> MethodResult {
        MethodResult {
            method: "ks",
            target: None,
            score: 0.1,
            raw_score: None,
            p_value: Some(p_value),
            threshold: 0.05,
            drifted: p_value < 0.05,
        }
    }

    #[test]
    fn the_live_verdict_names_what_drifted() {
        let mut report = ModelDrift {
            baseline: "ready",
            window_count: 120,
            ..ModelDrift::default()
        };
        assert_eq!(live(&report), "drift: warming up (120 in window)");
        // Below min_samples the features are listed, untested.
        report.features = vec![
            feature("sepal_length", false),
            feature("petal_length", false),
        ];
        assert_eq!(live(&report), "drift: warming up (120 in window)");
        for f in &mut report.features {
            f.methods.push(ks(0.5));
        }
        assert_eq!(live(&report), "drift: none");
        report.prediction.drifted = true;
        assert_eq!(live(&report), "drift: predictions only");
        report.features[1].drifted = true;
        report.drifted_share = 0.5;
        assert_eq!(live(&report), "drift: petal_length + predictions");
        report.baseline = "missing";
        assert_eq!(live(&report), "drift: baseline missing");
    }

    #[test]
    fn p_values_read_at_any_size() {
        assert_eq!(p_value(0.4123), "0.412");
        assert_eq!(p_value(2.1e-38), "2.1e-38");
        assert_eq!(p_value(0.0), "<1e-300");
    }
}
