//! `sidewatch_anomaly_score{model,detector}`: the distribution of every
//! anomaly detector's score, flagged or not, so an operator can see how
//! close normal traffic runs to a threshold and tune it.
//!
//! Each detector scores on its own scale, so each has its own buckets:
//!
//! | detector | score | buckets |
//! |---|---|---|
//! | `robust_z` | the largest robust z over the numeric features | 0.5 … 50 |
//! | `mahalanobis` | the squared Mahalanobis distance (χ²(d) under the baseline) | 1 … 1000 |
//! | `half_space_trees` | River's normalised score in [0, 1] | 0.1 … 0.99 |
//! | `low_confidence` | the top class probability | 0.1 … 0.99 |
//! | `high_entropy` | the entropy of the class probabilities, in nats | 0.05 … 5 |
//!
//! The shard is the only writer; counters are plain relaxed atomics.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use crate::detect::anomaly::Detector;

/// Upper bounds of each detector's buckets, in [`Detector::ALL`] order
/// (`+Inf` is implied).
pub const BUCKETS: [&[f64]; Detector::ALL.len()] = [
    &[
        0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, 50.0,
    ],
    &[
        1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0, 40.0, 60.0, 100.0, 200.0, 500.0, 1000.0,
    ],
    &[
        0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99,
    ],
    &[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99],
    &[
        0.05,
        0.1,
        0.2,
        0.3,
        0.4,
        0.5,
        std::f64::consts::LN_2,
        1.0,
        1.5,
        2.0,
        3.0,
        5.0,
    ],
];

/// One histogram per anomaly detector, for one model.
#[derive(Debug)]
pub struct ScoreHistograms {
    detectors: [Histogram; Detector::ALL.len()],
}

#[derive(Debug)]
struct Histogram {
    bounds: &'static [f64],
    /// One counter per bound, then `+Inf`.
    buckets: Box<[AtomicU64]>,
    /// The sum of the scores, as f64 bits.
    sum: AtomicU64,
}

// === impl ScoreHistograms ===

impl Default for ScoreHistograms {
    fn default() -> Self {
        ScoreHistograms {
            detectors: BUCKETS.map(|bounds| Histogram {
                bounds,
                buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
                sum: AtomicU64::new(0f64.to_bits()),
            }),
        }
    }
}

impl ScoreHistograms {
    /// Counts a score of `detector`; NaN is skipped.
    pub fn observe(&self, detector: Detector, score: f64) {
        if score.is_nan() {
            return;
        }
        let histogram = &self.detectors[detector.index()];
        let bucket = histogram.bounds.partition_point(|b| *b < score);
        histogram.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        if score.is_finite() {
            // Single writer: load and store cannot lose an update.
            let sum = f64::from_bits(histogram.sum.load(Ordering::Relaxed)) + score;
            histogram.sum.store(sum.to_bits(), Ordering::Relaxed);
        }
    }

    /// Scores counted so far for `detector`.
    pub fn count(&self, detector: Detector) -> u64 {
        self.detectors[detector.index()]
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .sum()
    }
}

/// Encodes the `sidewatch_anomaly_score` family: one histogram per row
/// (labels, histograms), per detector that has scored anything.
pub fn encode<'a>(
    encoder: &mut DescriptorEncoder,
    rows: impl Iterator<Item = (String, &'a ScoreHistograms)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(
        "sidewatch_anomaly_score",
        "Anomaly detector scores of every checked observation, by detector, each on its own scale.",
        None,
        MetricType::Histogram,
    )?;
    for (model, histograms) in rows {
        for (detector, histogram) in Detector::ALL.iter().zip(&histograms.detectors) {
            let counts: Vec<u64> = histogram
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect();
            // The count is the buckets' total, so `+Inf` always equals it.
            let count: u64 = counts.iter().sum();
            if count == 0 {
                continue;
            }
            let buckets: Vec<(f64, u64)> = histogram
                .bounds
                .iter()
                .copied()
                .chain([f64::INFINITY])
                .zip(counts)
                .collect();
            let labels = [
                ("model", model.clone()),
                ("detector", detector.label().to_owned()),
            ];
            family
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(
                    f64::from_bits(histogram.sum.load(Ordering::Relaxed)),
                    count,
                    &buckets,
                    None,
                )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_rise_strictly() {
        for bounds in BUCKETS {
            assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{bounds:?}");
        }
    }

    #[test]
    fn scores_land_in_their_bucket_and_the_sum() {
        let histograms = ScoreHistograms::default();
        for score in [0.2, 0.5, 4.5, 1e9, f64::NAN] {
            histograms.observe(Detector::RobustZ, score);
        }
        assert_eq!(histograms.count(Detector::RobustZ), 4);
        let robust = &histograms.detectors[0];
        let bucket = |i: usize| robust.buckets[i].load(Ordering::Relaxed);
        // le=0.5 holds 0.2 and 0.5 (bounds are inclusive); 4.5 is in le=5.
        assert_eq!(bucket(0), 2);
        assert_eq!(bucket(8), 1);
        assert_eq!(bucket(robust.bounds.len()), 1, "+Inf");
        assert_eq!(
            f64::from_bits(robust.sum.load(Ordering::Relaxed)),
            0.2 + 0.5 + 4.5 + 1e9
        );
        assert_eq!(histograms.count(Detector::Mahalanobis), 0);
    }
}
