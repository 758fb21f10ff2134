//! One drift evaluation: a window's summary against the baseline, every
//! configured method per feature, the multiple-testing correction across
//! features, the model's drifted share, and the multivariate detectors on
//! the numeric features taken together (see [`Multivariate`]).
//!
//! A feature's verdict comes from the hypothesis tests (KS for numbers,
//! chi-square for categories) after correction, so the false-alarm rate is
//! the configured alpha. The distances (PSI, JS, Hellinger, Wasserstein)
//! are reported with their conventional thresholds and decide the verdict
//! only when no test is configured.

use std::collections::BTreeMap;

use crate::baseline::{Baseline, NumericProfile};
use crate::config::{Correction, Drift, DriftMethod};
use crate::detect::drift;
use crate::window::{FeatureSummary, NumericSummary, WindowSummary};

use super::report::{FeatureDrift, MethodResult, ModelDrift, PredictionDrift};

mod multivariate;

pub use multivariate::Multivariate;

/// Samples this small use the exact KS distribution; larger ones the
/// asymptotic one, whose error is then well below the test's resolution.
const KS_EXACT_MAX: usize = 100;

/// A test with a p-value awaiting the correction across features.
struct Pending {
    feature: Option<usize>,
    result: usize,
    p_value: f64,
}

/// Evaluates `summary` against `baseline`, and its multivariate sums with
/// `multivariate` (fitted on the same baseline).
pub fn evaluate(
    baseline: &Baseline,
    summary: &WindowSummary,
    settings: &Drift,
    multivariate: &Multivariate,
    evaluated_at: String,
) -> ModelDrift {
    let joint = multivariate::judge(multivariate, baseline, summary, settings.min_samples);
    let mut report = ModelDrift {
        model: baseline.model.clone(),
        baseline: "ready",
        window_count: summary.count,
        evaluated_at: Some(evaluated_at),
        multivariate_drifted: joint.as_ref().is_some_and(|j| j.drifted),
        multivariate: joint,
        ..ModelDrift::default()
    };
    if summary.count < settings.min_samples {
        report.note = Some(format!(
            "the window holds {} observations; drift is evaluated from drift.min_samples = {}",
            summary.count, settings.min_samples
        ));
        // Still list the features, so an operator sees what is watched.
        report.features = baseline
            .features
            .iter()
            .zip(&summary.features)
            .map(|(profile, window)| FeatureDrift {
                feature: profile.name.clone(),
                kind: match window {
                    FeatureSummary::Numeric(_) => "numeric",
                    FeatureSummary::Categorical { .. } => "categorical",
                },
                count: match window {
                    FeatureSummary::Numeric(n) => n.count,
                    FeatureSummary::Categorical { counts, .. } => counts.values().sum(),
                },
                drifted: false,
                methods: Vec::new(),
            })
            .collect();
        return report;
    }
    report.evaluated = true;
    let mut pending = Vec::new();
    for (profile, window) in baseline.features.iter().zip(&summary.features) {
        let (kind, count, methods) = match (
            window,
            profile.numeric.as_ref(),
            profile.categorical.as_ref(),
        ) {
            (FeatureSummary::Numeric(current), Some(reference), _) => (
                "numeric",
                current.count,
                numeric_methods(reference, current, settings),
            ),
            (FeatureSummary::Categorical { counts, .. }, _, Some(reference)) => {
                let current: BTreeMap<String, f64> = counts
                    .iter()
                    .map(|(k, v)| (k.to_string(), *v as f64))
                    .collect();
                let reference: BTreeMap<String, f64> = reference
                    .counts
                    .iter()
                    .map(|(k, v)| (k.clone(), *v as f64))
                    .collect();
                let count = current.values().sum::<f64>() as u64;
                (
                    "categorical",
                    count,
                    categorical_methods(&reference, &current, settings),
                )
            }
            _ => continue,
        };
        for (r, (_, p)) in methods.iter().enumerate() {
            if let Some(p_value) = p {
                pending.push(Pending {
                    feature: Some(report.features.len()),
                    result: r,
                    p_value: *p_value,
                });
            }
        }
        report.features.push(FeatureDrift {
            feature: profile.name.clone(),
            kind,
            count,
            drifted: false,
            methods: methods.into_iter().map(|(m, _)| m).collect(),
        });
    }
    if let Some(prediction) = &baseline.prediction {
        let mut methods = Vec::new();
        if !prediction.class_counts.is_empty() && !summary.classes.is_empty() {
            let reference: BTreeMap<String, f64> = prediction
                .class_counts
                .iter()
                .map(|(c, n)| (c.to_string(), *n as f64))
                .collect();
            let current: BTreeMap<String, f64> = summary
                .classes
                .iter()
                .map(|(c, n)| (c.to_string(), *n as f64))
                .collect();
            methods.extend(
                categorical_methods(&reference, &current, settings)
                    .into_iter()
                    .map(|(mut m, p)| {
                        m.target = Some("class");
                        (m, p)
                    }),
            );
        }
        if let Some(score) = &prediction.score
            && summary.score.count > 0
        {
            methods.extend(
                numeric_methods(score, &summary.score, settings)
                    .into_iter()
                    .map(|(mut m, p)| {
                        m.target = Some("score");
                        (m, p)
                    }),
            );
        }
        for (r, (_, p)) in methods.iter().enumerate() {
            if let Some(p_value) = p {
                pending.push(Pending {
                    feature: None,
                    result: r,
                    p_value: *p_value,
                });
            }
        }
        report.prediction.methods = methods.into_iter().map(|(m, _)| m).collect();
    }
    apply_correction(&mut report, &pending, settings);
    decide(&mut report.features, &mut report.prediction);
    let evaluated = report.features.len().max(1) as f64;
    report.drifted_share = report.features.iter().filter(|f| f.drifted).count() as f64 / evaluated;
    report
}

fn numeric_methods(
    reference: &NumericProfile,
    current: &NumericSummary,
    settings: &Drift,
) -> Vec<(MethodResult, Option<f64>)> {
    let total: u64 = current.bins.iter().sum();
    let proportions: Vec<f64> = current
        .bins
        .iter()
        .map(|&n| {
            if total == 0 {
                0.0
            } else {
                n as f64 / total as f64
            }
        })
        .collect();
    let mut out = Vec::new();
    for method in &settings.methods {
        let result = match method {
            DriftMethod::Psi => distance(*method, drift::psi(&reference.proportions, &proportions)),
            DriftMethod::JensenShannon => distance(
                *method,
                drift::jensen_shannon_distance(&reference.proportions, &proportions),
            ),
            DriftMethod::Hellinger => distance(
                *method,
                drift::hellinger(&reference.proportions, &proportions),
            ),
            DriftMethod::Wasserstein => {
                // Normalising by the reference spread makes one threshold fit
                // features of any unit.
                let w1 = drift::wasserstein_1(&reference.sample, &current.sample);
                let raw = w1.as_ref().ok().copied();
                distance(
                    *method,
                    w1.map(|d| drift::normalize_wasserstein(d, reference.std)),
                )
                .map(|(mut result, p)| {
                    result.raw_score = raw;
                    (result, p)
                })
            }
            DriftMethod::Ks => {
                let mode = if reference.sample.len().max(current.sample.len()) <= KS_EXACT_MAX {
                    drift::KsMode::Exact
                } else {
                    drift::KsMode::Asymptotic
                };
                match drift::ks_2samp(&reference.sample, &current.sample, mode) {
                    Ok(ks) => Some((
                        test(*method, ks.statistic, ks.p_value, settings.alpha),
                        Some(ks.p_value),
                    )),
                    Err(_) => continue,
                }
            }
            DriftMethod::ChiSquare => continue,
        };
        let Some(result) = result else { continue };
        out.push(result);
    }
    out
}

fn categorical_methods(
    reference: &BTreeMap<String, f64>,
    current: &BTreeMap<String, f64>,
    settings: &Drift,
) -> Vec<(MethodResult, Option<f64>)> {
    // Align on the union of labels: labels unseen in the baseline still count.
    let labels: Vec<&String> = reference
        .keys()
        .chain(current.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let reference_counts: Vec<f64> = labels
        .iter()
        .map(|l| reference.get(*l).copied().unwrap_or(0.0))
        .collect();
    let current_counts: Vec<f64> = labels
        .iter()
        .map(|l| current.get(*l).copied().unwrap_or(0.0))
        .collect();
    let shares = |counts: &[f64]| {
        let total: f64 = counts.iter().sum();
        counts
            .iter()
            .map(|c| if total > 0.0 { c / total } else { 0.0 })
            .collect::<Vec<_>>()
    };
    let mut out = Vec::new();
    for method in &settings.methods {
        match method {
            DriftMethod::ChiSquare => {
                if let Ok(chi) = drift::chi_square(&reference_counts, &current_counts) {
                    out.push((
                        test(*method, chi.statistic, chi.p_value, settings.alpha),
                        Some(chi.p_value),
                    ));
                }
            }
            DriftMethod::Psi => {
                if let Some(result) = distance(
                    *method,
                    drift::psi(&shares(&reference_counts), &shares(&current_counts)),
                ) {
                    out.push(result);
                }
            }
            _ => {}
        }
    }
    out
}

/// A distance compared with its conventional threshold; `None` when the
/// inputs could not be compared (empty window, no finite values).
fn distance(
    method: DriftMethod,
    score: Result<f64, drift::DriftError>,
) -> Option<(MethodResult, Option<f64>)> {
    let score = score.ok()?;
    let threshold = method.default_threshold();
    Some((
        MethodResult {
            method: method.as_str(),
            target: None,
            score,
            raw_score: None,
            p_value: None,
            threshold,
            drifted: method.is_drift(score, threshold),
        },
        None,
    ))
}

/// A test; its verdict is set by the correction.
fn test(method: DriftMethod, statistic: f64, p_value: f64, alpha: f64) -> MethodResult {
    MethodResult {
        method: method.as_str(),
        target: None,
        score: statistic,
        raw_score: None,
        p_value: Some(p_value),
        threshold: alpha,
        drifted: false,
    }
}

fn apply_correction(report: &mut ModelDrift, pending: &[Pending], settings: &Drift) {
    let p_values: Vec<f64> = pending.iter().map(|p| p.p_value).collect();
    let (rejected, threshold) = match settings.correction {
        Correction::None => (
            p_values.iter().map(|&p| p < settings.alpha).collect(),
            settings.alpha,
        ),
        Correction::Bonferroni => (
            drift::bonferroni(&p_values, settings.alpha),
            settings.alpha / p_values.len().max(1) as f64,
        ),
        Correction::BenjaminiHochberg => (
            drift::benjamini_hochberg(&p_values, settings.alpha),
            settings.alpha,
        ),
    };
    for (entry, reject) in pending.iter().zip(rejected) {
        let methods = match entry.feature {
            Some(f) => report.features.get_mut(f).map(|f| &mut f.methods),
            None => Some(&mut report.prediction.methods),
        };
        if let Some(result) = methods.and_then(|m| m.get_mut(entry.result)) {
            result.drifted = reject;
            result.threshold = threshold;
        }
    }
}

fn decide(features: &mut [FeatureDrift], prediction: &mut PredictionDrift) {
    let verdict = |methods: &[MethodResult]| {
        let tests: Vec<&MethodResult> = methods.iter().filter(|m| m.p_value.is_some()).collect();
        if tests.is_empty() {
            methods.iter().any(|m| m.drifted)
        } else {
            tests.iter().any(|m| m.drifted)
        }
    };
    for feature in features {
        feature.drifted = verdict(&feature.methods);
    }
    prediction.drifted = verdict(&prediction.methods);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::baseline::{BaselineBuilder, BuildOptions, FeatureKind, LineageInputs};
    use crate::config::{Config, Overrides};
    use crate::observation::{FeatureValue, Observation, Prediction};
    use crate::window::{FeatureSpec, Window, WindowSpec};

    fn settings(extra: &str) -> Drift {
        let yaml = format!("upstream: http://127.0.0.1:1\ndrift: {{ min_samples: 50{extra} }}\n");
        Config::from_yaml(&yaml, &Overrides::default())
            .expect("valid")
            .drift
    }

    fn observation(x: f64, label: &str, class: u32) -> Observation {
        let mut p = [0.1, 0.1, 0.1];
        p[class as usize] = 0.8;
        Observation {
            model: Arc::from("m"),
            version: None,
            time: SystemTime::UNIX_EPOCH,
            request_id: Arc::from("r"),
            exchange: 0,
            row: 0,
            features: vec![
                FeatureValue::Number(x),
                FeatureValue::Category(Arc::from(label)),
            ],
            prediction: Some(Prediction::from_probabilities(&p)),
        }
    }

    /// A baseline over a numeric `x` and a categorical `c`, with predictions.
    fn fixture(rows: impl Fn(usize) -> Observation, n: usize) -> (Baseline, Window) {
        let features = vec![
            ("x".into(), FeatureKind::Numeric),
            ("c".into(), FeatureKind::Categorical),
        ];
        let mut builder = BaselineBuilder::new("m", features, BuildOptions::default());
        for i in 0..n {
            let o = rows(i);
            builder.add_row(&o.features, o.prediction.as_ref());
        }
        let baseline = builder
            .finish(LineageInputs::live(n as u64, SystemTime::UNIX_EPOCH))
            .expect("baseline");
        let spec = WindowSpec {
            length: Duration::from_secs(300),
            step: Duration::from_secs(30),
            sample_cap: 2000,
            features: vec![
                FeatureSpec::Numeric {
                    edges: baseline.features[0]
                        .numeric
                        .as_ref()
                        .map(|n| n.edges.clone())
                        .unwrap_or_default(),
                },
                FeatureSpec::Categorical,
            ],
            score_edges: baseline
                .prediction
                .as_ref()
                .and_then(|p| p.score.as_ref())
                .map(|s| s.edges.clone()),
            multivariate: None,
        };
        (baseline, Window::new(spec, 1))
    }

    fn reference(i: usize) -> Observation {
        observation((i % 97) as f64, ["a", "b", "c"][i % 3], (i % 3) as u32)
    }

    #[test]
    fn a_stable_window_drifts_nowhere() {
        let (baseline, mut window) = fixture(reference, 3000);
        for i in 0..600 {
            window.observe(i as u64, &reference(i * 7 + 1));
        }
        let report = evaluate(
            &baseline,
            &window.summary(),
            &settings(""),
            &Multivariate::Off,
            "t".into(),
        );
        assert_eq!(report.features.len(), 2);
        assert!(report.features.iter().all(|f| !f.drifted), "{report:#?}");
        assert!(!report.prediction.drifted, "{:#?}", report.prediction);
        let categorical: Vec<&str> = report.features[1]
            .methods
            .iter()
            .map(|m| m.method)
            .collect();
        assert_eq!(categorical, ["psi", "chi2"]);
        let w1 = report.features[0]
            .methods
            .iter()
            .find(|m| m.method == "wasserstein");
        let w1 = w1.expect("wasserstein on the numeric feature");
        let raw = w1.raw_score.expect("raw distance");
        let std = baseline.features[0].numeric.as_ref().map_or(0.0, |n| n.std);
        assert!(
            raw > 0.0
                && (w1.score - crate::detect::drift::normalize_wasserstein(raw, std)).abs() < 1e-12
        );
    }

    #[test]
    fn unseen_categories_and_shifted_classes_are_caught() {
        let (baseline, mut window) = fixture(reference, 3000);
        for i in 0..600 {
            // Half the traffic now carries a category the baseline never saw,
            // and the model answers class 2 far more often.
            let label = if i % 2 == 0 {
                "new"
            } else {
                ["a", "b", "c"][i % 3]
            };
            let class = if i % 4 == 0 { (i % 3) as u32 } else { 2 };
            window.observe(i as u64, &observation((i % 97) as f64, label, class));
        }
        let report = evaluate(
            &baseline,
            &window.summary(),
            &settings(""),
            &Multivariate::Off,
            "t".into(),
        );
        assert!(
            !report.features[0].drifted,
            "x did not move: {:#?}",
            report.features[0]
        );
        assert!(report.features[1].drifted, "{:#?}", report.features[1]);
        let class_tests: Vec<_> = report
            .prediction
            .methods
            .iter()
            .filter(|m| m.target == Some("class"))
            .collect();
        assert!(
            class_tests.iter().any(|m| m.method == "chi2" && m.drifted),
            "{class_tests:#?}"
        );
        assert!(report.prediction.drifted);
        assert_eq!(report.drifted_share, 0.5);
    }

    #[test]
    fn bonferroni_divides_alpha_by_the_number_of_tests() {
        let (baseline, mut window) = fixture(reference, 3000);
        for i in 0..600 {
            window.observe(i as u64, &reference(i * 7 + 1));
        }
        let report = evaluate(
            &baseline,
            &window.summary(),
            &settings(", alpha: 0.04"),
            &Multivariate::Off,
            "t".into(),
        );
        let tests: Vec<&MethodResult> = report
            .features
            .iter()
            .flat_map(|f| &f.methods)
            .chain(&report.prediction.methods)
            .filter(|m| m.p_value.is_some())
            .collect();
        assert!(tests.len() >= 3);
        for test in tests {
            assert!(
                (test.threshold - 0.04 / (report_tests(&report) as f64)).abs() < 1e-15,
                "{test:?}"
            );
        }
    }

    fn report_tests(report: &ModelDrift) -> usize {
        report
            .features
            .iter()
            .flat_map(|f| &f.methods)
            .chain(&report.prediction.methods)
            .filter(|m| m.p_value.is_some())
            .count()
    }
}
