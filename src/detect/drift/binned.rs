//! Distances between two binned distributions: PSI, Jensen–Shannon and
//! Hellinger.
//!
//! The reference side comes from the baseline's bin proportions (or category
//! shares) and the current side from a window's counts over the same bins,
//! so both inputs are aligned slices of the same length.

use super::{DriftError, check_bins, check_non_negative};

/// The floor applied to empty bins before PSI takes logarithms: a bin with
/// proportion 0 counts as 1e-4 (0.01 %).
///
/// Without it one empty bin makes PSI infinite. The floor is applied to each
/// proportion without renormalising the others, the common convention (so a
/// Prometheus recording rule can reproduce it with `clamp_min(x, 1e-4)`).
pub const PSI_EPSILON: f64 = 1e-4;

/// Turns counts into proportions that sum to 1.
///
/// Errors if `counts` is empty, holds a negative or non-finite count, or
/// sums to zero.
pub fn proportions(counts: &[f64]) -> Result<Vec<f64>, DriftError> {
    normalized("counts", counts)
}

/// Population Stability Index of `current` against `reference`, both bin
/// proportions over the same bins (each should sum to 1; see
/// [`proportions`]):
///
/// `PSI = Σ (c_i − r_i) · ln(c_i / r_i)`, with every `r_i` and `c_i` first
/// raised to at least [`PSI_EPSILON`] so empty bins stay finite.
///
/// Conventional reading: below 0.1 no significant shift, 0.1–0.2 a moderate
/// shift, above 0.2 a significant shift (the default threshold of
/// [`super::Method::Psi`]). PSI is ≥ 0 and symmetric in its two inputs (up
/// to rounding).
///
/// Errors on empty or mismatched inputs and on negative or non-finite
/// proportions. Inputs are not renormalised: pass proportions, not counts.
pub fn psi(reference: &[f64], current: &[f64]) -> Result<f64, DriftError> {
    check_bins(
        "reference proportions",
        reference,
        "current proportions",
        current,
    )?;
    Ok(reference
        .iter()
        .zip(current)
        .map(|(r, c)| {
            let r = r.max(PSI_EPSILON);
            let c = c.max(PSI_EPSILON);
            (c - r) * (c / r).ln()
        })
        .sum())
}

/// Jensen–Shannon distance (base 2) between two distributions over the same
/// bins, matching `scipy.spatial.distance.jensenshannon(p, q, base=2)`.
///
/// Like SciPy, each input is first divided by its own sum, so counts work as
/// well as proportions. With `m = (p + q) / 2` the result is
/// `sqrt((KL(p‖m) + KL(q‖m)) / 2)` with logarithms in base 2: 0 for equal
/// distributions, 1 for disjoint supports. Rounding can make the sum under
/// the root a hair below zero for near-equal inputs; it is clamped to 0
/// where SciPy would return NaN.
///
/// Errors on empty or mismatched inputs, negative or non-finite values, or
/// an input that sums to zero.
pub fn jensen_shannon_distance(p: &[f64], q: &[f64]) -> Result<f64, DriftError> {
    check_bins("p", p, "q", q)?;
    let p = normalized("p", p)?;
    let q = normalized("q", q)?;
    let mut divergence = 0.0;
    for (pi, qi) in p.iter().zip(&q) {
        let mi = (pi + qi) / 2.0;
        divergence += relative_entropy(*pi, mi) + relative_entropy(*qi, mi);
    }
    Ok((divergence / std::f64::consts::LN_2 / 2.0).max(0.0).sqrt())
}

/// Hellinger distance between two distributions over the same bins:
///
/// `H(p, q) = sqrt(Σ (√p_i − √q_i)²) / √2`,
///
/// which equals `sqrt(1 − Σ √(p_i q_i))` but keeps its precision for
/// near-equal inputs. Each input is first divided by its own sum (counts
/// work too), so the range is 0 (equal) to 1 (disjoint supports).
///
/// Errors on empty or mismatched inputs, negative or non-finite values, or
/// an input that sums to zero.
pub fn hellinger(p: &[f64], q: &[f64]) -> Result<f64, DriftError> {
    check_bins("p", p, "q", q)?;
    let p = normalized("p", p)?;
    let q = normalized("q", q)?;
    let squared: f64 = p
        .iter()
        .zip(&q)
        .map(|(pi, qi)| (pi.sqrt() - qi.sqrt()).powi(2))
        .sum();
    Ok(squared.sqrt() / std::f64::consts::SQRT_2)
}

/// `x · ln(x / y)`, with the convention `0 · ln(0 / y) = 0` (SciPy's
/// `rel_entr` for the cases that can occur here, where `y ≥ x / 2`).
fn relative_entropy(x: f64, y: f64) -> f64 {
    if x > 0.0 { x * (x / y).ln() } else { 0.0 }
}

/// `values` divided by their sum, after validation.
fn normalized(what: &'static str, values: &[f64]) -> Result<Vec<f64>, DriftError> {
    check_non_negative(what, values)?;
    let total: f64 = values.iter().sum();
    // An overflowing sum (finite values near f64::MAX) is as unusable as 0.
    if !(total > 0.0 && total.is_finite()) {
        return Err(DriftError::ZeroTotal { what });
    }
    Ok(values.iter().map(|v| v / total).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_distributions_are_zero() {
        let p = [0.1, 0.2, 0.3, 0.4];
        assert_eq!(psi(&p, &p), Ok(0.0));
        assert_eq!(jensen_shannon_distance(&p, &p), Ok(0.0));
        assert_eq!(hellinger(&p, &p), Ok(0.0));
    }

    #[test]
    fn disjoint_supports_reach_the_maximum() {
        let p = [0.5, 0.5, 0.0, 0.0];
        let q = [0.0, 0.0, 0.5, 0.5];
        assert!((jensen_shannon_distance(&p, &q).unwrap() - 1.0).abs() < 1e-15);
        assert!((hellinger(&p, &q).unwrap() - 1.0).abs() < 1e-15);
    }

    #[test]
    fn psi_stays_finite_with_empty_bins() {
        let reference = [0.5, 0.5, 0.0];
        let current = [0.0, 0.5, 0.5];
        let value = psi(&reference, &current).unwrap();
        // Two bins at the floor, each contributing (0.5 − ε)·ln(0.5 / ε).
        let expected = 2.0 * (0.5 - PSI_EPSILON) * (0.5 / PSI_EPSILON).ln();
        assert!((value - expected).abs() < 1e-12, "{value} vs {expected}");
    }

    #[test]
    fn psi_is_symmetric() {
        let a = [0.1, 0.6, 0.3];
        let b = [0.3, 0.3, 0.4];
        let (ab, ba) = (psi(&a, &b).unwrap(), psi(&b, &a).unwrap());
        assert!((ab - ba).abs() < 1e-15, "{ab} vs {ba}");
    }

    #[test]
    fn counts_and_proportions_give_the_same_distances() {
        let counts = [3.0, 0.0, 5.0, 2.0];
        let other = [1.0, 4.0, 4.0, 1.0];
        let p = proportions(&counts).unwrap();
        let q = proportions(&other).unwrap();
        assert_eq!(p, vec![0.3, 0.0, 0.5, 0.2]);
        let js_counts = jensen_shannon_distance(&counts, &other).unwrap();
        let js_props = jensen_shannon_distance(&p, &q).unwrap();
        assert!((js_counts - js_props).abs() < 1e-15);
        let h_counts = hellinger(&counts, &other).unwrap();
        let h_props = hellinger(&p, &q).unwrap();
        assert!((h_counts - h_props).abs() < 1e-15);
    }

    #[test]
    fn invalid_inputs_are_errors() {
        assert!(matches!(psi(&[], &[]), Err(DriftError::Empty { .. })));
        assert!(matches!(
            psi(&[0.5, 0.5], &[1.0]),
            Err(DriftError::LengthMismatch { .. })
        ));
        assert!(matches!(
            hellinger(&[0.5, f64::NAN], &[0.5, 0.5]),
            Err(DriftError::InvalidValue { index: 1, .. })
        ));
        assert!(matches!(
            jensen_shannon_distance(&[0.0, 0.0], &[0.5, 0.5]),
            Err(DriftError::ZeroTotal { what: "p" })
        ));
        assert!(matches!(
            proportions(&[1.0, -1.0]),
            Err(DriftError::InvalidValue { .. })
        ));
        assert!(matches!(
            proportions(&[f64::MAX, f64::MAX]),
            Err(DriftError::ZeroTotal { .. })
        ));
    }
}
