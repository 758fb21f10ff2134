//! Mahalanobis distance of one row from the baseline mean, against a
//! chi-square threshold.

use statrs::distribution::{ChiSquared, ContinuousCDF};

use super::{AnomalyError, Detector, NumericAxes, Precision, Reason};
use crate::baseline::Baseline;

/// Flags a row whose squared Mahalanobis distance from the baseline mean
/// exceeds the χ² quantile at `1 − p` with `d` degrees of freedom
/// (`anomaly.mahalanobis_p`, default 0.001; `d` = numeric features).
///
/// For normal data a row's squared distance follows χ²(d), so `p` is the
/// share of normal rows flagged. The score is the *squared* distance
/// (`scipy.spatial.distance.mahalanobis` returns its square root). A row
/// with any missing or infinite numeric value gets no score: the joint
/// distance needs every axis, and validation reports the bad value.
///
/// Per row: `O(d²)` multiply-adds, no allocation unless flagged.
#[derive(Debug, Clone, PartialEq)]
pub struct Mahalanobis {
    /// Baseline mean and inverse covariance.
    precision: Precision,
    /// Model feature index of each numeric axis (for reasons).
    indices: Vec<usize>,
    /// Flag when the squared distance exceeds this.
    threshold: f64,
}

/// The `q` quantile of χ²(`dof`) (statrs' inverse CDF), e.g. `q = 1 − p`
/// for a threshold exceeded with probability `p`.
pub fn chi_square_quantile(dof: usize, q: f64) -> Result<f64, AnomalyError> {
    if !(q > 0.0 && q < 1.0) {
        return Err(AnomalyError::Config(format!(
            "a chi-square quantile needs a probability strictly between 0 and 1, not {q}"
        )));
    }
    let distribution = ChiSquared::new(dof as f64).map_err(|e| {
        AnomalyError::Config(format!("chi-square with {dof} degrees of freedom: {e}"))
    })?;
    Ok(distribution.inverse_cdf(q))
}

// === impl Mahalanobis ===

impl Mahalanobis {
    /// A detector over `precision`'s axes (model feature `indices[axis]`
    /// each), flagging squared distances above the χ²(d) quantile at
    /// `1 − p` (0 < p < 1).
    pub fn new(
        precision: Precision,
        indices: Vec<usize>,
        p: f64,
    ) -> Result<Mahalanobis, AnomalyError> {
        if indices.len() != precision.dims() {
            return Err(AnomalyError::Shape {
                what: "feature indices",
                expected: precision.dims(),
                got: indices.len(),
            });
        }
        if !(p > 0.0 && p < 1.0) {
            return Err(AnomalyError::Config(format!(
                "anomaly.mahalanobis_p must be strictly between 0 and 1, not {p}"
            )));
        }
        let threshold = chi_square_quantile(precision.dims(), 1.0 - p)?;
        Ok(Mahalanobis {
            precision,
            indices,
            threshold,
        })
    }

    /// The detector for the baseline's numeric features, mean and
    /// covariance.
    pub fn from_baseline(baseline: &Baseline, p: f64) -> Result<Mahalanobis, AnomalyError> {
        let axes = NumericAxes::from_baseline(baseline)?;
        let precision = Precision::from_baseline(baseline)?;
        Mahalanobis::new(precision, axes.indices().to_vec(), p)
    }

    /// The mean and inverse covariance.
    pub fn precision(&self) -> &Precision {
        &self.precision
    }

    /// The squared-distance threshold, `χ²(d).ppf(1 − p)`.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// The squared distance of a numeric row, or `None` when a value is
    /// NaN or infinite (or the row has the wrong length).
    pub fn score(&self, row: &[f64]) -> Option<f64> {
        if row.len() != self.precision.dims() || !row.iter().all(|x| x.is_finite()) {
            return None;
        }
        Some(self.precision.squared_distance(row))
    }

    /// A reason when the squared distance exceeds the threshold. Its
    /// features are the smallest set, by decreasing contribution
    /// `δᵢ·(Σ⁻¹δ)ᵢ` (see [`Precision::contributions`]), whose
    /// contributions make up at least half of the squared distance: the
    /// features that most explain why the row is far.
    pub fn check(&self, row: &[f64]) -> Option<Reason> {
        let score = self.score(row)?;
        if score <= self.threshold {
            return None;
        }
        let mut contributions = Vec::new();
        self.precision.contributions(row, &mut contributions);
        let mut ranked: Vec<(usize, f64)> =
            self.indices.iter().copied().zip(contributions).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut features = Vec::new();
        let mut covered = 0.0;
        for (index, contribution) in ranked {
            if covered >= 0.5 * score || contribution <= 0.0 {
                break;
            }
            features.push(index);
            covered += contribution;
        }
        Some(Reason {
            detector: Detector::Mahalanobis,
            features,
            score,
            threshold: self.threshold,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_is_the_chi_square_quantile() {
        // scipy.stats.chi2.ppf(0.999, 2) = -2·ln(0.001)
        let q = chi_square_quantile(2, 0.999).unwrap_or_else(|e| panic!("{e}"));
        assert!((q - (-2.0 * 0.001f64.ln())).abs() < 1e-9, "{q}");
        assert!(chi_square_quantile(2, 1.0).is_err());
    }

    #[test]
    fn flags_far_rows_and_names_the_responsible_feature() {
        let covariance = vec![
            vec![1.0, 0.0, 0.0],
            vec![0.0, 1.0, 0.0],
            vec![0.0, 0.0, 1.0],
        ];
        let precision =
            Precision::new(&[0.0, 0.0, 0.0], &covariance).unwrap_or_else(|e| panic!("{e}"));
        let detector =
            Mahalanobis::new(precision, vec![1, 4, 7], 0.001).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(detector.check(&[1.0, 1.0, 1.0]), None);
        assert_eq!(detector.score(&[1.0, f64::NAN, 1.0]), None);
        let reason = detector
            .check(&[0.5, 10.0, 1.0])
            .unwrap_or_else(|| panic!("flagged"));
        assert_eq!(reason.features, [4]);
        assert_eq!(reason.score, 0.25 + 100.0 + 1.0);
        assert!(Mahalanobis::new(detector.precision.clone(), vec![0], 0.001).is_err());
        assert!(Mahalanobis::new(detector.precision.clone(), vec![0, 1, 2], 0.0).is_err());
    }
}
