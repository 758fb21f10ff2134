//! The running mean that Page–Hinkley and DDM keep, updated with River's
//! arithmetic (`river.stats.Mean`) so their decisions agree bit for bit.

/// Count and mean of the values seen so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct RunningMean {
    /// How many values were added, as a float: River keeps the count as a
    /// sum of weights and divides by it, and integer counts are exact in an
    /// `f64` up to 2^53.
    n: f64,
    /// The mean of those values (0 before the first).
    mean: f64,
}

// === impl RunningMean ===

impl RunningMean {
    /// Adds one value: `mean += (1 / n) · (x − mean)`, in that order, as
    /// River does (not `(x − mean) / n`, which rounds differently).
    pub(super) fn add(&mut self, x: f64) {
        self.n += 1.0;
        self.mean += (1.0 / self.n) * (x - self.mean);
    }

    /// The number of values added.
    pub(super) fn n(&self) -> f64 {
        self.n
    }

    /// The mean of the values added, 0 before the first.
    pub(super) fn get(&self) -> f64 {
        self.mean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_rivers_example() {
        // river.stats.Mean's docstring: -5, -3, -1, 1, 3, 5.
        let mut mean = RunningMean::default();
        let mut seen = Vec::new();
        for x in [-5.0, -3.0, -1.0, 1.0, 3.0, 5.0] {
            mean.add(x);
            seen.push(mean.get());
        }
        assert_eq!(seen, [-5.0, -4.0, -3.0, -2.0, -1.0, 0.0]);
        assert_eq!(mean.n(), 6.0);
    }
}
