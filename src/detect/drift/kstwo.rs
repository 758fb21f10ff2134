//! The one-sample two-sided Kolmogorov–Smirnov distribution for finite n:
//! the law of `D_n = sup |F_n − F|`, which SciPy calls `kstwo` and uses for
//! the asymptotic two-sample p-value.
//!
//! No single method is both exact and cheap everywhere, so, following
//! Simard & L'Ecuyer (2011), "Computing the Two-Sided Kolmogorov-Smirnov
//! Distribution" (J. Stat. Software 39(11)), the survival function picks by
//! `n` and `t = n·d`:
//!
//! - closed forms at the edges (Ruben & Gambino 1982): `P(D_n < d) =
//!   n!/nⁿ · (2t − 1)ⁿ` for `t ≤ 1`, and `P(D_n ≥ d) = 2(1 − d)ⁿ` for
//!   `t ≥ n − 1`;
//! - `2 · P(D_n⁺ ≥ d)` with the exact one-sided (Smirnov / Birnbaum–Tingey)
//!   sum where the two one-sided events cannot both happen (`d ≥ 0.5`, exact)
//!   or almost never do (`n·d² ≥ 4` for n ≤ 140, `≥ 2.2` above: the error is
//!   below 1e-7);
//! - Durbin's matrix method (1968), computed as in Marsaglia, Tsang & Wang
//!   (2003), exact, wherever its matrix stays small: n ≤ 140 with
//!   `n·d² < 4`, or n ≤ 100 000 with `n·d^1.5 ≤ 1.4`;
//! - otherwise (large n, moderate d; or any d once n > 10⁷, where the
//!   one-sided sum would be too long) the Pelz & Good (1976) asymptotic
//!   series to order `n^(-3/2)`, whose error there is well below 1e-6.
//!
//! SciPy applies the same selection (with Pomeranz's exact recursion where we
//! use Durbin's, for n ≤ 140), so the two agree to rounding.

use std::f64::consts::{LN_2, PI};

use statrs::function::gamma::ln_gamma;

/// Above this n the one-sided sum (one term per j ≤ n) is too slow, and
/// the Pelz–Good series, whose error shrinks like n⁻², takes over.
const SMIRNOV_MAX_N: u64 = 10_000_000;

/// Survival function `P(D_n ≥ d)` of the one-sample two-sided
/// Kolmogorov–Smirnov statistic for a sample of size `n`, matching
/// `scipy.stats.kstwo.sf(d, n)` (absolute error below 1e-7 everywhere,
/// typically 1e-12; see the module documentation for the methods).
///
/// Returns 1 for `d ≤ 1/(2n)` (D_n can never be smaller), 0 for `d ≥ 1`,
/// and NaN when `n` is 0 or `d` is NaN. Cost is bounded: at most a small
/// matrix power (n ≤ 100 000) or one pass over j ≤ n ≤ 10⁷.
pub fn kstwo_sf(n: u64, d: f64) -> f64 {
    if n == 0 || d.is_nan() {
        return f64::NAN;
    }
    if d >= 1.0 {
        return 0.0;
    }
    let nf = n as f64;
    let t = nf * d;
    if t <= 0.5 {
        return 1.0;
    }
    let p = if t <= 1.0 {
        // Ruben–Gambino: the only way to stay within d of F is to put the
        // i-th point in [i/n − d, (i−1)/n + d] for every i.
        1.0 - (ln_factorial_over_power(n) + nf * (2.0 * t - 1.0).ln()).exp()
    } else if t >= nf - 1.0 {
        2.0 * (1.0 - d).powf(nf)
    } else if d >= 0.5 {
        2.0 * smirnov_sf(n, d)
    } else {
        let nd2 = t * d;
        if n <= 140 {
            if nd2 < 4.0 {
                1.0 - durbin_cdf(n, d)
            } else {
                2.0 * smirnov_sf(n, d)
            }
        } else if nd2 >= 370.0 {
            // 2·exp(−2·370) is below the smallest double.
            0.0
        } else if nd2 >= 2.2 && n <= SMIRNOV_MAX_N {
            2.0 * smirnov_sf(n, d)
        } else if n <= 100_000 && nf * d.powf(1.5) <= 1.4 {
            1.0 - durbin_cdf(n, d)
        } else {
            1.0 - pelz_good_cdf(n, d)
        }
    };
    p.clamp(0.0, 1.0)
}

/// `ln(n! / nⁿ)`.
fn ln_factorial_over_power(n: u64) -> f64 {
    let nf = n as f64;
    ln_gamma(nf + 1.0) - nf * nf.ln()
}

/// Exact one-sided `P(D_n⁺ ≥ d)` for `0 < d < 1` by the Birnbaum–Tingey
/// formula
///
/// `d · Σ_{j=0}^{⌊n(1−d)⌋} C(n, j) (1 − d − j/n)^(n−j) (d + j/n)^(j−1)`.
///
/// Every term is positive, so summing them in log space (to survive huge
/// binomials and tiny powers) loses nothing to cancellation.
fn smirnov_sf(n: u64, d: f64) -> f64 {
    let nf = n as f64;
    let mut ln_binomial = 0.0; // ln C(n, j), updated incrementally
    let mut max = f64::NEG_INFINITY; // running log-sum-exp state
    let mut sum = 0.0;
    for j in 0..=n {
        let jf = j as f64;
        if j > 0 {
            ln_binomial += ((nf - jf + 1.0) / jf).ln();
        }
        let low = (nf - jf) / nf - d;
        if low <= 0.0 {
            break;
        }
        let term = ln_binomial + (nf - jf) * low.ln() + (jf - 1.0) * (d + jf / nf).ln();
        if term > max {
            sum = sum * (max - term).exp() + 1.0;
            max = term;
        } else {
            sum += (term - max).exp();
        }
    }
    if sum == 0.0 {
        return 0.0;
    }
    d * (max + sum.ln()).exp()
}

/// Exact `P(D_n < d)` by Durbin's matrix formula as arranged by Marsaglia,
/// Tsang & Wang: with `t = n·d = k − h` (`k` an integer, `0 < h ≤ 1`) and
/// the `(2k−1)²` matrix `H` below, `P(D_n < d) = n!/nⁿ · (Hⁿ)_{k,k}`.
///
/// `H[i][j] = 1/(i−j+1)!` on and below the first superdiagonal, except that
/// the first column and last row are reduced by `h^(i+1)/(i+1)!` and
/// `h^(m−j)/(m−j)!`, and the bottom-left corner gains `(2h−1)₊^m / m!`.
/// All entries are non-negative, so the products lose no precision; powers
/// are rescaled by powers of two (tracked separately) to avoid overflow.
fn durbin_cdf(n: u64, d: f64) -> f64 {
    let t = n as f64 * d;
    // t < n here, so k − 1 fits comfortably.
    let k = t.floor() as usize + 1;
    let m = 2 * k - 1;
    let h = k as f64 - t;

    let mut inv_factorial = vec![1.0; m + 1];
    for r in 1..=m {
        inv_factorial[r] = inv_factorial[r - 1] / r as f64;
    }
    let mut matrix = Matrix::zeros(m);
    for i in 0..m {
        for j in 0..=(i + 1).min(m - 1) {
            matrix.data[i * m + j] = inv_factorial[i + 1 - j];
        }
    }
    // 1 − h^p computed as −expm1(p·ln h) keeps precision when h ≈ 1.
    let one_minus = |p: usize| -(p as f64 * h.ln()).exp_m1();
    for i in 0..m {
        matrix.data[i * m] = one_minus(i + 1) * inv_factorial[i + 1];
        matrix.data[(m - 1) * m + i] = one_minus(m - i) * inv_factorial[m - i];
    }
    let corner = if 2.0 * h > 1.0 {
        (2.0 * h - 1.0).powi(m as i32)
    } else {
        0.0
    };
    matrix.data[(m - 1) * m] = (one_minus(m) - h.powi(m as i32) + corner) * inv_factorial[m];

    let (power, scale) = matrix.power(n);
    let center = power.data[(k - 1) * m + (k - 1)];
    if center <= 0.0 {
        return 0.0;
    }
    (center.ln() + scale as f64 * LN_2 + ln_factorial_over_power(n)).exp()
}

/// `P(D_n < d)` by the Pelz–Good expansion in `z = d·√n`:
/// `K₀(z) + K₁(z)/√n + K₂(z)/n + K₃(z)/n^(3/2)`.
fn pelz_good_cdf(n: u64, d: f64) -> f64 {
    let nf = n as f64;
    let z = d * nf.sqrt();
    let z2 = z * z;
    let (z4, z6, z8) = (z2 * z2, z2 * z2 * z2, z2 * z2 * z2 * z2);
    let root = (PI / 2.0).sqrt();

    // Sums over half-integers u = k + ½ (with w = π²u²) and over integers k
    // (with v = π²k²), of polynomial × exp(−w / 2z²). The loops stop once
    // the exponential underflows: after a few dozen terms for z < 1.5, a
    // few hundred at z ≈ 19 (n·d² = 370, beyond which the sf is 0).
    let (mut k0, mut s1, mut s2, mut s3) = (0.0, 0.0, 0.0, 0.0);
    for k in 0..400 {
        let u = k as f64 + 0.5;
        let w = PI * PI * u * u;
        let exponent = w / (2.0 * z2);
        if exponent > 745.0 {
            break;
        }
        let e = (-exponent).exp();
        // K₀'s (2k−1)²π²/(8z²) is the same exponent with u = k − ½.
        k0 += e;
        s1 += (w - z2) * e;
        s2 += (6.0 * z6 + 2.0 * z4 + w * (2.0 * z4 - 5.0 * z2) + w * w * (1.0 - 2.0 * z2)) * e;
        s3 += (w * w * w * (5.0 - 30.0 * z2)
            + w * w * (212.0 * z4 - 60.0 * z2)
            + w * (135.0 * z4 - 96.0 * z6)
            - 30.0 * z6
            - 90.0 * z8)
            * e;
    }
    let (mut t2, mut t3) = (0.0, 0.0);
    for k in 1..400 {
        let v = PI * PI * (k * k) as f64;
        let exponent = v / (2.0 * z2);
        if exponent > 745.0 {
            break;
        }
        let e = (-exponent).exp();
        t2 += v * e;
        t3 += (3.0 * v * z2 - v * v) * e;
    }
    let k0 = (2.0 * PI).sqrt() / z * k0;
    let k1 = root / (3.0 * z4) * s1;
    let k2 = root / (36.0 * z4 * z2 * z) * s2 - root / (18.0 * z2 * z) * t2;
    let k3 = root / (3240.0 * z8 * z2) * s3 + root / (108.0 * z6) * t3;
    k0 + k1 / nf.sqrt() + k2 / nf + k3 / (nf * nf.sqrt())
}

/// A dense square matrix, row-major; only what Durbin's method needs.
#[derive(Clone)]
struct Matrix {
    size: usize,
    data: Vec<f64>,
}

// === impl Matrix ===

impl Matrix {
    fn zeros(size: usize) -> Self {
        Matrix {
            size,
            data: vec![0.0; size * size],
        }
    }

    /// `self^n` as `(M, e)` with `self^n = M · 2^e`; `n ≥ 1`.
    fn power(&self, n: u64) -> (Matrix, i64) {
        // Square-and-multiply over the bits of n, most significant first.
        let mut result = self.clone();
        let mut scale = 0;
        let bits = u64::BITS - n.leading_zeros();
        for bit in (0..bits - 1).rev() {
            result = result.times(&result);
            scale *= 2;
            scale += result.rescale();
            if n >> bit & 1 == 1 {
                result = result.times(self);
                scale += result.rescale();
            }
        }
        (result, scale)
    }

    fn times(&self, other: &Matrix) -> Matrix {
        let m = self.size;
        let mut out = Matrix::zeros(m);
        for i in 0..m {
            let row = &mut out.data[i * m..(i + 1) * m];
            for k in 0..m {
                let a = self.data[i * m + k];
                if a == 0.0 {
                    continue;
                }
                let other_row = &other.data[k * m..(k + 1) * m];
                for (o, b) in row.iter_mut().zip(other_row) {
                    *o += a * b;
                }
            }
        }
        out
    }

    /// Divides by a power of two (exactly) so the largest entry is about 1;
    /// returns the exponent divided out.
    fn rescale(&mut self) -> i64 {
        let max = self.data.iter().fold(0.0_f64, |acc, v| acc.max(v.abs()));
        if max == 0.0 || !max.is_finite() {
            return 0;
        }
        let exponent = max.log2().floor() as i32;
        if exponent == 0 {
            return 0;
        }
        let factor = 2.0_f64.powi(-exponent);
        for v in &mut self.data {
            *v *= factor;
        }
        i64::from(exponent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges() {
        assert_eq!(kstwo_sf(10, 0.0), 1.0);
        assert_eq!(kstwo_sf(10, 0.05), 1.0);
        assert_eq!(kstwo_sf(10, 1.0), 0.0);
        assert!(kstwo_sf(0, 0.5).is_nan());
        assert!(kstwo_sf(10, f64::NAN).is_nan());
        // n = 1: D is uniform on [1/2, 1].
        assert!((kstwo_sf(1, 0.7) - 0.6).abs() < 1e-15);
    }

    #[test]
    fn durbin_agrees_with_the_closed_forms() {
        // t ≤ 1: Ruben–Gambino's product.
        let (n, d) = (8, 0.11);
        let closed = (1..=n).map(|i| i as f64 / n as f64 * (2.0 * n as f64 * d - 1.0));
        let closed: f64 = closed.product();
        assert!((durbin_cdf(n, d) - closed).abs() < 1e-14);
        // d ≥ 0.5: exactly 1 − 2·P(D⁺ ≥ d).
        let (n, d) = (9, 0.6);
        assert!((durbin_cdf(n, d) - (1.0 - 2.0 * smirnov_sf(n, d))).abs() < 1e-13);
    }

    #[test]
    fn methods_agree_where_their_regions_meet() {
        // Durbin vs Pelz–Good just above n = 140, and Durbin vs the
        // one-sided doubling near n·d² = 2.2.
        for (n, d) in [(1000, 0.04), (5000, 0.015), (300, 0.07)] {
            let exact = 1.0 - durbin_cdf(n, d);
            let series = 1.0 - pelz_good_cdf(n, d);
            assert!(
                (exact - series).abs() < 1e-6,
                "n={n} d={d}: {exact} vs {series}"
            );
        }
        let (n, d) = (500_u64, (2.2_f64 / 500.0).sqrt());
        let exact = 1.0 - durbin_cdf(n, d);
        assert!((exact - 2.0 * smirnov_sf(n, d)).abs() < 1e-7);
    }

    #[test]
    fn limit_is_kolmogorov() {
        // For large n, P(√n·D_n ≥ 1) → 2 Σ (−1)^(k−1) e^(−2k²) ≈ 0.26999967.
        let n = 1_000_000_u64;
        let p = kstwo_sf(n, 1.0 / (n as f64).sqrt());
        assert!((p - 0.269_999_67).abs() < 1e-3, "{p}");
    }
}
