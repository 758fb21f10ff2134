//! Multivariate drift: has the joint distribution of the numeric features
//! moved, even where no single feature's distribution has (DESIGN.md §5)?
//!
//! | detector | statistic | drifted when |
//! |---|---|---|
//! | [`PcaDrift`] | a window's mean PCA reconstruction error (NannyML's data reconstruction drift) | outside the reference chunks' mean ± 3σ |
//! | [`MeanShift`] | Hotelling-style `T` of the window mean against the baseline mean | above the χ²(d) quantile at `1 − alpha` |
//!
//! They see different things. A change of shape that keeps every mean and
//! every marginal (two features whose correlation flips sign) moves rows
//! off the reference's principal subspace: the reconstruction error rises
//! in every window, while per-feature tests stay quiet. The mean shift is
//! not built for it and fires only in some windows, for a side reason
//! (the window mean now varies more than the reference covariance
//! allows). A small joint move of the mean along a direction the
//! reference hardly varies in is what the mean shift catches, and PCA
//! does not. `multivariate/tests.rs` measures all of this over 20
//! windows each.
//!
//! Linear algebra is nalgebra's (symmetric eigen decomposition, Cholesky
//! through [`Precision`](crate::detect::anomaly::Precision)); nothing is
//! hand-rolled. [`MultivariateDrift`] holds both detectors for a model and
//! [`MultivariateWindow`] the sums a window needs: per row, one PCA
//! residual (`O(d²)`) and `d` additions; no allocation.

mod mean_shift;
mod pca;
mod window;

pub use mean_shift::{MeanShift, MeanShiftResult};
pub use pca::{DEFAULT_CHUNKS, PcaConfig, PcaDrift, PcaResult};
pub use window::{MultivariateConfig, MultivariateDrift, MultivariateResult, MultivariateWindow};

use crate::detect::anomaly::AnomalyError;

/// Why a multivariate detector could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MultivariateError {
    /// Parameters out of range, every problem in one sentence list.
    #[error("invalid multivariate settings: {0}")]
    Config(String),
    /// The baseline has no numeric features.
    #[error("the baseline has no numeric features")]
    NoFeatures,
    /// Not enough reference rows to fit and calibrate.
    #[error("{have} reference rows, at least {need} needed")]
    TooFewRows {
        /// Rows needed.
        need: usize,
        /// Rows available.
        have: usize,
    },
    /// Rows of different lengths.
    #[error("{what} has {got} values where {expected} were expected")]
    Shape {
        /// Which input.
        what: &'static str,
        /// Length of the first row.
        expected: usize,
        /// Length found.
        got: usize,
    },
    /// A NaN or infinite reference value.
    #[error("{what} hold a value that is NaN or infinite")]
    NonFinite {
        /// Which input.
        what: &'static str,
    },
    /// A decomposition failed.
    #[error("{0}")]
    Decomposition(String),
    /// The inverse covariance could not be built.
    #[error(transparent)]
    Precision(#[from] AnomalyError),
}

#[cfg(test)]
mod tests;
