//! Chi-square test of homogeneity between a reference and a current
//! histogram of categories (or bins), as `scipy.stats.chi2_contingency` on
//! the 2×k table `[reference_counts, current_counts]`.

use statrs::distribution::{ChiSquared, ContinuousCDF};

use super::{DriftError, check_bins};

/// The outcome of [`chi_square`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChiSquare {
    /// Pearson's statistic `Σ (observed − expected)² / expected` over both
    /// rows (after Yates' correction when `dof == 1`).
    pub statistic: f64,
    /// Degrees of freedom: the number of categories kept, minus one.
    pub dof: usize,
    /// `P(χ²_dof ≥ statistic)`: small means the two windows differ. 1 when
    /// `dof == 0`.
    pub p_value: f64,
}

/// Chi-square test that `reference_counts` and `current_counts` (counts
/// per category, aligned by index) come from the same distribution,
/// matching `scipy.stats.chi2_contingency(np.array([reference_counts,
/// current_counts]))` with SciPy's default `correction=True`.
///
/// - Categories with a zero count in both rows are dropped first: they
///   carry no information, and SciPy refuses tables with a zero expected
///   frequency. A category seen only in the current window (reference
///   count 0) is kept and counts fully towards the statistic.
/// - Yates' continuity correction applies only when one degree of freedom
///   remains (two categories): each observed count moves towards its
///   expected value by 0.5 (or less, never past it).
/// - With a single category left (`dof == 0`) the result is statistic 0,
///   p-value 1, as SciPy returns.
///
/// Counts may be fractional (e.g. decayed). Errors if the lengths differ,
/// the inputs are empty, a count is negative or not finite, or either row
/// sums to zero.
pub fn chi_square(
    reference_counts: &[f64],
    current_counts: &[f64],
) -> Result<ChiSquare, DriftError> {
    check_bins(
        "reference counts",
        reference_counts,
        "current counts",
        current_counts,
    )?;
    let kept: Vec<(f64, f64)> = reference_counts
        .iter()
        .zip(current_counts)
        .filter(|(r, c)| **r + **c > 0.0)
        .map(|(r, c)| (*r, *c))
        .collect();
    let reference_total: f64 = kept.iter().map(|(r, _)| r).sum();
    let current_total: f64 = kept.iter().map(|(_, c)| c).sum();
    for (what, total) in [
        ("reference counts", reference_total),
        ("current counts", current_total),
    ] {
        if !(total > 0.0 && total.is_finite()) {
            return Err(DriftError::ZeroTotal { what });
        }
    }
    let dof = kept.len() - 1;
    if dof == 0 {
        return Ok(ChiSquare {
            statistic: 0.0,
            dof,
            p_value: 1.0,
        });
    }

    let total = reference_total + current_total;
    let yates = dof == 1;
    let mut statistic = 0.0;
    for (r, c) in kept {
        let column = r + c;
        for (observed, row_total) in [(r, reference_total), (c, current_total)] {
            // Same order of operations as SciPy's expected_freq.
            let expected = row_total * column / total;
            let observed = if yates {
                let diff = expected - observed;
                observed + diff.signum() * diff.abs().min(0.5)
            } else {
                observed
            };
            statistic += (observed - expected).powi(2) / expected;
        }
    }
    // dof ≥ 1 here, so the distribution always exists; NaN is unreachable.
    let p_value = ChiSquared::new(dof as f64)
        .map(|chi2| chi2.sf(statistic))
        .unwrap_or(f64::NAN);
    Ok(ChiSquare {
        statistic,
        dof,
        p_value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_histograms_do_not_drift() {
        let counts = [10.0, 20.0, 30.0];
        let r = chi_square(&counts, &counts).unwrap();
        assert_eq!(r.statistic, 0.0);
        assert_eq!(r.dof, 2);
        assert!((r.p_value - 1.0).abs() < 1e-15);
    }

    #[test]
    fn empty_columns_are_dropped_and_unseen_categories_count() {
        let with_empty = chi_square(&[10.0, 0.0, 20.0, 5.0], &[12.0, 0.0, 18.0, 9.0]).unwrap();
        let without = chi_square(&[10.0, 20.0, 5.0], &[12.0, 18.0, 9.0]).unwrap();
        assert_eq!(with_empty, without);
        let unseen = chi_square(&[50.0, 50.0, 0.0], &[30.0, 30.0, 40.0]).unwrap();
        assert_eq!(unseen.dof, 2);
        assert!(unseen.p_value < 1e-10);
    }

    #[test]
    fn yates_only_with_one_degree_of_freedom() {
        // Every observed count is within 0.5 of its expected count (about
        // 9.76 and 10.24 in each row), so the correction removes it all.
        let r = chi_square(&[10.0, 10.0], &[10.0, 11.0]).unwrap();
        assert_eq!((r.statistic, r.dof, r.p_value), (0.0, 1, 1.0));
    }

    #[test]
    fn a_single_category_has_no_test() {
        let r = chi_square(&[0.0, 5.0], &[0.0, 7.0]).unwrap();
        assert_eq!((r.statistic, r.dof, r.p_value), (0.0, 0, 1.0));
    }

    #[test]
    fn invalid_inputs_are_errors() {
        assert!(matches!(
            chi_square(&[1.0], &[1.0, 2.0]),
            Err(DriftError::LengthMismatch { .. })
        ));
        assert!(matches!(
            chi_square(&[0.0, 0.0], &[1.0, 2.0]),
            Err(DriftError::ZeroTotal {
                what: "reference counts"
            })
        ));
        assert!(matches!(
            chi_square(&[1.0, f64::NAN], &[1.0, 2.0]),
            Err(DriftError::InvalidValue { .. })
        ));
        assert!(matches!(
            chi_square(&[], &[]),
            Err(DriftError::Empty { .. })
        ));
    }
}
