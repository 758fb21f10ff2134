//! Both multivariate detectors of a model, and the sums one window keeps
//! for them.

use super::{MeanShift, MeanShiftResult, MultivariateError, PcaConfig, PcaDrift, PcaResult};
use crate::baseline::Baseline;

/// Multivariate drift settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MultivariateConfig {
    /// PCA reconstruction error.
    pub pca: PcaConfig,
    /// Significance of the mean-shift test (default 0.05, like
    /// `drift.alpha`).
    pub alpha: f64,
}

/// A model's PCA drift and mean-shift detectors, fixed after the baseline
/// is loaded (nothing here learns), so workers can share them.
#[derive(Debug, Clone, PartialEq)]
pub struct MultivariateDrift {
    pca: PcaDrift,
    mean_shift: MeanShift,
}

/// What one window (or sub-window) has seen: mergeable, so a ring of
/// sub-windows can be summed into a sliding window.
#[derive(Debug, Clone, PartialEq)]
pub struct MultivariateWindow {
    /// Sum of the rows' reconstruction errors.
    error_sum: f64,
    /// Rows seen (missing values imputed for PCA).
    rows: u64,
    /// Per-feature sums over complete rows.
    sums: Vec<f64>,
    /// Rows with every value finite (the mean shift uses only those, as
    /// the baseline mean does).
    complete_rows: u64,
}

/// One window's evaluation by both detectors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MultivariateResult {
    /// PCA reconstruction error; `None` for an empty window.
    pub pca: Option<PcaResult>,
    /// Mean shift; `None` without complete rows.
    pub mean_shift: Option<MeanShiftResult>,
}

// === impl MultivariateConfig ===

impl Default for MultivariateConfig {
    fn default() -> MultivariateConfig {
        MultivariateConfig {
            pca: PcaConfig::default(),
            alpha: 0.05,
        }
    }
}

// === impl MultivariateDrift ===

impl MultivariateDrift {
    /// Both detectors from already-built parts.
    pub fn new(
        pca: PcaDrift,
        mean_shift: MeanShift,
    ) -> Result<MultivariateDrift, MultivariateError> {
        if pca.dims() != mean_shift.dims() {
            return Err(MultivariateError::Shape {
                what: "mean shift",
                expected: pca.dims(),
                got: mean_shift.dims(),
            });
        }
        Ok(MultivariateDrift { pca, mean_shift })
    }

    /// Both detectors for the baseline's numeric features: PCA fitted on
    /// its `rows`, the mean shift on its `mean` and `covariance`.
    pub fn from_baseline(
        baseline: &Baseline,
        config: &MultivariateConfig,
    ) -> Result<MultivariateDrift, MultivariateError> {
        MultivariateDrift::new(
            PcaDrift::from_baseline(baseline, &config.pca)?,
            MeanShift::from_baseline(baseline, config.alpha)?,
        )
    }

    /// The PCA detector.
    pub fn pca(&self) -> &PcaDrift {
        &self.pca
    }

    /// The mean-shift detector.
    pub fn mean_shift(&self) -> &MeanShift {
        &self.mean_shift
    }

    /// An empty window for these detectors.
    pub fn window(&self) -> MultivariateWindow {
        MultivariateWindow {
            error_sum: 0.0,
            rows: 0,
            sums: vec![0.0; self.pca.dims()],
            complete_rows: 0,
        }
    }

    /// Adds a numeric row (NaN for missing) to `window`. `O(d²)`, no
    /// allocation.
    pub fn observe(&self, window: &mut MultivariateWindow, row: &[f64]) {
        if row.len() != self.pca.dims() || window.sums.len() != row.len() {
            return;
        }
        window.error_sum += self.pca.reconstruction_error(row);
        window.rows += 1;
        if row.iter().all(|x| x.is_finite()) {
            for (sum, x) in window.sums.iter_mut().zip(row) {
                *sum += x;
            }
            window.complete_rows += 1;
        }
    }

    /// Evaluates both detectors on `window`.
    pub fn evaluate(&self, window: &MultivariateWindow) -> MultivariateResult {
        let mean_shift = (window.complete_rows > 0)
            .then(|| {
                let n = window.complete_rows as f64;
                let mean: Vec<f64> = window.sums.iter().map(|s| s / n).collect();
                self.mean_shift.evaluate(&mean, window.complete_rows)
            })
            .flatten();
        MultivariateResult {
            pca: self.pca.evaluate(window.error_sum, window.rows),
            mean_shift,
        }
    }
}

// === impl MultivariateWindow ===

impl MultivariateWindow {
    /// Rows seen.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Rows with every value present.
    pub fn complete_rows(&self) -> u64 {
        self.complete_rows
    }

    /// Adds another window's sums (same detectors) to this one.
    pub fn merge(&mut self, other: &MultivariateWindow) {
        self.error_sum += other.error_sum;
        self.rows += other.rows;
        for (sum, x) in self.sums.iter_mut().zip(&other.sums) {
            *sum += x;
        }
        self.complete_rows += other.complete_rows;
    }

    /// Empties the window, keeping its allocation.
    pub fn clear(&mut self) {
        self.error_sum = 0.0;
        self.rows = 0;
        self.sums.fill(0.0);
        self.complete_rows = 0;
    }
}
