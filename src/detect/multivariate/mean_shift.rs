//! Mean Mahalanobis shift: has the window's mean vector moved away from
//! the baseline mean, given how the features vary together?

use statrs::distribution::{ChiSquared, ContinuousCDF};

use super::MultivariateError;
use crate::baseline::Baseline;
use crate::detect::anomaly::{Precision, chi_square_quantile};

/// A Hotelling-style test of the window mean against the baseline mean.
///
/// With `x̄` the mean of `n` complete live rows, `μ` and `Σ` the baseline
/// mean and covariance (from `N` reference rows), the statistic is
///
/// `T = (x̄ − μ)ᵀ Σ⁻¹ (x̄ − μ) / (1/n + 1/N)`,
///
/// the squared Mahalanobis distance of `x̄` under the covariance of a
/// difference of two means, `Σ·(1/n + 1/N)`. With `N` unknown (or much
/// larger than `n`) it is `n·(x̄ − μ)ᵀ Σ⁻¹ (x̄ − μ)`, the distance under
/// `Σ/n`. When the window comes from the baseline distribution, `T`
/// follows χ²(d) for large `n` (Σ is taken as known: the reference is
/// large), so the window is drifted when `T` exceeds the χ²(d) quantile at
/// `1 − alpha`, and the p-value is `χ²(d).sf(T)`. `Σ⁻¹` is the
/// [`Precision`] of the anomaly detectors (Cholesky, with a ridge when
/// singular).
///
/// A mean shift sees a joint move of the mean, including one too small
/// for any single feature's test. A change of shape that keeps the mean
/// (a flipped correlation, a wider spread) is not what it tests: it fires
/// on some such windows only because the window mean then varies more
/// than `Σ/n` says. PCA reconstruction error is the detector for those.
#[derive(Debug, Clone, PartialEq)]
pub struct MeanShift {
    precision: Precision,
    /// `1/N`, 0 when the reference size is unknown.
    reference_weight: f64,
    alpha: f64,
    threshold: f64,
    distribution: ChiSquared,
}

/// One window's mean-shift evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeanShiftResult {
    /// `T`, see [`MeanShift`].
    pub statistic: f64,
    /// `χ²(d).sf(T)`.
    pub p_value: f64,
    /// `χ²(d).ppf(1 − alpha)`.
    pub threshold: f64,
    /// Whether `T` exceeds the threshold.
    pub drifted: bool,
    /// Complete rows in the window.
    pub rows: u64,
}

// === impl MeanShift ===

impl MeanShift {
    /// A test around `precision`'s mean with significance `alpha`
    /// (0 < alpha < 1) and, when known, the number of reference rows.
    pub fn new(
        precision: Precision,
        alpha: f64,
        reference_rows: Option<u64>,
    ) -> Result<MeanShift, MultivariateError> {
        if !(alpha > 0.0 && alpha < 1.0) {
            return Err(MultivariateError::Config(format!(
                "mean shift alpha must be strictly between 0 and 1, not {alpha}"
            )));
        }
        let d = precision.dims();
        let threshold = chi_square_quantile(d, 1.0 - alpha)?;
        let distribution = ChiSquared::new(d as f64)
            .map_err(|e| MultivariateError::Config(format!("chi-square({d}): {e}")))?;
        let reference_weight = match reference_rows {
            Some(n) if n > 0 => 1.0 / n as f64,
            _ => 0.0,
        };
        Ok(MeanShift {
            precision,
            reference_weight,
            alpha,
            threshold,
            distribution,
        })
    }

    /// The test for the baseline's numeric mean and covariance, with `N =
    /// lineage.rows` (rows profiled; the covariance's complete rows can be
    /// fewer, so `1/N` is if anything a little small).
    pub fn from_baseline(baseline: &Baseline, alpha: f64) -> Result<MeanShift, MultivariateError> {
        if baseline.numeric_features.is_empty() {
            return Err(MultivariateError::NoFeatures);
        }
        let precision = Precision::from_baseline(baseline)?;
        MeanShift::new(precision, alpha, Some(baseline.lineage.rows))
    }

    /// Number of features `d`.
    pub fn dims(&self) -> usize {
        self.precision.dims()
    }

    /// The significance level.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// Judges a window of `rows` complete rows whose mean is `mean` (`d`
    /// finite values); `None` for an empty window or a mean with a NaN.
    pub fn evaluate(&self, mean: &[f64], rows: u64) -> Option<MeanShiftResult> {
        if rows == 0 || mean.len() != self.dims() || !mean.iter().all(|x| x.is_finite()) {
            return None;
        }
        let variance_factor = 1.0 / rows as f64 + self.reference_weight;
        let statistic = self.precision.squared_distance(mean) / variance_factor;
        Some(MeanShiftResult {
            statistic,
            p_value: self.distribution.sf(statistic),
            threshold: self.threshold,
            drifted: statistic > self.threshold,
            rows,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistic_scales_with_window_size() {
        let precision = Precision::new(&[0.0, 0.0], &[vec![1.0, 0.0], vec![0.0, 4.0]])
            .unwrap_or_else(|e| panic!("{e}"));
        let test = MeanShift::new(precision, 0.05, None).unwrap_or_else(|e| panic!("{e}"));
        let small = test
            .evaluate(&[0.1, 0.2], 100)
            .unwrap_or_else(|| panic!("result"));
        // n · (0.1² / 1 + 0.2² / 4) = 100 · 0.02
        assert!((small.statistic - 2.0).abs() < 1e-12, "{small:?}");
        assert!(!small.drifted);
        // χ²(2).sf(2) = e^{-1}
        assert!((small.p_value - (-1.0f64).exp()).abs() < 1e-9);
        let large = test
            .evaluate(&[0.1, 0.2], 1000)
            .unwrap_or_else(|| panic!("result"));
        assert!(large.drifted && large.statistic > large.threshold);
        assert_eq!(test.evaluate(&[0.1, 0.2], 0), None);
        assert_eq!(test.evaluate(&[f64::NAN, 0.2], 10), None);
    }

    #[test]
    fn reference_size_widens_the_variance() {
        let precision = Precision::new(&[0.0], &[vec![1.0]]).unwrap_or_else(|e| panic!("{e}"));
        let test = MeanShift::new(precision, 0.05, Some(100)).unwrap_or_else(|e| panic!("{e}"));
        let result = test
            .evaluate(&[0.2], 100)
            .unwrap_or_else(|| panic!("result"));
        // 0.04 / (1/100 + 1/100)
        assert!((result.statistic - 2.0).abs() < 1e-12, "{result:?}");
    }
}
