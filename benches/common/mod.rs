//! What the criterion benches share: one seeded data generator (which
//! `scripts/bench.d/monitoring/whylogs_bench.py` reimplements with numpy)
//! and a baseline built from it.
//!
//! Value k of a seeded stream is splitmix64(seed + (k + 1)·φ64), two of them
//! make one normal by Box–Muller, and column c has mean c/2 and std
//! 1 + c/10. Traffic uses seed 1, baselines seed 2.

#![allow(dead_code)]

use std::f64::consts::TAU;
use std::sync::Arc;
use std::time::SystemTime;

use sidewatch::baseline::{Baseline, BaselineBuilder, BuildOptions, FeatureKind, LineageInputs};
use sidewatch::observation::{FeatureValue, Observation, Prediction};

/// Rows a baseline is built from.
pub const BASELINE_ROWS: usize = 20_000;

/// One shared data set, row-major: value (row, col) of `cols` columns.
pub fn dataset(seed: u64, rows: usize, cols: usize) -> Vec<f64> {
    (0..rows * cols)
        .map(|i| {
            let k = 2 * i as u64;
            let (u, v) = (uniform(seed, k), uniform(seed, k + 1));
            let z = (-2.0 * u.ln()).sqrt() * (TAU * v).cos();
            let col = (i % cols) as f64;
            col / 2.0 + (1.0 + col / 10.0) * z
        })
        .collect()
}

/// Value `k` of the stream, uniform on (0, 1): splitmix64 of a counter.
pub fn uniform(seed: u64, k: u64) -> f64 {
    let mut z = seed.wrapping_add((k + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    ((z >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
}

/// The model's two-class answer to a row (a logistic of its first feature).
pub fn probabilities(row: &[f64]) -> [f64; 2] {
    let p = 1.0 / (1.0 + (-row[0]).exp());
    [1.0 - p, p]
}

/// Feature names `f0`, `f1`, …
pub fn names(cols: usize) -> Vec<String> {
    (0..cols).map(|c| format!("f{c}")).collect()
}

/// An observation of `row` (all numeric) with the model's prediction.
pub fn observation(row: &[f64], time: SystemTime) -> Observation {
    Observation {
        model: Arc::from("bench"),
        version: None,
        time,
        request_id: Arc::from("r"),
        exchange: 0,
        row: 0,
        features: row.iter().map(|&x| FeatureValue::Number(x)).collect(),
        prediction: Some(Prediction::from_probabilities(&probabilities(row))),
    }
}

/// A baseline of `cols` numeric features with `bins` bins, built from
/// [`BASELINE_ROWS`] rows of seed 2 (the defaults of `BuildOptions`
/// otherwise, so its row sample is what the anomaly and multivariate
/// detectors train on in production).
pub fn baseline(cols: usize, bins: usize) -> Baseline {
    let features = names(cols)
        .into_iter()
        .map(|n| (n, FeatureKind::Numeric))
        .collect();
    let options = BuildOptions {
        bins,
        ..BuildOptions::default()
    };
    let mut builder = BaselineBuilder::new("bench", features, options);
    let data = dataset(2, BASELINE_ROWS, cols);
    for row in data.chunks(cols) {
        let values: Vec<FeatureValue> = row.iter().map(|&x| FeatureValue::Number(x)).collect();
        let prediction = Prediction::from_probabilities(&probabilities(row));
        builder.add_row(&values, Some(&prediction));
    }
    builder
        .finish(LineageInputs::live(
            BASELINE_ROWS as u64,
            SystemTime::UNIX_EPOCH,
        ))
        .expect("baseline builds")
}
