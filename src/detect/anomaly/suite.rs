//! Every per-request anomaly detector of one model, run together over an
//! observation.

use super::{
    AnomalyError, ConfidenceCheck, ConfidenceConfig, Detector, HalfSpaceTrees, HstConfig,
    Mahalanobis, NumericAxes, Reason, RobustZ, Verdict,
};
use crate::baseline::Baseline;
use crate::observation::Observation;

/// The `anomaly:` settings (DESIGN.md §12).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnomalyConfig {
    /// Robust z-score threshold (`anomaly.zscore`, default 4).
    pub zscore: f64,
    /// Share of normal rows the Mahalanobis detector may flag
    /// (`anomaly.mahalanobis_p`, default 0.001).
    pub mahalanobis_p: f64,
    /// Half-Space Trees (`anomaly.hst`).
    pub hst: HstConfig,
    /// Low confidence / high entropy (`anomaly.min_confidence`,
    /// `anomaly.max_entropy`).
    pub confidence: ConfidenceConfig,
}

/// A model's anomaly detectors, built from its baseline, owned by its
/// worker (the Half-Space Trees learn from every observation).
///
/// The numeric detectors exist only when the baseline has numeric
/// features; Half-Space Trees also need one that is not constant.
#[derive(Debug, Clone)]
pub struct AnomalyDetectors {
    axes: NumericAxes,
    /// The numeric row of the observation being checked (reused).
    row: Vec<f64>,
    robust_z: Option<RobustZ>,
    mahalanobis: Option<Mahalanobis>,
    hst: Option<HalfSpaceTrees>,
    confidence: ConfidenceCheck,
}

// === impl AnomalyConfig ===

impl AnomalyConfig {
    /// Checks every setting, reporting all problems at once.
    pub fn validate(&self) -> Result<(), AnomalyError> {
        let mut problems = Vec::new();
        if !(self.zscore > 0.0 && self.zscore.is_finite()) {
            problems.push(format!(
                "anomaly.zscore must be a positive number, not {}",
                self.zscore
            ));
        }
        if !(self.mahalanobis_p > 0.0 && self.mahalanobis_p < 1.0) {
            problems.push(format!(
                "anomaly.mahalanobis_p must be strictly between 0 and 1, not {}",
                self.mahalanobis_p
            ));
        }
        problems.extend(self.hst.problems());
        problems.extend(self.confidence.problems());
        if problems.is_empty() {
            Ok(())
        } else {
            Err(AnomalyError::Config(problems.join("; ")))
        }
    }
}

impl Default for AnomalyConfig {
    fn default() -> AnomalyConfig {
        AnomalyConfig {
            zscore: 4.0,
            mahalanobis_p: 0.001,
            hst: HstConfig::default(),
            confidence: ConfidenceConfig::default(),
        }
    }
}

// === impl AnomalyDetectors ===

impl AnomalyDetectors {
    /// Builds every detector the baseline supports. Half-Space Trees are
    /// trained on the baseline's row sample (see
    /// [`HalfSpaceTrees::from_baseline`]).
    pub fn from_baseline(
        baseline: &Baseline,
        config: &AnomalyConfig,
    ) -> Result<AnomalyDetectors, AnomalyError> {
        config.validate()?;
        let axes = NumericAxes::from_baseline(baseline)?;
        let confidence = ConfidenceCheck::new(config.confidence)?;
        if axes.is_empty() {
            return Ok(AnomalyDetectors {
                axes,
                row: Vec::new(),
                robust_z: None,
                mahalanobis: None,
                hst: None,
                confidence,
            });
        }
        let varies = axes.indices().iter().any(|&index| {
            baseline.features[index]
                .numeric
                .as_ref()
                .is_some_and(|profile| profile.max > profile.min)
        });
        let hst = if varies {
            Some(HalfSpaceTrees::from_baseline(baseline, &config.hst)?)
        } else {
            None
        };
        Ok(AnomalyDetectors {
            row: Vec::with_capacity(axes.len()),
            robust_z: Some(RobustZ::from_baseline(baseline, config.zscore)?),
            mahalanobis: Some(Mahalanobis::from_baseline(baseline, config.mahalanobis_p)?),
            hst,
            confidence,
            axes,
        })
    }

    /// Runs every detector over `observation` (Half-Space Trees score it,
    /// then learn it), notes each score in `verdict` and adds the reasons
    /// of those that flag it, in the order robust z, Mahalanobis,
    /// Half-Space Trees, low confidence, high entropy. Clear the verdict
    /// between observations. A normal observation allocates nothing.
    pub fn check(&mut self, observation: &Observation, verdict: &mut Verdict) {
        if !self.axes.is_empty() {
            self.axes.fill(&observation.features, &mut self.row);
            let row = &self.row;
            // Each detector scores once; the reason (which ranks the
            // features) is only worked out for the rare flagged row.
            if let Some(d) = &self.robust_z {
                let score = d.max_z(row);
                verdict.set_score(Detector::RobustZ, Some(score));
                if score > d.threshold() {
                    verdict.push(d.check(row));
                }
            }
            if let Some(d) = &self.mahalanobis {
                let score = d.score(row);
                verdict.set_score(Detector::Mahalanobis, score);
                if score.is_some_and(|s| s > d.threshold()) {
                    verdict.push(d.check(row));
                }
            }
            if let Some(d) = &mut self.hst {
                let score = d.score_and_learn(row);
                verdict.set_score(Detector::HalfSpaceTrees, Some(score));
                if score > d.threshold() {
                    verdict.push(Some(Reason {
                        detector: Detector::HalfSpaceTrees,
                        // The trees cannot tell which split isolated the
                        // row: every numeric feature is named.
                        features: self.axes.indices().to_vec(),
                        score,
                        threshold: d.threshold(),
                    }));
                }
            }
        }
        if let Some(prediction) = &observation.prediction {
            if prediction.class.is_some() {
                verdict.set_score(Detector::LowConfidence, prediction.score);
            }
            verdict.set_score(Detector::HighEntropy, prediction.entropy);
            self.confidence.check(prediction, verdict);
        }
    }

    /// The numeric axes rows are read from.
    pub fn axes(&self) -> &NumericAxes {
        &self.axes
    }

    /// The robust z-score detector, when there are numeric features.
    pub fn robust_z(&self) -> Option<&RobustZ> {
        self.robust_z.as_ref()
    }

    /// The Mahalanobis detector, when there are numeric features.
    pub fn mahalanobis(&self) -> Option<&Mahalanobis> {
        self.mahalanobis.as_ref()
    }

    /// The Half-Space Trees, when some numeric feature varies.
    pub fn half_space_trees(&self) -> Option<&HalfSpaceTrees> {
        self.hst.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::SystemTime;

    use super::*;
    use crate::baseline::{BaselineBuilder, BuildOptions, FeatureKind, LineageInputs};
    use crate::detect::anomaly::Detector;
    use crate::observation::{FeatureValue, Prediction};

    /// Numeric `x`, categorical `c`, numeric `y ≈ 2x`, 600 rows.
    fn baseline() -> Baseline {
        let features = vec![
            ("x".to_owned(), FeatureKind::Numeric),
            ("c".to_owned(), FeatureKind::Categorical),
            ("y".to_owned(), FeatureKind::Numeric),
        ];
        let mut builder = BaselineBuilder::new("m", features, BuildOptions::default());
        let mut rng = fastrand::Rng::with_seed(9);
        for _ in 0..600 {
            let x = rng.f64() * 10.0;
            let y = 2.0 * x + rng.f64() - 0.5;
            builder.add_row(
                &[
                    FeatureValue::Number(x),
                    FeatureValue::Category("a".into()),
                    FeatureValue::Number(y),
                ],
                None,
            );
        }
        let lineage = LineageInputs::live(600, SystemTime::UNIX_EPOCH);
        builder.finish(lineage).unwrap_or_else(|e| panic!("{e}"))
    }

    fn observation(x: f64, y: f64, prediction: Option<Prediction>) -> Observation {
        Observation {
            model: Arc::from("m"),
            version: None,
            time: SystemTime::UNIX_EPOCH,
            request_id: Arc::from("r"),
            exchange: 0,
            row: 0,
            features: vec![
                FeatureValue::Number(x),
                FeatureValue::Category("a".into()),
                FeatureValue::Number(y),
            ],
            prediction,
        }
    }

    #[test]
    fn normal_rows_pass_and_odd_rows_say_why() {
        let baseline = baseline();
        let mut detectors = AnomalyDetectors::from_baseline(&baseline, &AnomalyConfig::default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(detectors.axes().indices(), [0, 2]);
        assert!(detectors.half_space_trees().is_some_and(|h| h.is_warm()));
        let mut verdict = Verdict::new();
        detectors.check(&observation(5.0, 10.1, None), &mut verdict);
        assert!(!verdict.is_anomalous(), "{verdict:?}");
        // Unflagged rows are scored all the same.
        for detector in [
            Detector::RobustZ,
            Detector::Mahalanobis,
            Detector::HalfSpaceTrees,
        ] {
            assert!(verdict.score(detector).is_some(), "{detector:?}");
        }
        assert_eq!(verdict.score(Detector::LowConfidence), None);

        // Both marginals are ordinary, but y should be near 2x = 4: only
        // the joint detectors see it.
        detectors.check(&observation(2.0, 12.0, None), &mut verdict);
        assert!(verdict.reason(Detector::RobustZ).is_none());
        let reason = verdict.reason(Detector::Mahalanobis).cloned();
        assert!(reason.is_some_and(|r| !r.features.is_empty() && r.score > r.threshold));

        // Far outside the range of x.
        verdict.clear();
        let unsure = Prediction::from_probabilities(&[0.5, 0.5]);
        detectors.check(&observation(60.0, 0.0, Some(unsure)), &mut verdict);
        let robust = verdict.reason(Detector::RobustZ).cloned();
        assert_eq!(robust.map(|r| r.features), Some(vec![0]));
        let hst = verdict.reason(Detector::HalfSpaceTrees).cloned();
        assert_eq!(hst.as_ref().map(|r| r.features.clone()), Some(vec![0, 2]));
        assert_eq!(
            hst.map(|r| r.score),
            verdict.score(Detector::HalfSpaceTrees)
        );
        assert!(verdict.reason(Detector::LowConfidence).is_some());
        assert_eq!(verdict.score(Detector::LowConfidence), Some(0.5));
        assert_eq!(
            verdict.score(Detector::HighEntropy),
            Some(std::f64::consts::LN_2)
        );
    }

    #[test]
    fn config_reports_every_problem() {
        let config = AnomalyConfig {
            zscore: -1.0,
            mahalanobis_p: 1.0,
            ..AnomalyConfig::default()
        };
        let error = config.validate().map(|_| ()).unwrap_err().to_string();
        assert!(
            error.contains("zscore") && error.contains("mahalanobis_p"),
            "{error}"
        );
    }
}
