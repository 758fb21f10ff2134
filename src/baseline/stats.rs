//! The numbers behind a profile: numpy-compatible quantiles, quantile bin
//! edges, the bin lookup windows share with the baseline, median/MAD and
//! the streaming co-moments behind the mean vector and covariance.
//!
//! Everything here works on finite values; callers filter NaN and ±Inf
//! first (they are counted as invalid, never profiled).

/// The quantile `q` (0 ≤ q ≤ 1) of ascending `sorted` values, computed like
/// numpy's default `np.quantile(x, q)` (method `linear`): virtual index
/// `h = (n − 1)·q`, linear interpolation between the neighbours of `h`.
///
/// The interpolation is numpy's own `_lerp` (`a + (b−a)·t`, or
/// `b − (b−a)·(1−t)` once `t ≥ 0.5`) so results match to the last bit,
/// not just to a tolerance. `None` for an empty slice.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let h = last as f64 * q.clamp(0.0, 1.0);
    if h >= last as f64 {
        return sorted.last().copied();
    }
    // h is in [0, last), so floor(h) is a valid index and floor(h) + 1 too.
    let lo = h.floor();
    let t = h - lo;
    let a = sorted[lo as usize];
    let b = sorted[lo as usize + 1];
    let d = b - a;
    Some(if t >= 0.5 {
        b - d * (1.0 - t)
    } else {
        a + d * t
    })
}

/// The interior cut points of `bins` quantile bins over ascending `sorted`
/// values: `quantile(sorted, i / bins)` for `i = 1 … bins − 1`, keeping
/// only values strictly above the previous edge.
///
/// Discrete data repeats quantiles; dropping repeats leaves fewer, still
/// strictly increasing edges (and so fewer bins) instead of empty bins of
/// zero width that no live value could ever reach.
pub fn quantile_edges(sorted: &[f64], bins: usize) -> Vec<f64> {
    let mut edges: Vec<f64> = Vec::with_capacity(bins.saturating_sub(1));
    for i in 1..bins {
        let Some(edge) = quantile(sorted, i as f64 / bins as f64) else {
            break;
        };
        if edges.last().is_none_or(|&last| edge > last) {
            edges.push(edge);
        }
    }
    edges
}

/// The bin that `x` falls into, given the strictly increasing interior
/// `edges` of a baseline's [`NumericProfile`](super::NumericProfile).
///
/// Bins are right-closed: bin 0 is (−∞, e₀], bin i is (eᵢ₋₁, eᵢ], the last
/// bin (index `edges.len()`) is (eₖ₋₂, +∞). A value exactly on an edge
/// belongs to the bin the edge closes. −∞ lands in bin 0, +∞ in the last.
///
/// NaN has no bin: the answer is `None`, and callers count the value as
/// invalid rather than silently piling it into an end bin. Binary search,
/// no allocation: O(log k).
#[inline]
pub fn bin_index(edges: &[f64], x: f64) -> Option<usize> {
    if x.is_nan() {
        return None;
    }
    // The number of edges strictly below x is the index of the first bin
    // whose closing edge is ≥ x.
    Some(edges.partition_point(|&edge| edge < x))
}

/// Median and raw (unscaled) median absolute deviation of ascending
/// `sorted` values. `None` for an empty slice.
pub fn median_mad(sorted: &[f64]) -> Option<(f64, f64)> {
    let median = quantile(sorted, 0.5)?;
    let mut deviations: Vec<f64> = sorted.iter().map(|x| (x - median).abs()).collect();
    deviations.sort_unstable_by(f64::total_cmp);
    Some((median, quantile(&deviations, 0.5)?))
}

/// Mean and sample standard deviation (ddof = 1, like `np.std(x, ddof=1)`
/// and pandas' `std()`). One value has a standard deviation of 0: JSON has
/// no NaN to carry numpy's answer. `None` for an empty slice.
pub fn mean_std(values: &[f64]) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() == 1 {
        return Some((mean, 0.0));
    }
    // Two passes: the centred sum of squares does not cancel catastrophically
    // the way Σx² − n·mean² does.
    let squares: f64 = values.iter().map(|x| (x - mean) * (x - mean)).sum();
    Some((mean, (squares / (n - 1.0)).sqrt()))
}

/// Streaming mean vector and co-moment matrix (Welford's update
/// generalised to covariance), so rows need not be kept to compute them.
#[derive(Debug, Clone)]
pub struct Comoments {
    n: u64,
    mean: Vec<f64>,
    /// Σ (x − mean)(x − mean)ᵀ; only the upper triangle is updated.
    m2: Vec<Vec<f64>>,
    delta: Vec<f64>,
}

impl Comoments {
    /// An empty accumulator over `dims` variables.
    pub fn new(dims: usize) -> Comoments {
        Comoments {
            n: 0,
            mean: vec![0.0; dims],
            m2: vec![vec![0.0; dims]; dims],
            delta: vec![0.0; dims],
        }
    }

    /// Rows seen so far.
    pub fn count(&self) -> u64 {
        self.n
    }

    /// Adds one complete row (`row.len()` equals the dimension).
    pub fn push(&mut self, row: &[f64]) {
        self.n += 1;
        let n = self.n as f64;
        for ((delta, mean), &x) in self.delta.iter_mut().zip(&mut self.mean).zip(row) {
            *delta = x - *mean;
            *mean += *delta / n;
        }
        // C += (x − old mean)(x − new mean)ᵀ.
        for (i, (m2, &delta)) in self.m2.iter_mut().zip(&self.delta).enumerate() {
            for ((cell, &x), &mean) in m2.iter_mut().zip(row).zip(&self.mean).skip(i) {
                *cell += delta * (x - mean);
            }
        }
    }

    /// The mean vector and sample covariance (ddof = 1, like `np.cov`).
    /// `None` with fewer than two rows.
    pub fn finish(self) -> Option<(Vec<f64>, Vec<Vec<f64>>)> {
        if self.n < 2 {
            return None;
        }
        let denominator = (self.n - 1) as f64;
        // Mirror the upper triangle so the matrix is exactly symmetric.
        let dims = self.m2.len();
        let mut covariance = vec![vec![0.0; dims]; dims];
        for (i, upper) in self.m2.iter().enumerate() {
            for (j, &m2) in upper.iter().enumerate().skip(i) {
                let c = m2 / denominator;
                covariance[i][j] = c;
                covariance[j][i] = c;
            }
        }
        Some((self.mean, covariance))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[7.0, 1.5, 3.25, -2.0, 9.0, 4.0, 4.0, 0.1, 12.5, 5.5, 3.3]`, sorted.
    fn sample() -> Vec<f64> {
        let mut x = vec![7.0, 1.5, 3.25, -2.0, 9.0, 4.0, 4.0, 0.1, 12.5, 5.5, 3.3];
        x.sort_unstable_by(f64::total_cmp);
        x
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1.0)
    }

    #[test]
    fn quantiles_match_numpy_bit_for_bit() {
        let x = sample();
        // np.quantile(x, [i/7 for i in range(1, 7)]) with numpy 2.4.6.
        let numpy = [
            0.6999999999999996,
            2.999999999999999,
            3.5,
            4.0,
            5.714285714285715,
            8.142857142857142,
        ];
        for (i, expected) in (1..7).zip(numpy) {
            assert_eq!(quantile(&x, i as f64 / 7.0), Some(expected), "q = {i}/7");
        }
        assert_eq!(quantile(&x, 0.0), Some(-2.0));
        assert_eq!(quantile(&x, 1.0), Some(12.5));
        assert_eq!(quantile(&[3.0], 0.3), Some(3.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn edges_are_deciles_and_drop_repeats() {
        // np.quantile(x, [i/10 for i in range(1, 10)]): 4.0 appears twice.
        assert_eq!(
            quantile_edges(&sample(), 10),
            [0.1, 1.5, 3.25, 3.3, 4.0, 5.5, 7.0, 9.0]
        );
        // Discrete data: numpy gives [1, 1, 1.7, 2, 2, 2, 2.3, 3, 3.7].
        let d = [1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 3.0, 3.0, 10.0];
        assert_eq!(
            quantile_edges(&d, 10),
            [1.0, 1.6999999999999997, 2.0, 2.3, 3.0, 3.6999999999999975]
        );
        assert!(quantile_edges(&[5.0; 20], 10) == [5.0]);
        assert!(quantile_edges(&[], 10).is_empty());
    }

    #[test]
    fn bin_index_is_right_closed() {
        let edges = [1.0, 2.0, 3.0];
        let cases = [
            (f64::NEG_INFINITY, 0),
            (-5.0, 0),
            (1.0, 0),
            (1.0 + f64::EPSILON, 1),
            (2.0, 1),
            (2.5, 2),
            (3.0, 2),
            (3.000001, 3),
            (f64::INFINITY, 3),
            (f64::MAX, 3),
        ];
        for (x, bin) in cases {
            assert_eq!(bin_index(&edges, x), Some(bin), "x = {x}");
        }
        assert_eq!(bin_index(&edges, f64::NAN), None);
        // One bin: everything but NaN is in it.
        assert_eq!(bin_index(&[], 42.0), Some(0));
        assert_eq!(bin_index(&[], f64::NEG_INFINITY), Some(0));
        assert_eq!(bin_index(&[], f64::NAN), None);
        // Signed zeros compare equal, so both sit on an edge at 0.
        assert_eq!(bin_index(&[0.0], -0.0), Some(0));
    }

    #[test]
    fn bin_index_agrees_with_a_linear_scan() {
        let edges: Vec<f64> = (0..37).map(|i| f64::from(i) * 0.25 - 3.0).collect();
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..10_000 {
            // Half the probes land exactly on an edge.
            let x = if rng.bool() {
                edges[rng.usize(..edges.len())]
            } else {
                rng.f64() * 14.0 - 5.0
            };
            let scan = edges.iter().take_while(|&&e| e < x).count();
            assert_eq!(bin_index(&edges, x), Some(scan), "x = {x}");
        }
    }

    #[test]
    fn median_mad_and_std_match_numpy() {
        let x = sample();
        assert_eq!(median_mad(&x), Some((4.0, 2.5)));
        let (mean, std) = mean_std(&x).unwrap_or_default();
        assert!(close(mean, 4.377272727272727), "{mean}");
        assert!(close(std, 4.06751543551857), "{std}");
        assert_eq!(mean_std(&[2.0]), Some((2.0, 0.0)));
        assert_eq!(mean_std(&[]), None);
        assert_eq!(median_mad(&[]), None);
    }

    #[test]
    fn covariance_matches_a_hand_computation() {
        let rows = [
            [5.1, 3.5, 1.4],
            [4.9, 3.0, 1.4],
            [6.2, 2.9, 4.3],
            [5.9, 3.0, 5.1],
            [6.7, 3.1, 4.4],
        ];
        let mut moments = Comoments::new(3);
        for row in &rows {
            moments.push(row);
        }
        assert_eq!(moments.count(), 5);
        let Some((mean, cov)) = moments.finish() else {
            panic!("five rows give a covariance");
        };
        // By hand: mean of column 0 is 28.8 / 5; cov(0, 1) is
        // Σ(x₀ − 5.76)(x₁ − 3.1) / 4 = −0.28 / 4. The rest from np.cov.
        let expected_mean = [5.76, 3.1, 3.32];
        let expected = [
            [0.568, -0.07, 1.1535],
            [-0.07, 0.055, -0.2375],
            [1.1535, -0.2375, 3.167],
        ];
        for i in 0..3 {
            assert!(close(mean[i], expected_mean[i]), "mean[{i}] = {}", mean[i]);
            for j in 0..3 {
                assert!(close(cov[i][j], expected[i][j]), "cov[{i}][{j}]");
                assert_eq!(cov[i][j], cov[j][i], "symmetric");
            }
        }
        let mut one = Comoments::new(2);
        one.push(&[1.0, 2.0]);
        assert!(one.finish().is_none());
    }
}
