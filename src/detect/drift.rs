//! Univariate drift statistics: one feature's current window against its
//! baseline.
//!
//! Each function matches a reference implementation on the same data, and
//! `tests/reference_drift.rs` proves it against vectors computed once by
//! SciPy (`scripts/reference/generate`):
//!
//! | function | reference |
//! |---|---|
//! | [`psi`] | the conventional formula (NumPy), with a [`PSI_EPSILON`] floor |
//! | [`ks_2samp`] | `scipy.stats.ks_2samp(a, b, method=...)`, two-sided |
//! | [`kstwo_sf`] | `scipy.stats.kstwo.sf(d, n)` |
//! | [`jensen_shannon_distance`] | `scipy.spatial.distance.jensenshannon(p, q, base=2)` |
//! | [`hellinger`] | the formula on normalised proportions (NumPy) |
//! | [`wasserstein_1`], [`wasserstein_1_weighted`] | `scipy.stats.wasserstein_distance` |
//! | [`chi_square`] | `scipy.stats.chi2_contingency` (default Yates correction) |
//! | [`bonferroni`], [`benjamini_hochberg`] | `statsmodels` `multipletests` rules (checked with SciPy's `false_discovery_control`) |
//!
//! Two kinds of input reach these functions from the windows: binned data
//! (bin proportions or counts per feature: [`psi`],
//! [`jensen_shannon_distance`], [`hellinger`], [`chi_square`]) and raw
//! samples (a capped sample of values: [`ks_2samp`], [`wasserstein_1`]).
//! Invalid input (empty, mismatched lengths, negative or non-finite counts)
//! is a [`DriftError`], never a panic. [`Method`] names each statistic for
//! config and metric labels and carries its default drift threshold.

mod binned;
mod chi2;
mod correction;
mod ks;
mod kstwo;
mod method;
mod wasserstein;

pub use binned::{PSI_EPSILON, hellinger, jensen_shannon_distance, proportions, psi};
pub use chi2::{ChiSquare, chi_square};
pub use correction::{benjamini_hochberg, bonferroni};
pub use ks::{KsMode, KsResult, ks_2samp};
pub use kstwo::kstwo_sf;
pub use method::{Method, UnknownMethod};
pub use wasserstein::{
    WASSERSTEIN_STD_FLOOR, normalize_wasserstein, wasserstein_1, wasserstein_1_normalized,
    wasserstein_1_weighted,
};

/// Why a drift statistic could not be computed from its input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DriftError {
    /// An input had no values (after NaNs were removed, for samples).
    #[error("{what} is empty")]
    Empty {
        /// Which input, e.g. `"sample a"`.
        what: &'static str,
    },
    /// Two inputs that must be aligned have different lengths.
    #[error("{left} has {left_len} values but {right} has {right_len}")]
    LengthMismatch {
        /// The first input's name.
        left: &'static str,
        /// The first input's length.
        left_len: usize,
        /// The second input's name.
        right: &'static str,
        /// The second input's length.
        right_len: usize,
    },
    /// A count, proportion, weight or value that the statistic cannot use
    /// (negative, infinite or NaN where that is not allowed).
    #[error("{what}[{index}] is {value}, which is not allowed here")]
    InvalidValue {
        /// Which input.
        what: &'static str,
        /// Position of the offending value.
        index: usize,
        /// The value itself.
        value: f64,
    },
    /// Counts or weights that must have a positive, finite total sum to
    /// zero (or overflow).
    #[error("{what} must sum to a positive, finite total")]
    ZeroTotal {
        /// Which input.
        what: &'static str,
    },
}

/// Checks that two binned inputs are non-empty, aligned, and hold finite,
/// non-negative numbers (counts, proportions or weights).
fn check_bins(
    left: &'static str,
    p: &[f64],
    right: &'static str,
    q: &[f64],
) -> Result<(), DriftError> {
    if p.len() != q.len() {
        return Err(DriftError::LengthMismatch {
            left,
            left_len: p.len(),
            right,
            right_len: q.len(),
        });
    }
    check_non_negative(left, p)?;
    check_non_negative(right, q)
}

/// Checks that one input is non-empty and holds finite, non-negative numbers.
fn check_non_negative(what: &'static str, values: &[f64]) -> Result<(), DriftError> {
    if values.is_empty() {
        return Err(DriftError::Empty { what });
    }
    match values.iter().position(|v| !v.is_finite() || *v < 0.0) {
        Some(index) => Err(DriftError::InvalidValue {
            what,
            index,
            value: values[index],
        }),
        None => Ok(()),
    }
}

/// A sample with its NaNs removed, sorted ascending. NaN is a missing value
/// here (validation counts it separately); SciPy would instead propagate it
/// into a NaN result, which no alert rule could act on.
fn sorted_without_nan(what: &'static str, sample: &[f64]) -> Result<Vec<f64>, DriftError> {
    let mut sorted: Vec<f64> = sample.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return Err(DriftError::Empty { what });
    }
    sorted.sort_by(f64::total_cmp);
    Ok(sorted)
}
