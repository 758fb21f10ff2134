//! Multiple-testing corrections across the features of one model.
//!
//! Testing twenty features at alpha = 0.05 flags about one of them on pure
//! chance at every evaluation; these corrections turn per-feature p-values
//! into reject (drift) flags that keep the false alarms in check. Both
//! match `statsmodels.stats.multitest.multipletests` (`'bonferroni'`,
//! `'fdr_bh'`) flag for flag.
//!
//! A NaN p-value (a test that could not run) is never rejected but still
//! counts as one of the `m` tests, which can only make the others harder to
//! reject.

/// Bonferroni: reject `p_i` when `p_i ≤ alpha / m`, with `m` the number of
/// p-values. Controls the family-wise error rate (the chance of any false
/// alarm) at `alpha`. Returns one flag per p-value, in input order; empty
/// input gives an empty result.
pub fn bonferroni(p_values: &[f64], alpha: f64) -> Vec<bool> {
    let threshold = alpha / p_values.len() as f64;
    p_values.iter().map(|p| *p <= threshold).collect()
}

/// Benjamini–Hochberg step-up: with the p-values sorted ascending
/// `p_(1) ≤ … ≤ p_(m)`, find the largest `k` with `p_(k) ≤ k/m · alpha`
/// and reject the `k` smallest (even those above their own `i/m · alpha`).
/// Controls the false discovery rate (the expected share of false alarms
/// among the flagged features) at `alpha`, for independent or positively
/// dependent tests; less conservative than [`bonferroni`].
///
/// Returns one flag per p-value, in input order; empty input gives an
/// empty result.
pub fn benjamini_hochberg(p_values: &[f64], alpha: f64) -> Vec<bool> {
    let m = p_values.len();
    let mut order: Vec<usize> = (0..m).collect();
    // NaN (of either sign) sorts last, so it never falls inside the
    // rejected prefix; it also never passes the `<=` below.
    order.sort_by(|&x, &y| {
        let (px, py) = (p_values[x], p_values[y]);
        px.is_nan().cmp(&py.is_nan()).then(px.total_cmp(&py))
    });
    let last = order
        .iter()
        .enumerate()
        .rev()
        // Same arithmetic as statsmodels: (rank / m) · alpha.
        .find(|&(rank, &index)| p_values[index] <= (rank + 1) as f64 / m as f64 * alpha)
        .map(|(rank, _)| rank + 1)
        .unwrap_or(0);
    let mut reject = vec![false; m];
    for &index in &order[..last] {
        reject[index] = true;
    }
    reject
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bonferroni_divides_alpha() {
        assert_eq!(
            bonferroni(&[0.01, 0.0125, 0.02, 0.5], 0.05),
            [true, true, false, false]
        );
        assert!(bonferroni(&[], 0.05).is_empty());
    }

    #[test]
    fn benjamini_hochberg_steps_up() {
        // 0.011 > 1/4 · 0.05 but 0.013 ≤ 3/4 · 0.05 rejects all three.
        assert_eq!(
            benjamini_hochberg(&[0.5, 0.013, 0.011, 0.012], 0.05),
            [false, true, true, true]
        );
        assert_eq!(benjamini_hochberg(&[0.2, 0.9], 0.05), [false, false]);
        assert!(benjamini_hochberg(&[], 0.05).is_empty());
    }

    #[test]
    fn nan_is_never_rejected() {
        assert_eq!(bonferroni(&[f64::NAN, 0.001], 0.05), [false, true]);
        assert_eq!(benjamini_hochberg(&[f64::NAN, 0.001], 0.05), [false, true]);
        // total_cmp alone would sort a negative NaN first, inside the prefix.
        assert_eq!(benjamini_hochberg(&[-f64::NAN, 0.001], 0.05), [false, true]);
    }
}
