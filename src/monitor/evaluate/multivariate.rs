//! Multivariate drift in the evaluation: a model's detectors, fitted once
//! when its baseline freezes or loads, and the verdict on a window's sums.
//!
//! The verdict is reported beside the per-feature tests, not mixed into
//! `drifted_share`: that share is "which features moved", and a joint
//! change has no feature to blame. It has its own flag,
//! `multivariate_drifted`.

use std::sync::Arc;

use crate::baseline::Baseline;
use crate::config::Drift;
use crate::detect::multivariate::{
    DEFAULT_CHUNKS, MultivariateConfig, MultivariateDrift, PcaConfig,
};
use crate::window::{RowSpec, WindowSummary};

use super::super::report::{MultivariateMethod, MultivariateReport};

/// A model's multivariate drift detectors, or why it has none.
#[derive(Debug, Clone, Default)]
pub enum Multivariate {
    /// `drift.multivariate.enabled` is false (or no baseline is ready yet).
    #[default]
    Off,
    /// Enabled, but this baseline cannot support it; the reason, for the report.
    Unavailable(String),
    /// Fitted: what the window feeds each row to.
    Ready(RowSpec),
}

// === impl Multivariate ===

impl Multivariate {
    /// Fits PCA on the baseline's sample of complete numeric rows (the
    /// reference chunks' band from the same rows) and the mean shift on its
    /// mean and covariance.
    ///
    /// Rows per reference chunk: `drift.multivariate.chunk`, or else
    /// `min(drift.min_samples, rows / 10)`. A chunk should be the size of
    /// the windows it is compared with, since the spread of a mean error
    /// shrinks as 1/√size; the smallest window evaluated has
    /// `min_samples` rows, so a chunk of that size never makes the band
    /// too narrow (no extra false alarms), only a little wide for larger
    /// windows. Baselines too small for ten such chunks get ten smaller
    /// ones, NannyML's default, which errs the same (safe) way.
    pub fn fit(baseline: &Baseline, settings: &Drift) -> Multivariate {
        let options = &settings.multivariate;
        if !options.enabled {
            return Multivariate::Off;
        }
        let d = baseline.numeric_features.len();
        if d < 2 {
            return Multivariate::Unavailable(format!(
                "it needs at least two numeric features and the baseline has {d}"
            ));
        }
        let columns: Option<Vec<usize>> = baseline
            .numeric_features
            .iter()
            .map(|name| baseline.features.iter().position(|f| &f.name == name))
            .collect();
        let Some(columns) = columns else {
            return Multivariate::Unavailable(
                "the baseline's numeric_features do not match its features".to_owned(),
            );
        };
        let chunk = options.chunk.unwrap_or_else(|| {
            let windows = usize::try_from(settings.min_samples).unwrap_or(usize::MAX);
            windows.min(baseline.rows.len() / DEFAULT_CHUNKS).max(1)
        });
        let config = MultivariateConfig {
            pca: PcaConfig {
                variance: options.variance,
                chunk_size: Some(chunk),
                sigmas: options.sigmas,
            },
            alpha: options.alpha,
        };
        match MultivariateDrift::from_baseline(baseline, &config) {
            Ok(detectors) => Multivariate::Ready(RowSpec {
                detectors: Arc::new(detectors),
                columns,
            }),
            Err(error) => Multivariate::Unavailable(error.to_string()),
        }
    }

    /// What a window must keep for these detectors, when they run.
    pub fn rows(&self) -> Option<RowSpec> {
        match self {
            Multivariate::Ready(spec) => Some(spec.clone()),
            Multivariate::Off | Multivariate::Unavailable(_) => None,
        }
    }
}

/// The multivariate part of a model's report; `None` when it is off.
pub(super) fn judge(
    multivariate: &Multivariate,
    baseline: &Baseline,
    summary: &WindowSummary,
    min_samples: u64,
) -> Option<MultivariateReport> {
    let mut report = MultivariateReport {
        features: baseline.numeric_features.clone(),
        ..MultivariateReport::default()
    };
    let spec = match multivariate {
        Multivariate::Off => return None,
        Multivariate::Unavailable(reason) => {
            report.note = Some(format!(
                "multivariate drift is off for this model: {reason}"
            ));
            return Some(report);
        }
        Multivariate::Ready(spec) => spec,
    };
    let Some(window) = &summary.multivariate else {
        // The shard builds the window from the same fit; this is a bug guard.
        report.note = Some("the window keeps no multivariate sums".to_owned());
        return Some(report);
    };
    report.rows = window.rows();
    report.complete_rows = window.complete_rows();
    if window.complete_rows() < min_samples {
        report.note = Some(format!(
            "the window holds {} complete numeric rows; multivariate drift is evaluated from drift.min_samples = {min_samples}",
            window.complete_rows()
        ));
        return Some(report);
    }
    let result = spec.detectors.evaluate(window);
    if let Some(pca) = result.pca {
        report.methods.push(MultivariateMethod {
            method: "pca_reconstruction",
            score: pca.mean_error,
            threshold: None,
            lower: Some(pca.lower),
            upper: Some(pca.upper),
            p_value: None,
            components: Some(spec.detectors.pca().components()),
            explained_variance: Some(spec.detectors.pca().explained_variance()),
            drifted: pca.drifted,
            samples: pca.rows,
        });
    }
    if let Some(shift) = result.mean_shift {
        report.methods.push(MultivariateMethod {
            method: "mahalanobis_shift",
            score: shift.statistic,
            threshold: Some(shift.threshold),
            lower: None,
            upper: None,
            p_value: Some(shift.p_value),
            components: None,
            explained_variance: None,
            drifted: shift.drifted,
            samples: shift.rows,
        });
    }
    report.evaluated = true;
    report.drifted = report.methods.iter().any(|m| m.drifted);
    Some(report)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::baseline::{BaselineBuilder, BuildOptions, FeatureKind, LineageInputs};
    use crate::config::{Config, ConfigError, Overrides};
    use crate::monitor::evaluate::evaluate;
    use crate::observation::{FeatureValue, Observation};
    use crate::window::{FeatureSpec, Window, WindowSpec};

    fn settings(drift: &str) -> Drift {
        let yaml = format!("upstream: http://127.0.0.1:1\ndrift: {drift}\n");
        Config::from_yaml(&yaml, &Overrides::default())
            .unwrap_or_else(|e| panic!("{e}"))
            .drift
    }

    fn normal(rng: &mut fastrand::Rng) -> f64 {
        let (u, v) = (1.0 - rng.f64(), rng.f64());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// (a, b, c) with corr(a, b) = `rho`, as observation values.
    fn row(rng: &mut fastrand::Rng, rho: f64) -> Vec<FeatureValue> {
        let (z1, z2, z3) = (normal(rng), normal(rng), normal(rng));
        let b = rho * z1 + (1.0 - rho * rho).sqrt() * z2;
        [z1, b, z3].map(FeatureValue::Number).to_vec()
    }

    /// 2,000 rows of (a, b, c) with corr(a, b) = 0.8; a feature of kind
    /// categorical holds one label instead.
    fn baseline(kinds: [FeatureKind; 3]) -> Baseline {
        let features = ["a", "b", "c"]
            .into_iter()
            .zip(kinds)
            .map(|(n, k)| (n.to_owned(), k))
            .collect();
        let mut builder = BaselineBuilder::new("m", features, BuildOptions::default());
        let mut rng = fastrand::Rng::with_seed(1);
        for _ in 0..2000 {
            let mut values = row(&mut rng, 0.8);
            for (value, kind) in values.iter_mut().zip(kinds) {
                if kind == FeatureKind::Categorical {
                    *value = FeatureValue::Category(Arc::from("x"));
                }
            }
            builder.add_row(&values, None);
        }
        builder
            .finish(LineageInputs::live(2000, SystemTime::UNIX_EPOCH))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    const NUMERIC: [FeatureKind; 3] = [FeatureKind::Numeric; 3];

    /// A window as the shard builds it, holding `n` rows with corr(a, b) = `rho`.
    fn window(baseline: &Baseline, multivariate: &Multivariate, n: usize, rho: f64) -> Window {
        let spec = WindowSpec {
            length: Duration::from_secs(300),
            step: Duration::from_secs(30),
            sample_cap: 2000,
            features: baseline
                .features
                .iter()
                .map(|f| FeatureSpec::Numeric {
                    edges: f
                        .numeric
                        .as_ref()
                        .map(|n| n.edges.clone())
                        .unwrap_or_default(),
                })
                .collect(),
            score_edges: None,
            multivariate: multivariate.rows(),
        };
        let mut window = Window::new(spec, 1);
        let mut rng = fastrand::Rng::with_seed(7);
        for i in 0..n {
            let observation = Observation {
                model: Arc::from("m"),
                version: None,
                time: SystemTime::UNIX_EPOCH,
                request_id: Arc::from("r"),
                exchange: 0,
                row: 0,
                features: row(&mut rng, rho),
                prediction: None,
            };
            window.observe(i as u64, &observation);
        }
        window
    }

    fn chunk(multivariate: &Multivariate) -> Option<usize> {
        match multivariate {
            Multivariate::Ready(spec) => Some(spec.detectors.pca().reference_chunks().3),
            _ => None,
        }
    }

    #[test]
    fn a_correlation_flip_drifts_the_model_and_no_feature() {
        let baseline = baseline(NUMERIC);
        let settings = settings("{ min_samples: 200 }");
        let multivariate = Multivariate::fit(&baseline, &settings);
        let judge = |rho: f64| {
            let summary = window(&baseline, &multivariate, 1000, rho).summary();
            evaluate(&baseline, &summary, &settings, &multivariate, "t".into())
        };

        let steady = judge(0.8);
        let joint = steady
            .multivariate
            .as_ref()
            .unwrap_or_else(|| panic!("multivariate"));
        assert!(joint.evaluated && !joint.drifted, "{joint:#?}");
        assert!(!steady.multivariate_drifted);
        assert_eq!(joint.features, ["a", "b", "c"]);
        let names: Vec<&str> = joint.methods.iter().map(|m| m.method).collect();
        assert_eq!(names, ["pca_reconstruction", "mahalanobis_shift"]);
        let pca = &joint.methods[0];
        assert_eq!((pca.components, pca.samples), (Some(2), 1000));
        assert!(
            pca.lower < Some(pca.score) && Some(pca.score) < pca.upper,
            "{pca:?}"
        );
        let shift = &joint.methods[1];
        assert!(shift.threshold.is_some_and(|t| (t - 7.8147).abs() < 1e-3));

        let flipped = judge(-0.8);
        let joint = flipped
            .multivariate
            .as_ref()
            .unwrap_or_else(|| panic!("multivariate"));
        assert!(joint.methods[0].drifted, "{joint:#?}");
        assert!(joint.drifted && flipped.multivariate_drifted);
        // The marginals did not move: no feature drifted, and the share
        // counts features only.
        assert!(flipped.features.iter().all(|f| !f.drifted), "{flipped:#?}");
        assert_eq!(flipped.drifted_share, 0.0);
    }

    /// Stationary traffic over 100 seeds (each with its own baseline):
    /// windows of 400 rows judged with chunks of `min_samples` = 200.
    #[test]
    fn stationary_windows_rarely_drift() {
        use statrs::distribution::{Binomial, DiscreteCDF};
        const SEEDS: u64 = 100;
        let settings = settings("{ min_samples: 200, methods: [psi] }");
        let (mut pca, mut shift) = (0u64, 0u64);
        for seed in 0..SEEDS {
            let features = ["a", "b", "c"].map(|n| (n.to_owned(), FeatureKind::Numeric));
            let mut builder = BaselineBuilder::new("m", features.to_vec(), BuildOptions::default());
            let mut rng = fastrand::Rng::with_seed(1000 + seed);
            for _ in 0..2000 {
                builder.add_row(&row(&mut rng, 0.8), None);
            }
            let baseline = builder
                .finish(LineageInputs::live(2000, SystemTime::UNIX_EPOCH))
                .unwrap_or_else(|e| panic!("{e}"));
            let multivariate = Multivariate::fit(&baseline, &settings);
            assert_eq!(chunk(&multivariate), Some(200));
            let mut window = window(&baseline, &multivariate, 0, 0.8);
            for i in 0..400 {
                let observation = Observation {
                    model: Arc::from("m"),
                    version: None,
                    time: SystemTime::UNIX_EPOCH,
                    request_id: Arc::from("r"),
                    exchange: 0,
                    row: 0,
                    features: row(&mut rng, 0.8),
                    prediction: None,
                };
                window.observe(i, &observation);
            }
            let report = evaluate(
                &baseline,
                &window.summary(),
                &settings,
                &multivariate,
                "t".into(),
            );
            let joint = report
                .multivariate
                .unwrap_or_else(|| panic!("multivariate"));
            assert!(joint.evaluated);
            pca += u64::from(joint.methods[0].drifted);
            shift += u64::from(joint.methods[1].drifted);
        }
        // The mean shift is a test at alpha = 0.05: its count must be
        // plausible for a rate of at most 5% (one-sided exact binomial
        // test at the 1% level, as tests/drift_statistics.rs does).
        let binomial = Binomial::new(0.05, SEEDS).unwrap_or_else(|e| panic!("{e}"));
        let p = if shift == 0 {
            1.0
        } else {
            binomial.sf(shift - 1)
        };
        assert!(p > 0.01, "{shift} of {SEEDS} windows: P = {p}");
        // PCA's ±3σ band (0.27% for a normal mean error when the band is
        // exact) is wider than needed for windows twice the chunk size.
        assert!(pca <= 2, "{pca} of {SEEDS} windows");
        println!("stationary: PCA {pca}, mean shift {shift} of {SEEDS} windows");
    }

    #[test]
    fn small_windows_are_not_judged() {
        let baseline = baseline(NUMERIC);
        let settings = settings("{ min_samples: 200 }");
        let multivariate = Multivariate::fit(&baseline, &settings);
        let summary = window(&baseline, &multivariate, 150, -0.8).summary();
        let report = evaluate(&baseline, &summary, &settings, &multivariate, "t".into());
        let joint = report
            .multivariate
            .unwrap_or_else(|| panic!("multivariate"));
        assert!(!joint.evaluated && !joint.drifted && joint.methods.is_empty());
        assert_eq!((joint.rows, joint.complete_rows), (150, 150));
        assert!(
            joint
                .note
                .is_some_and(|n| n.contains("150 complete numeric rows")),
            "the note says why"
        );
    }

    #[test]
    fn off_unavailable_and_ready() {
        let settings_on = settings("{ min_samples: 50 }");
        let one_numeric = baseline([
            FeatureKind::Numeric,
            FeatureKind::Categorical,
            FeatureKind::Categorical,
        ]);
        let fitted = Multivariate::fit(&one_numeric, &settings_on);
        assert!(
            matches!(&fitted, Multivariate::Unavailable(r) if r.contains("two numeric features")),
            "{fitted:?}"
        );
        let summary = window(&one_numeric, &fitted, 100, 0.8).summary();
        let report = evaluate(&one_numeric, &summary, &settings_on, &fitted, "t".into());
        let joint = report
            .multivariate
            .unwrap_or_else(|| panic!("multivariate"));
        assert!(!joint.evaluated);
        assert!(
            joint
                .note
                .is_some_and(|n| n.contains("two numeric features"))
        );

        let two_numeric = baseline([
            FeatureKind::Numeric,
            FeatureKind::Categorical,
            FeatureKind::Numeric,
        ]);
        match Multivariate::fit(&two_numeric, &settings_on) {
            Multivariate::Ready(spec) => assert_eq!(spec.columns, [0, 2]),
            other => panic!("{other:?}"),
        }

        let disabled = settings("{ multivariate: { enabled: false } }");
        let off = Multivariate::fit(&baseline(NUMERIC), &disabled);
        assert!(matches!(off, Multivariate::Off) && off.rows().is_none());
        let summary = window(&baseline(NUMERIC), &off, 300, -0.8).summary();
        let report = evaluate(&baseline(NUMERIC), &summary, &disabled, &off, "t".into());
        assert_eq!(report.multivariate, None);
        assert!(!report.multivariate_drifted);
    }

    #[test]
    fn reference_chunks_default_to_the_smallest_judged_window() {
        let baseline = baseline(NUMERIC);
        let fit = |drift: &str| chunk(&Multivariate::fit(&baseline, &settings(drift)));
        assert_eq!(fit("{ min_samples: 50 }"), Some(50));
        // 2,000 rows make at most ten chunks of 200.
        assert_eq!(fit("{ min_samples: 1000 }"), Some(200));
        assert_eq!(fit("{ multivariate: { chunk: 300 } }"), Some(300));
        let too_big = Multivariate::fit(&baseline, &settings("{ multivariate: { chunk: 1500 } }"));
        assert!(
            matches!(&too_big, Multivariate::Unavailable(r) if r.contains("2000 reference rows")),
            "{too_big:?}"
        );
    }

    #[test]
    fn settings_have_defaults_and_checked_keys() {
        let defaults = settings("{ alpha: 0.01 }").multivariate;
        assert!(defaults.enabled && defaults.chunk.is_none());
        assert_eq!(
            (defaults.variance, defaults.sigmas, defaults.alpha),
            (0.65, 3.0, 0.01),
            "alpha follows drift.alpha"
        );
        let set = settings(
            "{ multivariate: { enabled: false, variance: 0.9, chunk: 100, sigmas: 4, alpha: 0.001 } }",
        )
        .multivariate;
        assert_eq!(
            (set.enabled, set.variance, set.chunk, set.sigmas, set.alpha),
            (false, 0.9, Some(100), 4.0, 0.001)
        );
        let yaml = "upstream: http://127.0.0.1:1\ndrift: { multivariate: { variance: 1, chunk: 0, sigmas: -1, alpha: 2 } }\n";
        let problems = match Config::from_yaml(yaml, &Overrides::default()) {
            Err(ConfigError::Invalid(problems)) => problems,
            other => panic!("{other:?}"),
        };
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "drift.multivariate.variance",
                "drift.multivariate.sigmas",
                "drift.multivariate.alpha",
                "drift.multivariate.chunk",
            ]
        );
        let unknown = "upstream: http://127.0.0.1:1\ndrift: { multivariate: { components: 2 } }\n";
        let error = Config::from_yaml(unknown, &Overrides::default())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("components"), "{error}");
    }
}
