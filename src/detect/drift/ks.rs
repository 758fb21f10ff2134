//! The two-sample Kolmogorov–Smirnov test, two-sided, as
//! `scipy.stats.ks_2samp(a, b, alternative='two-sided', method=...)`.
//!
//! The statistic is computed in integers: with `i` and `j` values of each
//! sample at or below a point, the CDF gap is `(i·n₂ − j·n₁) / (n₁·n₂)`, a
//! multiple of `1 / lcm(n₁, n₂)`. Keeping it as that integer multiple `h`
//! makes ties exact and is what the exact p-value needs.

use super::kstwo::kstwo_sf;
use super::{DriftError, sorted_without_nan};

/// Largest sample for which [`KsMode::Auto`] computes the exact p-value
/// (SciPy's `MAX_AUTO_N`).
const MAX_AUTO_N: usize = 10_000;

/// How [`ks_2samp`] computes the p-value (SciPy's `method` argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KsMode {
    /// Exact when both samples have at most 10 000 values, asymptotic
    /// otherwise (SciPy's `'auto'` rule). The default.
    #[default]
    Auto,
    /// The exact permutation probability, counting lattice paths. Like
    /// SciPy, switches to asymptotic when `lcm(n₁, n₂)` would not fit in
    /// 32 bits. Equal sizes cost `O(n)`; different sizes cost about
    /// `n₁·n₂·min(1, 2D)` steps (≈ 0.5 s in a debug build for 3000 vs 2999
    /// completely different values), so prefer [`KsMode::Auto`] for large
    /// samples.
    Exact,
    /// `kstwo.sf(D, round(n₁n₂/(n₁+n₂)))`: the one-sample distribution at
    /// the effective sample size (SciPy's `'asymp'`).
    Asymptotic,
}

/// The outcome of [`ks_2samp`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KsResult {
    /// `D = max |F_a(x) − F_b(x)|`, the largest gap between the two
    /// empirical CDFs, in 0..=1.
    pub statistic: f64,
    /// Probability, under "both samples come from the same continuous
    /// distribution", of a statistic at least as large. Ties in the data
    /// make it conservative, as in SciPy.
    pub p_value: f64,
    /// The method actually used: [`KsMode::Exact`] or
    /// [`KsMode::Asymptotic`], never `Auto`.
    pub mode: KsMode,
}

/// Two-sided two-sample Kolmogorov–Smirnov test of samples `a` and `b`,
/// matching `scipy.stats.ks_2samp(a, b, alternative='two-sided',
/// method=mode)` (`'auto'`, `'exact'`, `'asymp'`).
///
/// NaNs are dropped from both samples before testing (they are missing
/// values; SciPy would return NaN). ±∞ are ordinary extreme values. Errors
/// with [`DriftError::Empty`] if either sample has no values left. Inputs
/// need not be sorted.
///
/// Two deliberate differences from SciPy at its edges: the asymptotic
/// effective size is at least 1 (SciPy rounds 1-vs-1 samples to n = 0 and
/// returns NaN); and the exact computation here cannot fail, whereas SciPy
/// falls back to the asymptotic p-value when its own exact sum rounds
/// outside [0, 1] (e.g. two samples of 7 with D = 1/7, where SciPy reports
/// 0.99996 instead of the exact 1).
pub fn ks_2samp(a: &[f64], b: &[f64], mode: KsMode) -> Result<KsResult, DriftError> {
    let a = sorted_without_nan("sample a", a)?;
    let b = sorted_without_nan("sample b", b)?;
    let (n1, n2) = (a.len() as u128, b.len() as u128);
    let g = gcd(n1, n2);
    let (n1g, n2g) = (n1 / g, n2 / g);
    let lcm = n1g * n2;
    let h = max_gap(&a, &b) / g;
    let statistic = h as f64 / lcm as f64;

    let mode = match mode {
        KsMode::Auto if a.len().max(b.len()) <= MAX_AUTO_N => KsMode::Exact,
        KsMode::Auto => KsMode::Asymptotic,
        // SciPy's guard: beyond this the lattice is too fine for it.
        KsMode::Exact if n1g as f64 >= f64::from(i32::MAX) / n2g as f64 => KsMode::Asymptotic,
        other => other,
    };
    let p_value = if mode == KsMode::Exact {
        exact_p_value(n1, n2, g, h)
    } else {
        asymptotic_p_value(a.len(), b.len(), statistic)
    };
    Ok(KsResult {
        statistic,
        p_value: p_value.clamp(0.0, 1.0),
        mode,
    })
}

/// `max |i·n₂ − j·n₁|` over every point where either empirical CDF steps,
/// for sorted samples without NaN.
fn max_gap(a: &[f64], b: &[f64]) -> u128 {
    let (n1, n2) = (a.len() as i128, b.len() as i128);
    let (mut i, mut j) = (0, 0);
    let mut best = 0;
    while i < a.len() || j < b.len() {
        let next = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) => x.min(*y),
            (Some(x), None) => *x,
            (None, Some(y)) => *y,
            (None, None) => break,
        };
        // Step past every value equal to `next` in both samples at once, so
        // ties never open a gap that is not there (`<=` also merges -0.0
        // with 0.0).
        while a.get(i).is_some_and(|x| *x <= next) {
            i += 1;
        }
        while b.get(j).is_some_and(|y| *y <= next) {
            j += 1;
        }
        best = best.max((i as i128 * n2 - j as i128 * n1).unsigned_abs());
    }
    best
}

/// `kstwo.sf(D, round(en))` with `en = n₁n₂/(n₁+n₂)` computed in floating
/// point and rounded half to even, exactly as NumPy does.
fn asymptotic_p_value(n1: usize, n2: usize, statistic: f64) -> f64 {
    let (m, n) = (n1.max(n2) as f64, n1.min(n2) as f64);
    let en = (m * n / (m + n)).round_ties_even().max(1.0);
    kstwo_sf(en as u64, statistic)
}

/// `P(D ≥ h / lcm)` under the null hypothesis: every interleaving of the
/// two samples (a monotone lattice path from (0, 0) to (n₁, n₂)) is equally
/// likely, and D is the largest `|i/n₁ − j/n₂|` the path visits.
fn exact_p_value(n1: u128, n2: u128, g: u128, h: u128) -> f64 {
    if h == 0 {
        return 1.0;
    }
    if n1 == n2 {
        equal_sizes_p_value(n1, h)
    } else {
        lattice_p_value(n1, n2, g, h)
    }
}

/// Equal sizes `n` (so `lcm = n`): by the reflection principle,
/// `P(D ≥ h/n) = 2 Σ_{k ≥ 1} (−1)^(k−1) C(2n, n − kh) / C(2n, n)`.
fn equal_sizes_p_value(n: u128, h: u128) -> f64 {
    let nf = n as f64;
    let mut ratio = 1.0; // C(2n, n − kh) / C(2n, n), built factor by factor
    let mut sum = 0.0;
    let mut sign = 1.0;
    let mut step = 0;
    for k in 1..=(n / h) {
        while step < k * h {
            let s = step as f64;
            ratio *= (nf - s) / (nf + 1.0 + s);
            step += 1;
        }
        if ratio == 0.0 {
            break;
        }
        sum += sign * ratio;
        sign = -sign;
    }
    2.0 * sum
}

/// Unequal sizes: walk the lattice row by row, carrying the probability of
/// reaching each point without having left the band
/// `|i·n₂/g − j·n₁/g| < h`. A uniformly random path steps in `i` from
/// `(i, j)` with probability `(n₁−i) / (n₁−i + n₂−j)`, so the walk works in
/// probabilities (no huge binomials). Mass that steps out of the band is
/// summed: those are exactly the paths with `D ≥ h/lcm`, and a sum of
/// positive terms keeps tiny p-values accurate.
fn lattice_p_value(n1: u128, n2: u128, g: u128, h: u128) -> f64 {
    let (n1g, n2g) = ((n1 / g) as i128, (n2 / g) as i128);
    let (rows, cols) = (n1 as i128, n2 as i128);
    let h = h as i128;
    // Columns j of row i inside the band: j·n1g in (i·n2g − h, i·n2g + h).
    let band = |i: i128| {
        let lo = ((i * n2g - h).div_euclid(n1g) + 1).max(0);
        let hi = (i * n2g + h - 1).div_euclid(n1g).min(cols);
        (lo, hi)
    };
    let width = n2 as usize + 1;
    let mut current = vec![0.0_f64; width];
    let mut next = vec![0.0_f64; width];
    current[0] = 1.0;
    let mut escaped = 0.0;
    let (mut lo, mut hi) = band(0);
    for i in 0..=rows {
        let (next_lo, next_hi) = if i < rows { band(i + 1) } else { (1, 0) };
        for j in next_lo..=next_hi {
            next[j as usize] = 0.0;
        }
        for j in lo..=hi {
            let mass = current[j as usize];
            if mass == 0.0 {
                continue;
            }
            let (left_i, left_j) = ((rows - i) as f64, (cols - j) as f64);
            let total = left_i + left_j;
            if total == 0.0 {
                continue; // (n₁, n₂): a path that stayed inside throughout
            }
            if left_i > 0.0 {
                let step = mass * left_i / total;
                if (next_lo..=next_hi).contains(&j) {
                    next[j as usize] += step;
                } else {
                    escaped += step;
                }
            }
            if left_j > 0.0 {
                let step = mass * left_j / total;
                if j < hi {
                    current[j as usize + 1] += step;
                } else {
                    escaped += step;
                }
            }
        }
        std::mem::swap(&mut current, &mut next);
        (lo, hi) = (next_lo, next_hi);
    }
    escaped
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_samples_have_no_gap() {
        let a = [3.0, 1.0, 2.0, 2.0, 5.0];
        for mode in [KsMode::Exact, KsMode::Asymptotic] {
            let r = ks_2samp(&a, &a, mode).unwrap();
            assert_eq!((r.statistic, r.p_value), (0.0, 1.0), "{mode:?}");
        }
    }

    #[test]
    fn disjoint_samples_have_the_largest_gap() {
        let a = [1.0, 2.0, 3.0];
        let b = [10.0, 11.0, 12.0, 13.0];
        let r = ks_2samp(&a, &b, KsMode::Auto).unwrap();
        assert_eq!(r.statistic, 1.0);
        assert_eq!(r.mode, KsMode::Exact);
        // Only the 2 of C(7, 3) = 35 interleavings that separate the samples.
        assert!((r.p_value - 2.0 / 35.0).abs() < 1e-15, "{}", r.p_value);
    }

    #[test]
    fn nans_are_dropped_and_empty_is_an_error() {
        let with_nan = ks_2samp(&[1.0, f64::NAN, 2.0], &[1.5, 3.0], KsMode::Exact).unwrap();
        let without = ks_2samp(&[1.0, 2.0], &[1.5, 3.0], KsMode::Exact).unwrap();
        assert_eq!(with_nan, without);
        assert!(matches!(
            ks_2samp(&[f64::NAN], &[1.0], KsMode::Auto),
            Err(DriftError::Empty { what: "sample a" })
        ));
        assert!(ks_2samp(&[1.0], &[], KsMode::Auto).is_err());
    }

    #[test]
    fn ties_and_signed_zeros_do_not_open_gaps() {
        let r = ks_2samp(&[-0.0, 1.0, 1.0], &[0.0, 1.0, 1.0], KsMode::Exact).unwrap();
        assert_eq!(r.statistic, 0.0);
        let r = ks_2samp(
            &[f64::NEG_INFINITY, 0.0],
            &[0.0, f64::INFINITY],
            KsMode::Exact,
        )
        .unwrap();
        assert_eq!(r.statistic, 0.5);
    }

    #[test]
    fn lattice_walk_agrees_with_the_reflection_formula() {
        for (n, h) in [(1, 1), (5, 2), (20, 3), (20, 11), (60, 25)] {
            let walk = lattice_p_value(n, n, n, h);
            let formula = equal_sizes_p_value(n, h);
            assert!(
                (walk - formula).abs() < 1e-13,
                "n={n} h={h}: {walk} vs {formula}"
            );
        }
    }

    #[test]
    fn auto_switches_to_asymptotic_above_ten_thousand() {
        let big: Vec<f64> = (0..10_001).map(|i| i as f64).collect();
        let r = ks_2samp(&big, &[5.0, 6.0], KsMode::Auto).unwrap();
        assert_eq!(r.mode, KsMode::Asymptotic);
        // en = round(10001·2/10003) = 2 and D ≈ 1 − 7/10001.
        assert!((r.p_value - kstwo_sf(2, r.statistic)).abs() < 1e-15);
    }
}
