//! How good a model's answers are, once ground truth arrives: rolling
//! accuracy (classifiers) and mean absolute error (regressors) over the
//! last `feedback.window` joined feedbacks, and DDM on the error stream.
//!
//! DDM takes a stream of error bits. For a classifier the bit is "the
//! predicted class was not the label". A regressor has no natural bit, so
//! its first [`reference_size`] absolute errors set a reference: an error
//! is an absolute error above that reference's
//! [`REGRESSION_ERROR_QUANTILE`] quantile. While the model behaves as it
//! did then, DDM sees an error rate near 10%; when its errors grow, the
//! rate climbs and DDM fires. Nothing is fed to DDM until the reference is
//! complete, and the reference stays fixed afterwards (it stands for the
//! regime the model was accepted in).

use std::collections::VecDeque;

use crate::detect::concept::{Ddm, DdmParams, Verdict};

/// The quantile of the reference absolute errors above which a regression
/// error counts as an error for DDM.
pub const REGRESSION_ERROR_QUANTILE: f64 = 0.9;

/// Absolute errors the regression reference is made of:
/// `feedback.window`, at least 30 (DDM's own warm-up) and at most 10,000.
pub fn reference_size(window: usize) -> usize {
    window.clamp(30, 10_000)
}

/// A mean over the last `capacity` values.
#[derive(Debug, Clone)]
pub struct Rolling {
    capacity: usize,
    values: VecDeque<f64>,
    sum: f64,
    /// Values added since the sum was last recomputed from scratch.
    since_exact: usize,
}

/// The feedback-side state of one model.
#[derive(Debug)]
pub struct Quality {
    /// 1 for a correct class, 0 for a wrong one.
    pub accuracy: Rolling,
    /// Absolute errors of regression feedback.
    pub absolute_error: Rolling,
    /// DDM on the error bits.
    pub ddm: Ddm,
    /// The regression reference while it fills, then emptied.
    reference: Vec<f64>,
    reference_size: usize,
    /// The absolute error above which a regression answer is an error.
    threshold: Option<f64>,
}

// === impl Rolling ===

impl Rolling {
    /// An empty window of `capacity` values (at least 1).
    pub fn new(capacity: usize) -> Rolling {
        Rolling {
            capacity: capacity.max(1),
            values: VecDeque::new(),
            sum: 0.0,
            since_exact: 0,
        }
    }

    /// Adds a value, forgetting the oldest when full.
    pub fn push(&mut self, value: f64) {
        if self.values.len() == self.capacity
            && let Some(old) = self.values.pop_front()
        {
            self.sum -= old;
        }
        self.values.push_back(value);
        self.sum += value;
        self.since_exact += 1;
        // A running sum of floats drifts; recompute it once per window.
        if self.since_exact >= self.capacity {
            self.sum = self.values.iter().sum();
            self.since_exact = 0;
        }
    }

    /// Values in the window.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether nothing was added yet.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The mean of the window, `None` while empty.
    pub fn mean(&self) -> Option<f64> {
        (!self.values.is_empty()).then(|| self.sum / self.values.len() as f64)
    }
}

// === impl Quality ===

impl Quality {
    /// Empty windows of `window` feedbacks and a fresh DDM; parameters
    /// DDM refuses fall back to River's defaults (config validation
    /// rejects them first).
    pub fn new(window: usize, ddm: DdmParams) -> Quality {
        Quality {
            accuracy: Rolling::new(window),
            absolute_error: Rolling::new(window),
            ddm: Ddm::new(ddm).unwrap_or_default(),
            reference: Vec::new(),
            reference_size: reference_size(window),
            threshold: None,
        }
    }

    /// Counts a classification outcome; DDM's verdict on it.
    pub fn classified(&mut self, correct: bool) -> Verdict {
        self.accuracy.push(if correct { 1.0 } else { 0.0 });
        self.ddm.update(!correct)
    }

    /// Counts a regression's absolute error; DDM's verdict on it, `None`
    /// while the reference fills.
    pub fn regressed(&mut self, absolute_error: f64) -> Option<Verdict> {
        self.absolute_error.push(absolute_error);
        match self.threshold {
            Some(threshold) => Some(self.ddm.update(absolute_error > threshold)),
            None => {
                self.reference.push(absolute_error);
                if self.reference.len() >= self.reference_size {
                    self.reference.sort_by(f64::total_cmp);
                    self.threshold = Some(quantile(&self.reference, REGRESSION_ERROR_QUANTILE));
                    self.reference = Vec::new();
                }
                None
            }
        }
    }

    /// The regression error threshold, once the reference is complete.
    pub fn regression_threshold(&self) -> Option<f64> {
        self.threshold
    }
}

/// The `q` quantile of sorted values, linearly interpolated (NumPy's
/// default).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let Some(last) = sorted.len().checked_sub(1) else {
        return f64::NAN;
    };
    let position = q * last as f64;
    let below = position.floor() as usize;
    let above = position.ceil() as usize;
    let fraction = position - below as f64;
    sorted[below] + (sorted[above.min(last)] - sorted[below]) * fraction
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_DDM;

    #[test]
    fn rolling_mean_covers_the_last_values_only() {
        let mut rolling = Rolling::new(3);
        assert_eq!(rolling.mean(), None);
        for x in [1.0, 2.0, 3.0, 10.0] {
            rolling.push(x);
        }
        assert_eq!(rolling.len(), 3);
        assert_eq!(rolling.mean(), Some(5.0));
    }

    #[test]
    fn rolling_sum_does_not_drift() {
        let mut rolling = Rolling::new(10);
        for i in 0..1_000_000 {
            rolling.push(if i % 2 == 0 { 0.1 } else { 1e6 });
        }
        let exact = (0.1 * 5.0 + 1e6 * 5.0) / 10.0;
        assert!((rolling.mean().unwrap_or(0.0) - exact).abs() < 1e-9);
    }

    #[test]
    fn accuracy_is_the_share_correct_in_the_window() {
        let mut quality = Quality::new(4, DEFAULT_DDM);
        for correct in [false, false, true, true, true, false] {
            quality.classified(correct);
        }
        // The last four: true, true, true, false.
        assert_eq!(quality.accuracy.mean(), Some(0.75));
        assert!(quality.absolute_error.is_empty());
    }

    #[test]
    fn mae_is_the_mean_absolute_error_in_the_window() {
        let mut quality = Quality::new(2, DEFAULT_DDM);
        for error in [5.0, 1.0, 3.0] {
            quality.regressed(error);
        }
        assert_eq!(quality.absolute_error.mean(), Some(2.0));
    }

    #[test]
    fn a_rising_classification_error_rate_trips_ddm_and_a_stable_one_does_not() {
        let mut quality = Quality::new(100, DEFAULT_DDM);
        let mut rng = fastrand::Rng::with_seed(3);
        let stable: Vec<Verdict> = (0..2000)
            .map(|_| quality.classified(rng.f64() >= 0.1))
            .collect();
        assert!(!stable.contains(&Verdict::Drift));
        let worse = (0..2000).map(|_| quality.classified(rng.f64() >= 0.5));
        assert!(worse.into_iter().any(|v| v == Verdict::Drift));
    }

    #[test]
    fn regression_errors_feed_ddm_once_the_reference_is_set() {
        let mut quality = Quality::new(50, DEFAULT_DDM);
        let mut rng = fastrand::Rng::with_seed(5);
        for i in 0..50 {
            assert_eq!(quality.regressed(rng.f64()), None, "reference value {i}");
        }
        let threshold = quality.regression_threshold().unwrap_or(f64::NAN);
        assert!((0.7..1.0).contains(&threshold), "{threshold}");
        let stable: Vec<Option<Verdict>> =
            (0..2000).map(|_| quality.regressed(rng.f64())).collect();
        assert!(!stable.contains(&Some(Verdict::Drift)));
        let worse = (0..2000).map(|_| quality.regressed(rng.f64() * 3.0));
        assert!(worse.into_iter().any(|v| v == Some(Verdict::Drift)));
    }

    #[test]
    fn quantile_interpolates_like_numpy() {
        let sorted = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        // numpy.quantile(range(1, 11), 0.9) == 9.1
        assert!((quantile(&sorted, 0.9) - 9.1).abs() < 1e-12);
        assert_eq!(quantile(&[4.0], 0.9), 4.0);
        assert!(quantile(&[], 0.9).is_nan());
    }
}
