//! Wasserstein-1 (earth mover's) distance between two one-dimensional
//! distributions, as `scipy.stats.wasserstein_distance`.
//!
//! In one dimension W1 is the area between the two CDFs,
//! `∫ |F_a(x) − F_b(x)| dx`, which a single merge of the sorted values
//! computes exactly.

use super::{DriftError, check_non_negative, sorted_without_nan};

/// The smallest reference standard deviation [`normalize_wasserstein`]
/// divides by: a constant reference (std 0) would otherwise make every
/// change infinite. The common convention (e.g. Evidently's normalised
/// Wasserstein drift test).
pub const WASSERSTEIN_STD_FLOOR: f64 = 1e-3;

/// Wasserstein-1 distance between the samples `a` and `b` (each value
/// weighing the same), matching `scipy.stats.wasserstein_distance(a, b)`.
/// The result is in the samples' unit: how far, on average, mass must move
/// to turn one distribution into the other.
///
/// NaNs are dropped (missing values). Errors if a sample has no values
/// left or holds ±∞ (the distance would be infinite or undefined).
pub fn wasserstein_1(a: &[f64], b: &[f64]) -> Result<f64, DriftError> {
    let a = sorted_finite("sample a", a)?;
    let b = sorted_finite("sample b", b)?;
    // Unit weights: cumulative weight k is exactly the count k.
    let a_cumulative: Vec<f64> = (0..=a.len()).map(|k| k as f64).collect();
    let b_cumulative: Vec<f64> = (0..=b.len()).map(|k| k as f64).collect();
    Ok(cdf_area(&a, &a_cumulative, &b, &b_cumulative))
}

/// Wasserstein-1 distance between weighted values, matching
/// `scipy.stats.wasserstein_distance(a, b, wa, wb)`: value `a[i]` carries
/// weight `wa[i]`, and each side's weights are normalised to sum 1. Suits
/// histograms held as bin midpoints with counts.
///
/// Errors if a side is empty, its values and weights differ in length, a
/// value is not finite, a weight is negative or not finite, or a side's
/// weights sum to zero.
pub fn wasserstein_1_weighted(
    a: &[f64],
    wa: &[f64],
    b: &[f64],
    wb: &[f64],
) -> Result<f64, DriftError> {
    let (a, a_cumulative) = sorted_weighted("a", a, "wa", wa)?;
    let (b, b_cumulative) = sorted_weighted("b", b, "wb", wb)?;
    Ok(cdf_area(&a, &a_cumulative, &b, &b_cumulative))
}

/// The normalised Wasserstein drift score: [`wasserstein_1`] of `reference`
/// and `current`, divided by the population standard deviation (ddof 0) of
/// `reference`, floored at [`WASSERSTEIN_STD_FLOOR`]. Unit-free, so one
/// threshold (0.1 by default, see [`super::Method::Wasserstein`]) suits every
/// feature: 0.1 means the mass moved a tenth of a reference std on average.
///
/// NaNs are dropped; errors as [`wasserstein_1`].
pub fn wasserstein_1_normalized(reference: &[f64], current: &[f64]) -> Result<f64, DriftError> {
    let distance = wasserstein_1(reference, current)?;
    let values: Vec<f64> = reference.iter().copied().filter(|v| !v.is_nan()).collect();
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    Ok(normalize_wasserstein(distance, variance.sqrt()))
}

/// Divides a Wasserstein distance by the reference standard deviation (e.g.
/// the baseline's stored `std`), floored at [`WASSERSTEIN_STD_FLOOR`]; a
/// zero, negative or NaN std uses the floor.
pub fn normalize_wasserstein(distance: f64, reference_std: f64) -> f64 {
    // f64::max returns the other operand when one is NaN.
    distance / reference_std.max(WASSERSTEIN_STD_FLOOR)
}

/// `∫ |F_a − F_b| dx` for sorted values with cumulative weights
/// (`cumulative[k]` = weight of the first `k` values, so the last entry is
/// the total). Mirrors SciPy's `_cdf_distance`: each CDF is evaluated as
/// cumulative weight over total, between consecutive values of the merged
/// samples.
fn cdf_area(a: &[f64], a_cumulative: &[f64], b: &[f64], b_cumulative: &[f64]) -> f64 {
    let (a_total, b_total) = (a_cumulative[a.len()], b_cumulative[b.len()]);
    let (mut i, mut j) = (0, 0);
    let mut previous: Option<f64> = None;
    let mut area = 0.0;
    while i < a.len() || j < b.len() {
        let take_a = j >= b.len() || (i < a.len() && a[i] <= b[j]);
        let value = if take_a { a[i] } else { b[j] };
        if let Some(previous) = previous {
            // Everything at or below `previous` is consumed, nothing above.
            let gap = a_cumulative[i] / a_total - b_cumulative[j] / b_total;
            area += gap.abs() * (value - previous);
        }
        previous = Some(value);
        if take_a {
            i += 1;
        } else {
            j += 1;
        }
    }
    area
}

/// A sample without NaN, sorted, refusing infinities.
fn sorted_finite(what: &'static str, sample: &[f64]) -> Result<Vec<f64>, DriftError> {
    let sorted = sorted_without_nan(what, sample)?;
    match sorted.iter().position(|v| v.is_infinite()) {
        Some(index) => Err(DriftError::InvalidValue {
            what,
            index,
            value: sorted[index],
        }),
        None => Ok(sorted),
    }
}

/// Values sorted with their weights carried along, as (values, cumulative
/// weights) after validation.
fn sorted_weighted(
    what: &'static str,
    values: &[f64],
    weights_what: &'static str,
    weights: &[f64],
) -> Result<(Vec<f64>, Vec<f64>), DriftError> {
    if values.len() != weights.len() {
        return Err(DriftError::LengthMismatch {
            left: what,
            left_len: values.len(),
            right: weights_what,
            right_len: weights.len(),
        });
    }
    check_non_negative(weights_what, weights)?;
    if let Some(index) = values.iter().position(|v| !v.is_finite()) {
        return Err(DriftError::InvalidValue {
            what,
            index,
            value: values[index],
        });
    }
    let mut pairs: Vec<(f64, f64)> = values
        .iter()
        .copied()
        .zip(weights.iter().copied())
        .collect();
    pairs.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut cumulative = Vec::with_capacity(pairs.len() + 1);
    let mut running = 0.0;
    cumulative.push(running);
    for (_, w) in &pairs {
        running += w;
        cumulative.push(running);
    }
    if !(running > 0.0 && running.is_finite()) {
        return Err(DriftError::ZeroTotal { what: weights_what });
    }
    Ok((pairs.into_iter().map(|(v, _)| v).collect(), cumulative))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_samples_are_zero_apart() {
        let a = [1.0, 2.0, 2.0, 7.0];
        let b = [7.0, 2.0, 1.0, 2.0];
        assert_eq!(wasserstein_1(&a, &b), Ok(0.0));
    }

    #[test]
    fn a_shift_moves_every_unit_of_mass_by_the_shift() {
        let a = [0.0, 1.0, 5.0];
        let b: Vec<f64> = a.iter().map(|v| v + 2.5).collect();
        assert!((wasserstein_1(&a, &b).unwrap() - 2.5).abs() < 1e-15);
    }

    #[test]
    fn weights_act_like_repeated_values() {
        let weighted = wasserstein_1_weighted(&[1.0, 3.0], &[2.0, 1.0], &[2.0], &[5.0]).unwrap();
        let repeated = wasserstein_1(&[1.0, 1.0, 3.0], &[2.0]).unwrap();
        assert!((weighted - repeated).abs() < 1e-15);
    }

    #[test]
    fn normalisation_uses_the_reference_std_with_a_floor() {
        let reference = [1.0, 3.0]; // population std 1
        let current = [2.0, 4.0];
        assert!((wasserstein_1_normalized(&reference, &current).unwrap() - 1.0).abs() < 1e-15);
        let constant = [3.0, 3.0, 3.0];
        let moved = wasserstein_1_normalized(&constant, &[3.5]).unwrap();
        assert!((moved - 0.5 / WASSERSTEIN_STD_FLOOR).abs() < 1e-9);
        assert_eq!(
            normalize_wasserstein(0.2, f64::NAN),
            0.2 / WASSERSTEIN_STD_FLOOR
        );
    }

    #[test]
    fn invalid_inputs_are_errors() {
        assert!(matches!(
            wasserstein_1(&[], &[1.0]),
            Err(DriftError::Empty { .. })
        ));
        assert!(matches!(
            wasserstein_1(&[f64::INFINITY], &[1.0]),
            Err(DriftError::InvalidValue { .. })
        ));
        assert_eq!(
            wasserstein_1(&[1.0, f64::NAN], &[2.0]),
            wasserstein_1(&[1.0], &[2.0])
        );
        assert!(matches!(
            wasserstein_1_weighted(&[1.0], &[0.0], &[1.0], &[1.0]),
            Err(DriftError::ZeroTotal { what: "wa" })
        ));
        assert!(matches!(
            wasserstein_1_weighted(&[1.0, 2.0], &[1.0], &[1.0], &[1.0]),
            Err(DriftError::LengthMismatch { .. })
        ));
        assert!(matches!(
            wasserstein_1_weighted(&[1.0], &[-1.0], &[1.0], &[1.0]),
            Err(DriftError::InvalidValue { what: "wa", .. })
        ));
    }
}
