//! Robust z-score: how many robust standard deviations each feature sits
//! from its baseline median.

use super::{AnomalyError, Detector, NumericAxes, Reason};
use crate::baseline::Baseline;

/// Scales a raw MAD into an estimate of σ for normal data
/// (1 / Φ⁻¹(3/4) ≈ 1.4826, SciPy's `scale='normal'`).
pub const MAD_TO_SIGMA: f64 = 1.4826;

/// One numeric feature's centre and spread.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RobustZFeature {
    /// The feature's index in the model's feature order (for reasons).
    pub index: usize,
    /// Baseline median.
    pub median: f64,
    /// The divisor of the z-score: `1.4826 · MAD`; when the MAD is 0
    /// (more than half the reference values are equal) the sample
    /// standard deviation instead, which is on the same scale for normal
    /// data; when that is 0 too (a constant feature), 0.
    pub scale: f64,
}

/// Flags an observation when any feature's robust z-score exceeds the
/// threshold (`anomaly.zscore`, default 4).
///
/// `z = |x − median| / (1.4826 · MAD)`. A zero MAD falls back to the
/// standard deviation (see [`RobustZFeature::scale`]); a constant feature
/// has `z = 0` at its value and `z = +∞` anywhere else, so any deviation
/// is flagged. A NaN (missing) value is skipped; ±∞ scores +∞.
///
/// Per row: one subtraction and division per feature, no allocation
/// unless the row is flagged.
#[derive(Debug, Clone, PartialEq)]
pub struct RobustZ {
    /// One entry per numeric axis, in axis order.
    features: Vec<RobustZFeature>,
    /// Flag when `z > threshold`.
    threshold: f64,
}

// === impl RobustZFeature ===

impl RobustZFeature {
    /// A feature with baseline `median`, raw (unscaled) `mad` and sample
    /// standard deviation `std`.
    pub fn new(index: usize, median: f64, mad: f64, std: f64) -> RobustZFeature {
        let scale = if mad > 0.0 {
            MAD_TO_SIGMA * mad
        } else if std > 0.0 {
            std
        } else {
            0.0
        };
        RobustZFeature {
            index,
            median,
            scale,
        }
    }

    /// `|x − median| / scale`; NaN for NaN.
    #[inline]
    pub fn z(&self, x: f64) -> f64 {
        let deviation = (x - self.median).abs();
        if self.scale > 0.0 {
            deviation / self.scale
        } else if deviation > 0.0 {
            f64::INFINITY
        } else {
            // Zero deviation, or NaN (missing), which stays NaN.
            deviation
        }
    }
}

// === impl RobustZ ===

impl RobustZ {
    /// A detector over `features` (one per numeric axis) flagging z-scores
    /// above `threshold` (> 0).
    pub fn new(features: Vec<RobustZFeature>, threshold: f64) -> Result<RobustZ, AnomalyError> {
        if !(threshold > 0.0 && threshold.is_finite()) {
            return Err(AnomalyError::Config(format!(
                "anomaly.zscore must be a positive number, not {threshold}"
            )));
        }
        let finite = features
            .iter()
            .all(|f| f.median.is_finite() && f.scale.is_finite());
        if !finite {
            return Err(AnomalyError::NonFinite {
                what: "robust z median or scale",
            });
        }
        Ok(RobustZ {
            features,
            threshold,
        })
    }

    /// The detector for the baseline's numeric features, from each one's
    /// median, MAD and standard deviation.
    pub fn from_baseline(baseline: &Baseline, threshold: f64) -> Result<RobustZ, AnomalyError> {
        let axes = NumericAxes::from_baseline(baseline)?;
        let features = axes
            .indices()
            .iter()
            .map(|&index| {
                let profile = baseline.features[index].numeric.as_ref().ok_or_else(|| {
                    AnomalyError::Baseline {
                        detector: Detector::RobustZ.label(),
                        why: format!(
                            "numeric feature '{}' has no numeric profile",
                            baseline.features[index].name
                        ),
                    }
                })?;
                Ok(RobustZFeature::new(
                    index,
                    profile.median,
                    profile.mad,
                    profile.std,
                ))
            })
            .collect::<Result<Vec<_>, AnomalyError>>()?;
        RobustZ::new(features, threshold)
    }

    /// The per-feature parameters, in axis order.
    pub fn features(&self) -> &[RobustZFeature] {
        &self.features
    }

    /// The flagging threshold.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// The z-score of axis `axis` for value `x`.
    pub fn z(&self, axis: usize, x: f64) -> f64 {
        self.features[axis].z(x)
    }

    /// The largest z-score over a numeric row (missing values skipped; 0
    /// when every value is missing).
    pub fn max_z(&self, row: &[f64]) -> f64 {
        self.features
            .iter()
            .zip(row)
            .map(|(feature, &x)| feature.z(x))
            .filter(|z| !z.is_nan())
            .fold(0.0, f64::max)
    }

    /// A reason when some feature of `row` has `z > threshold`: the flagged
    /// features, most extreme first, with the largest z as the score.
    pub fn check(&self, row: &[f64]) -> Option<Reason> {
        let score = self.max_z(row);
        if score <= self.threshold {
            return None;
        }
        let mut flagged: Vec<(usize, f64)> = self
            .features
            .iter()
            .zip(row)
            .map(|(feature, &x)| (feature.index, feature.z(x)))
            .filter(|&(_, z)| z > self.threshold)
            .collect();
        flagged.sort_by(|a, b| b.1.total_cmp(&a.1));
        Some(Reason {
            detector: Detector::RobustZ,
            features: flagged.into_iter().map(|(index, _)| index).collect(),
            score,
            threshold: self.threshold,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_falls_back_from_mad_to_std_to_exact_match() {
        let mad = RobustZFeature::new(0, 10.0, 2.0, 5.0);
        assert_eq!(mad.scale, MAD_TO_SIGMA * 2.0);
        assert!((mad.z(10.0 + MAD_TO_SIGMA * 2.0 * 3.0) - 3.0).abs() < 1e-12);
        let std = RobustZFeature::new(0, 10.0, 0.0, 5.0);
        assert_eq!(std.z(0.0), 2.0);
        let constant = RobustZFeature::new(0, 10.0, 0.0, 0.0);
        assert_eq!(constant.z(10.0), 0.0);
        assert_eq!(constant.z(10.000001), f64::INFINITY);
        assert!(constant.z(f64::NAN).is_nan());
    }

    #[test]
    fn flags_features_above_threshold_most_extreme_first() {
        let features = vec![
            RobustZFeature::new(0, 0.0, 1.0 / MAD_TO_SIGMA, 1.0),
            RobustZFeature::new(3, 0.0, 1.0 / MAD_TO_SIGMA, 1.0),
            RobustZFeature::new(4, 0.0, 1.0 / MAD_TO_SIGMA, 1.0),
        ];
        let detector = RobustZ::new(features, 4.0).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(detector.check(&[3.9, -4.0, f64::NAN]), None);
        let reason = detector
            .check(&[5.0, -7.0, f64::INFINITY])
            .unwrap_or_else(|| panic!("flagged"));
        assert_eq!(reason.detector, Detector::RobustZ);
        assert_eq!(reason.features, [4, 3, 0]);
        assert_eq!(reason.score, f64::INFINITY);
        assert_eq!(reason.threshold, 4.0);
        assert!(RobustZ::new(Vec::new(), 0.0).is_err());
    }
}
