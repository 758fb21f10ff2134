//! The per-variable accumulators behind [`BaselineBuilder`]: every value
//! of a numeric variable (for exact quantiles) with a seeded sample, label
//! counts, and the model's answers; each turns itself into its profile.
//!
//! [`BaselineBuilder`]: super::BaselineBuilder

use std::collections::BTreeMap;

use super::reservoir::Reservoir;
use super::stats;
use super::{
    BaselineError, CategoricalProfile, FeatureKind, FeatureProfile, NumericProfile,
    PredictionProfile,
};
use crate::observation::{FeatureValue, Prediction};

/// One feature's values, and counts of what could not be used.
#[derive(Debug)]
pub(super) struct FeatureAccumulator {
    name: String,
    missing: u64,
    invalid: u64,
    values: Values,
}

/// Numbers for a numeric feature, label counts for a categorical one.
#[derive(Debug)]
enum Values {
    Numeric(NumericValues),
    Categorical(BTreeMap<String, u64>),
}

/// Every usable value (for exact quantiles) and a seeded sample of them.
#[derive(Debug)]
struct NumericValues {
    values: Vec<f64>,
    sample: Reservoir<f64>,
}

/// Class counts and scores of the rows that had a prediction.
#[derive(Debug)]
pub(super) struct PredictionAccumulator {
    count: u64,
    classes: BTreeMap<u32, u64>,
    scores: NumericValues,
}

fn count_label(counts: &mut BTreeMap<String, u64>, label: &str) {
    // Look up by &str first: most labels repeat, so most rows allocate nothing.
    match counts.get_mut(label) {
        Some(count) => *count += 1,
        None => {
            counts.insert(label.to_owned(), 1);
        }
    }
}

fn shares<K: Ord + Clone>(counts: &BTreeMap<K, u64>) -> BTreeMap<K, f64> {
    let total = counts.values().sum::<u64>() as f64;
    counts
        .iter()
        .map(|(key, &count)| (key.clone(), count as f64 / total))
        .collect()
}

// === impl FeatureAccumulator ===

impl FeatureAccumulator {
    /// An empty accumulator; `seed` seeds a numeric feature's sample.
    pub(super) fn new(name: String, kind: FeatureKind, sample_cap: usize, seed: u64) -> Self {
        let values = match kind {
            FeatureKind::Numeric => Values::Numeric(NumericValues::new(sample_cap, seed)),
            FeatureKind::Categorical => Values::Categorical(BTreeMap::new()),
        };
        FeatureAccumulator {
            name,
            missing: 0,
            invalid: 0,
            values,
        }
    }

    /// Whether this is a numeric feature.
    pub(super) fn is_numeric(&self) -> bool {
        matches!(self.values, Values::Numeric(_))
    }

    /// Counts one value. Returns the number when a numeric feature got a
    /// usable one (the builder collects them into the row for covariance).
    ///
    /// NaN/±Inf and labels in a numeric feature are invalid; a finite
    /// number in a categorical feature counts under its shortest decimal
    /// text (`3`, `2.5`), which is what a JSON number code looks like.
    pub(super) fn add(&mut self, value: &FeatureValue) -> Option<f64> {
        match (&mut self.values, value) {
            (_, FeatureValue::Missing) => self.missing += 1,
            (Values::Numeric(numbers), FeatureValue::Number(x)) if x.is_finite() => {
                numbers.push(*x);
                return Some(*x);
            }
            (Values::Categorical(counts), FeatureValue::Category(label)) => {
                count_label(counts, label);
            }
            (Values::Categorical(counts), FeatureValue::Number(x)) if x.is_finite() => {
                count_label(counts, &x.to_string());
            }
            _ => self.invalid += 1,
        }
        None
    }

    /// The feature's profile; an error if it never had a usable value.
    pub(super) fn finish(self, bins: usize, rows: u64) -> Result<FeatureProfile, BaselineError> {
        let (kind, count, numeric, categorical) = match self.values {
            Values::Numeric(numbers) if !numbers.values.is_empty() => {
                let count = numbers.values.len() as u64;
                (FeatureKind::Numeric, count, numbers.finish(bins), None)
            }
            Values::Categorical(counts) if !counts.is_empty() => {
                let count = counts.values().sum();
                let profile = CategoricalProfile {
                    shares: shares(&counts),
                    counts,
                };
                (FeatureKind::Categorical, count, None, Some(profile))
            }
            _ => {
                return Err(BaselineError::NoValues {
                    feature: self.name,
                    missing: self.missing,
                    invalid: self.invalid,
                    rows,
                });
            }
        };
        Ok(FeatureProfile {
            name: self.name,
            kind,
            count,
            missing: self.missing,
            invalid: self.invalid,
            numeric,
            categorical,
        })
    }
}

// === impl NumericValues ===

impl NumericValues {
    fn new(sample_cap: usize, seed: u64) -> NumericValues {
        NumericValues {
            values: Vec::new(),
            sample: Reservoir::new(sample_cap, seed),
        }
    }

    fn push(&mut self, x: f64) {
        self.values.push(x);
        self.sample.offer_with(|| x);
    }

    /// The profile; `None` only without values.
    fn finish(mut self, bins: usize) -> Option<NumericProfile> {
        self.values.sort_unstable_by(f64::total_cmp);
        let sorted = &self.values;
        let edges = stats::quantile_edges(sorted, bins);
        // Counted with bin_index itself, so the reference proportions and
        // the live window can never disagree about a value on an edge.
        let mut counts = vec![0u64; edges.len() + 1];
        for &x in sorted {
            if let Some(count) = stats::bin_index(&edges, x).and_then(|bin| counts.get_mut(bin)) {
                *count += 1;
            }
        }
        let n = sorted.len() as f64;
        let (mean, std) = stats::mean_std(sorted)?;
        let (median, mad) = stats::median_mad(sorted)?;
        let mut sample = self.sample.into_items();
        sample.sort_unstable_by(f64::total_cmp);
        Some(NumericProfile {
            proportions: counts.iter().map(|&count| count as f64 / n).collect(),
            edges,
            mean,
            std,
            median,
            mad,
            min: *sorted.first()?,
            max: *sorted.last()?,
            sample,
        })
    }
}

// === impl PredictionAccumulator ===

impl PredictionAccumulator {
    /// An empty accumulator; `seed` seeds the score sample.
    pub(super) fn new(sample_cap: usize, seed: u64) -> Self {
        PredictionAccumulator {
            count: 0,
            classes: BTreeMap::new(),
            scores: NumericValues::new(sample_cap, seed),
        }
    }

    /// Counts one prediction; a non-finite score is left out.
    pub(super) fn add(&mut self, prediction: &Prediction) {
        self.count += 1;
        if let Some(class) = prediction.class {
            *self.classes.entry(class).or_default() += 1;
        }
        if let Some(score) = prediction.score.filter(|score| score.is_finite()) {
            self.scores.push(score);
        }
    }

    /// The profile; `None` when no row had a class or a score.
    pub(super) fn finish(self, bins: usize) -> Option<PredictionProfile> {
        if self.classes.is_empty() && self.scores.values.is_empty() {
            return None;
        }
        Some(PredictionProfile {
            count: self.count,
            class_shares: shares(&self.classes),
            class_counts: self.classes,
            score: self.scores.finish(bins),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_profile_bins_with_bin_index() {
        let mut numbers = NumericValues::new(100, 1);
        for x in [9.0, 1.0, 8.0, 2.0, 7.0, 3.0, 6.0, 4.0, 5.0] {
            numbers.push(x);
        }
        let Some(profile) = numbers.finish(4) else {
            panic!("nine values give a profile");
        };
        // np.quantile(1..=9, [0.25, 0.5, 0.75]) = [3, 5, 7]; right-closed
        // bins, so 3 (on the first edge) is in bin 0.
        assert_eq!(profile.edges, [3.0, 5.0, 7.0]);
        assert_eq!(
            profile.proportions,
            [3.0 / 9.0, 2.0 / 9.0, 2.0 / 9.0, 2.0 / 9.0]
        );
        assert_eq!((profile.median, profile.mad), (5.0, 2.0));
        assert_eq!((profile.min, profile.max, profile.mean), (1.0, 9.0, 5.0));
        assert_eq!(
            profile.sample,
            [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
        );
        assert!(NumericValues::new(10, 1).finish(4).is_none());
    }

    #[test]
    fn predictions_give_class_shares_and_scores() {
        let mut predictions = PredictionAccumulator::new(100, 1);
        for p in [[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.6, 0.4]] {
            predictions.add(&Prediction::from_probabilities(&p));
        }
        // Counted as a row with a prediction, but has neither class nor score.
        predictions.add(&Prediction::default());
        assert!(PredictionAccumulator::new(10, 1).finish(10).is_none());
        let Some(profile) = predictions.finish(10) else {
            panic!("a prediction profile");
        };
        assert_eq!(profile.count, 5);
        assert_eq!(profile.class_counts, BTreeMap::from([(0, 3), (1, 1)]));
        assert_eq!(profile.class_shares, BTreeMap::from([(0, 0.75), (1, 0.25)]));
        assert_eq!(profile.score.map(|score| score.median), Some(0.75));
    }

    #[test]
    fn shares_sum_to_one() {
        let counts = BTreeMap::from([("a", 1u64), ("b", 2), ("c", 3)]);
        let shares = shares(&counts);
        assert_eq!(shares["a"], 1.0 / 6.0);
        assert!((shares.values().sum::<f64>() - 1.0).abs() < 1e-15);
        let mut labels = BTreeMap::new();
        count_label(&mut labels, "x");
        count_label(&mut labels, "x");
        assert_eq!(labels.get("x"), Some(&2));
    }
}
