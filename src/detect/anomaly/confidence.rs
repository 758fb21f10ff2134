//! Low-confidence and high-entropy predictions: the model itself is
//! unsure.

use super::{AnomalyError, Detector, Reason, Verdict};
use crate::observation::Prediction;

/// Thresholds of [`ConfidenceCheck`] (`anomaly.min_confidence`,
/// `anomaly.max_entropy`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConfidenceConfig {
    /// Flag a classification whose top probability is below this. Default
    /// 0.6: it can fire for binary classifiers (whose top probability is
    /// never below 0.5) as well as multi-class ones. 0 disables the check.
    pub min_confidence: f64,
    /// Flag a classification whose entropy (nats) is above this. Default
    /// ln 2 ≈ 0.693 nats (one bit: less sure than a fair coin). Entropy
    /// grows with the number of classes (at most ln K), so raise it for
    /// models with many classes; +∞ disables the check.
    pub max_entropy: f64,
}

/// Flags predictions the model was unsure of.
///
/// Only classifications are checked: a prediction with a `class` is
/// checked for a low `score` (the top probability), and one with an
/// `entropy` for a high entropy. A regression value or a bare score
/// without a class is not a confidence and is never flagged. Per
/// observation: two comparisons, no allocation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConfidenceCheck {
    config: ConfidenceConfig,
}

// === impl ConfidenceConfig ===

impl ConfidenceConfig {
    /// Every parameter out of range, as sentences.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(0.0..=1.0).contains(&self.min_confidence) {
            problems.push(format!(
                "anomaly.min_confidence must be in [0, 1], not {}",
                self.min_confidence
            ));
        }
        if self.max_entropy.is_nan() || self.max_entropy < 0.0 {
            problems.push(format!(
                "anomaly.max_entropy must be at least 0, not {}",
                self.max_entropy
            ));
        }
        problems
    }
}

impl Default for ConfidenceConfig {
    fn default() -> ConfidenceConfig {
        ConfidenceConfig {
            min_confidence: 0.6,
            max_entropy: std::f64::consts::LN_2,
        }
    }
}

// === impl ConfidenceCheck ===

impl ConfidenceCheck {
    /// A check with `config`'s thresholds.
    pub fn new(config: ConfidenceConfig) -> Result<ConfidenceCheck, AnomalyError> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(AnomalyError::Config(problems.join("; ")));
        }
        Ok(ConfidenceCheck { config })
    }

    /// A reason when a classification's top probability is below
    /// `min_confidence` (the reason's threshold is that floor).
    pub fn low_confidence(&self, prediction: &Prediction) -> Option<Reason> {
        prediction.class?;
        let score = prediction.score?;
        (score < self.config.min_confidence).then(|| Reason {
            detector: Detector::LowConfidence,
            features: Vec::new(),
            score,
            threshold: self.config.min_confidence,
        })
    }

    /// A reason when the prediction's entropy is above `max_entropy`.
    pub fn high_entropy(&self, prediction: &Prediction) -> Option<Reason> {
        let entropy = prediction.entropy?;
        (entropy > self.config.max_entropy).then(|| Reason {
            detector: Detector::HighEntropy,
            features: Vec::new(),
            score: entropy,
            threshold: self.config.max_entropy,
        })
    }

    /// Adds both checks' reasons to `verdict`.
    pub fn check(&self, prediction: &Prediction, verdict: &mut Verdict) {
        verdict.push(self.low_confidence(prediction));
        verdict.push(self.high_entropy(prediction));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> ConfidenceCheck {
        ConfidenceCheck::new(ConfidenceConfig::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn flags_unsure_classifications_only() {
        let mut verdict = Verdict::new();
        check().check(
            &Prediction::from_probabilities(&[0.9, 0.05, 0.05]),
            &mut verdict,
        );
        assert!(!verdict.is_anomalous());

        check().check(
            &Prediction::from_probabilities(&[0.4, 0.35, 0.25]),
            &mut verdict,
        );
        let low = verdict.reason(Detector::LowConfidence).cloned();
        assert_eq!(low.map(|r| (r.score, r.threshold)), Some((0.4, 0.6)));
        let high = verdict.reason(Detector::HighEntropy).map(|r| r.score);
        assert!(high.is_some_and(|h| h > std::f64::consts::LN_2));

        // A regression output carries no confidence.
        verdict.clear();
        let regression = Prediction {
            score: Some(0.1),
            value: Some(0.1),
            ..Prediction::default()
        };
        check().check(&regression, &mut verdict);
        assert!(!verdict.is_anomalous());
    }

    #[test]
    fn binary_classifier_trips_the_default_floor() {
        let p = Prediction::from_probabilities(&[0.55, 0.45]);
        assert!(check().low_confidence(&p).is_some());
        assert!(check().high_entropy(&p).is_none());
    }

    #[test]
    fn rejects_bad_thresholds() {
        let bad = ConfidenceConfig {
            min_confidence: 1.5,
            max_entropy: f64::NAN,
        };
        let error = ConfidenceCheck::new(bad).map(|_| ()).unwrap_err();
        assert!(error.to_string().contains("min_confidence"), "{error}");
        assert!(error.to_string().contains("max_entropy"), "{error}");
    }
}
