//! ADWIN's window: an exponential histogram of bucket summaries, with the
//! cut scan over its bucket boundaries. The arithmetic (and its order)
//! follows River's, so sums and decisions agree bit for bit.

use std::collections::VecDeque;

/// The window as an exponential histogram: row `i` holds up to
/// `max_buckets` buckets (one more only inside [`Histogram::insert`]), each
/// summarising 2^i consecutive values. Keeps the exact count, sum and sum
/// of squared deviations of the whole window.
#[derive(Debug, Clone)]
pub(super) struct Histogram {
    /// Buckets per row before the two oldest are merged upwards.
    max_buckets: usize,
    /// `rows[i]` holds buckets of 2^i values, oldest first. Only the first
    /// `levels` rows are in use; the rest are kept empty, so their
    /// allocations are reused when the window grows again.
    rows: Vec<VecDeque<Bucket>>,
    /// Rows in use: the highest non-empty row plus one (0 when empty).
    levels: usize,
    /// Values in the window.
    width: u64,
    /// Sum of the values in the window.
    total: f64,
    /// Sum of squared deviations from the window's mean (River calls it
    /// `variance`; the variance is `m2 / width`).
    m2: f64,
}

/// A summary of 2^i consecutive values.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Bucket {
    /// Their sum.
    total: f64,
    /// Their sum of squared deviations from their own mean.
    m2: f64,
}

// === impl Histogram ===

impl Histogram {
    /// An empty window; `max_buckets` must be at least 1.
    pub(super) fn new(max_buckets: usize) -> Self {
        debug_assert!(max_buckets >= 1);
        Histogram {
            max_buckets,
            rows: Vec::new(),
            levels: 0,
            width: 0,
            total: 0.0,
            m2: 0.0,
        }
    }

    /// Values in the window.
    pub(super) fn width(&self) -> u64 {
        self.width
    }

    /// Sum of the values in the window.
    pub(super) fn total(&self) -> f64 {
        self.total
    }

    /// Sum of squared deviations from the window's mean.
    pub(super) fn m2(&self) -> f64 {
        self.m2
    }

    /// Empties the window, keeping the rows' allocations.
    pub(super) fn clear(&mut self) {
        for row in &mut self.rows[..self.levels] {
            row.clear();
        }
        self.levels = 0;
        self.width = 0;
        self.total = 0.0;
        self.m2 = 0.0;
    }

    /// Appends `x` as a bucket of one and merges overflowing rows upwards.
    pub(super) fn insert(&mut self, x: f64) {
        self.width += 1;
        let n = self.width as f64;
        if n > 1.0 {
            let deviation = x - self.total / (n - 1.0);
            self.m2 += (n - 1.0) * deviation * deviation / n;
        }
        self.total += x;
        self.push(0, Bucket { total: x, m2: 0.0 });

        let mut level = 0;
        while self.rows[level].len() > self.max_buckets {
            let row = &mut self.rows[level];
            let (Some(a), Some(b)) = (row.pop_front(), row.pop_front()) else {
                unreachable!("a row over max_buckets ≥ 1 holds at least two buckets");
            };
            let size = (1u64 << level) as f64;
            let gap = a.total / size - b.total / size;
            let merged = Bucket {
                total: a.total + b.total,
                m2: a.m2 + b.m2 + size * 0.5 * gap * gap,
            };
            self.push(level + 1, merged);
            level += 1;
        }
    }

    /// Appends `bucket` to row `level`, bringing the row into use (and
    /// allocating it the first time the window reaches that size).
    fn push(&mut self, level: usize, bucket: Bucket) {
        if level == self.rows.len() {
            self.rows
                .push(VecDeque::with_capacity(self.max_buckets + 1));
        }
        self.levels = self.levels.max(level + 1);
        self.rows[level].push_back(bucket);
    }

    /// Drops the oldest bucket (the first of the highest row) and takes it
    /// out of the window's sums. The window must not be empty.
    pub(super) fn drop_oldest(&mut self) {
        let last = self.levels - 1;
        let Some(oldest) = self.rows[last].pop_front() else {
            unreachable!("the highest row in use is never empty");
        };
        let size = (1u64 << last) as f64;
        self.width -= 1u64 << last;
        self.total -= oldest.total;
        let n = self.width as f64;
        let gap = oldest.total / size - self.total / n;
        self.m2 -= oldest.m2 + size * n * gap * gap / (size + n);
        // Rows below may be empty too (with max_buckets = 1). River pops
        // only the one row and then drops from an empty row (a panic);
        // popping them all keeps the highest row in use non-empty.
        while self.levels > 0 && self.rows[self.levels - 1].is_empty() {
            self.levels -= 1;
        }
    }

    /// Tries every boundary between buckets, oldest first, and tells
    /// whether one separates an older part `W₀` and a newer part `W₁`
    /// (each at least `min_length` long) whose means differ by more than
    /// `ε = √(2 m σ² δ') + ⅔ δ' m`, with `n` the width, `σ²` the window's
    /// variance, `δ' = ln(2 ln n / δ)` and
    /// `m = 1/(n₀ − min_length + 1) + 1/(n₁ − min_length + 1)`.
    pub(super) fn cut_found(&self, delta: f64, min_length: u32) -> bool {
        let width = self.width as f64;
        let min_length = f64::from(min_length);
        // δ' and σ² are the same for every cut of this scan.
        let delta_prime = (2.0 * width.ln() / delta).ln();
        let variance = self.m2 / width;
        let (mut n0, mut n1) = (0.0, width);
        let (mut u0, mut u1) = (0.0, self.total);
        for level in (0..self.levels).rev() {
            let size = (1u64 << level) as f64;
            let row = &self.rows[level];
            for (k, bucket) in row.iter().enumerate() {
                n0 += size;
                n1 -= size;
                u0 += bucket.total;
                u1 -= bucket.total;
                if level == 0 && k + 1 == row.len() {
                    // Everything is in W₀: no cut left. (When row 0 is
                    // empty, River tests this last boundary too.)
                    return false;
                }
                if n1 >= min_length && n0 >= min_length {
                    let gap = (u0 / n0 - u1 / n1).abs();
                    let m = 1.0 / (n0 - min_length + 1.0) + 1.0 / (n1 - min_length + 1.0);
                    let epsilon =
                        (2.0 * m * variance * delta_prime).sqrt() + 2.0 / 3.0 * delta_prime * m;
                    if gap > epsilon {
                        return true;
                    }
                }
            }
        }
        false
    }

    /// The values each row in use accounts for, summed: the width.
    #[cfg(test)]
    fn held(&self) -> u64 {
        self.rows[..self.levels]
            .iter()
            .enumerate()
            .map(|(level, row)| row.len() as u64 * (1 << level))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_are_exact_and_rows_bounded() {
        let mut histogram = Histogram::new(5);
        let values: Vec<f64> = (0..1000).map(|i| f64::from(i % 7)).collect();
        for x in &values {
            histogram.insert(*x);
        }
        let sum: f64 = values.iter().sum();
        let mean = sum / 1000.0;
        let m2: f64 = values.iter().map(|x| (x - mean).powi(2)).sum();
        assert_eq!((histogram.width(), histogram.total()), (1000, sum));
        assert!((histogram.m2() - m2).abs() < 1e-9 * m2);
        assert_eq!(histogram.held(), 1000);
        assert!(histogram.rows.iter().all(|row| row.len() <= 5));
        // 1000 values in rows of ≤ 5 buckets of 1, 2, 4, …: 8 rows.
        assert_eq!(histogram.levels, 8);
    }

    #[test]
    fn drop_oldest_takes_the_highest_rows_first_bucket() {
        let mut histogram = Histogram::new(2);
        for x in 1..=8 {
            histogram.insert(f64::from(x));
        }
        // Rows: [7, 8], [5+6], [1+2+3+4].
        assert_eq!(histogram.levels, 3);
        histogram.drop_oldest();
        assert_eq!((histogram.width(), histogram.total()), (4, 26.0));
        // Values 5..8: m2 = 5.
        assert!((histogram.m2() - 5.0).abs() < 1e-12);
        assert_eq!(histogram.levels, 2);
    }

    #[test]
    fn max_buckets_one_keeps_the_highest_row_non_empty() {
        let mut histogram = Histogram::new(1);
        for i in 0..20_000 {
            histogram.insert(f64::from(i % 5));
            if i % 7 == 0 && histogram.width() > 1 {
                histogram.drop_oldest();
            }
            assert_eq!(histogram.held(), histogram.width(), "at {i}");
            if histogram.levels > 0 {
                assert!(!histogram.rows[histogram.levels - 1].is_empty());
            }
        }
    }

    #[test]
    fn clear_keeps_allocations() {
        let mut histogram = Histogram::new(5);
        for i in 0..5000 {
            histogram.insert(f64::from(i % 3));
        }
        let rows = histogram.rows.len();
        histogram.clear();
        assert_eq!((histogram.width(), histogram.total()), (0, 0.0));
        assert_eq!(histogram.held(), 0);
        for i in 0..5000 {
            histogram.insert(f64::from(i % 3));
        }
        assert_eq!(histogram.rows.len(), rows);
    }

    #[test]
    fn no_cut_in_a_constant_window() {
        let mut histogram = Histogram::new(5);
        for _ in 0..500 {
            histogram.insert(1.0);
        }
        assert!(!histogram.cut_found(0.002, 5));
        for _ in 0..500 {
            histogram.insert(10.0);
        }
        assert!(histogram.cut_found(0.002, 5));
    }
}
