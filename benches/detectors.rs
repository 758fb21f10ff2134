//! Per-sample cost of each detector of "Monitoring core II" on one core, at
//! 16 numeric features, with the configuration's defaults (`anomaly:` from
//! `Config`, River's defaults for the concept-drift detectors, NannyML's for
//! PCA).
//!
//! | group | what one iteration is |
//! |---|---|
//! | `anomaly` | one row through `RobustZ`, `Mahalanobis`, `HalfSpaceTrees` (score then learn in one walk, as the shard runs it; and as two walks, `score` then `learn`), `ConfidenceCheck`, and the whole `AnomalyDetectors` suite on an observation |
//! | `concept` | one value through `PageHinkley`, `Adwin` (a prediction score) and `Ddm` (an error bit) |
//! | `multivariate` | one row into a window (PCA residual and mean sums); one evaluation of a window (PCA band and mean shift) |
//! | `every_detector` | one observation through every detector above: the anomaly suite, Page–Hinkley and ADWIN on its score, DDM on an error bit (as if every request got feedback) and the multivariate window |
//!
//! Every case reports elements per second: observations (or values) per
//! second, and evaluations per second for the window evaluation. The anomaly and multivariate
//! detectors are built from a baseline of 20,000 rows (its 5,000-row
//! sample trains the Half-Space Trees and fits the PCA) and fed traffic
//! rows, as in `benches/monitoring.rs` (same generator, `common`). The
//! full pipeline with every default detector on, decode included, is
//! `cargo bench --bench monitoring -- pipeline` (`decode_shard`, and
//! `shard` without the decode). The per-sample comparison with River on
//! identical streams is `scripts/bench.d/river/run` (`benches/river.rs`).
//!
//! Run: `cargo bench --bench detectors` (about a minute), or with a filter,
//! e.g. `cargo bench --bench detectors -- anomaly/half_space_trees`.

mod common;

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main,
    measurement::WallTime,
};
use sidewatch::baseline::Baseline;
use sidewatch::config::Config;
use sidewatch::detect::anomaly::{
    AnomalyConfig, AnomalyDetectors, ConfidenceCheck, HalfSpaceTrees, Mahalanobis, RobustZ, Verdict,
};
use sidewatch::detect::concept::{Adwin, Ddm, PageHinkley};
use sidewatch::detect::multivariate::{MultivariateConfig, MultivariateDrift};
use sidewatch::observation::{Observation, Prediction};

use common::{dataset, observation, probabilities};

/// Numeric features per row.
const COLS: usize = 16;
/// Traffic rows the cases cycle through (seed 1, as the monitoring bench).
const ROWS: usize = 8192;

/// The configuration's `anomaly:` defaults.
fn anomaly_defaults() -> AnomalyConfig {
    Config::from_yaml("upstream: http://127.0.0.1:1\n", &Default::default())
        .expect("a valid config")
        .anomaly
}

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
}

/// Inputs every group reads.
struct Inputs {
    baseline: Baseline,
    /// Traffic rows, row-major, `COLS` wide.
    data: Vec<f64>,
    observations: Vec<Observation>,
    predictions: Vec<Prediction>,
    /// The predictions' scores (top probability).
    scores: Vec<f64>,
    /// Whether the model was wrong, against a label that follows feature 1
    /// (about 30% errors).
    errors: Vec<bool>,
}

impl Inputs {
    fn new() -> Inputs {
        let baseline = common::baseline(COLS, 10);
        let data = dataset(1, ROWS, COLS);
        let observations: Vec<Observation> = data
            .chunks(COLS)
            .map(|row| observation(row, SystemTime::UNIX_EPOCH))
            .collect();
        let predictions: Vec<Prediction> = data
            .chunks(COLS)
            .map(|row| Prediction::from_probabilities(&probabilities(row)))
            .collect();
        let scores = predictions
            .iter()
            .map(|p| p.score.expect("a score"))
            .collect();
        let errors = data
            .chunks(COLS)
            .zip(&predictions)
            .map(|(row, p)| p.class != Some(u32::from(row[1] > 0.5)))
            .collect();
        Inputs {
            baseline,
            data,
            observations,
            predictions,
            scores,
            errors,
        }
    }

    fn row(&self, i: usize) -> &[f64] {
        let i = i % ROWS;
        &self.data[i * COLS..(i + 1) * COLS]
    }
}

// === groups ===

fn anomaly_group(c: &mut Criterion, inputs: &Inputs) {
    let config = anomaly_defaults();
    let mut group = c.benchmark_group("anomaly");
    configure(&mut group);
    let id = |name: &str| BenchmarkId::new(name, COLS);
    let mut n = 0usize;

    let robust_z = RobustZ::from_baseline(&inputs.baseline, config.zscore).expect("robust z");
    group.bench_function(id("robust_z"), |b| {
        b.iter(|| {
            n += 1;
            robust_z.check(black_box(inputs.row(n)))
        })
    });

    let mahalanobis =
        Mahalanobis::from_baseline(&inputs.baseline, config.mahalanobis_p).expect("mahalanobis");
    group.bench_function(id("mahalanobis"), |b| {
        b.iter(|| {
            n += 1;
            mahalanobis.check(black_box(inputs.row(n)))
        })
    });

    let mut hst = HalfSpaceTrees::from_baseline(&inputs.baseline, &config.hst).expect("hst");
    assert!(hst.is_warm(), "the baseline sample fills a window");
    group.bench_function(id("half_space_trees"), |b| {
        b.iter(|| {
            n += 1;
            hst.check(black_box(inputs.row(n)))
        })
    });

    // The same work as two walks, `score` then `learn` (what `check` did
    // before it walked each tree once): kept to show what the one walk saves.
    group.bench_function(id("half_space_trees_score_then_learn"), |b| {
        b.iter(|| {
            n += 1;
            let row = black_box(inputs.row(n));
            let score = hst.score(row);
            hst.learn(row);
            score
        })
    });

    let confidence = ConfidenceCheck::new(config.confidence).expect("confidence");
    let mut verdict = Verdict::new();
    group.bench_function(BenchmarkId::new("confidence", "2_classes"), |b| {
        b.iter(|| {
            n += 1;
            verdict.clear();
            confidence.check(
                black_box(&inputs.predictions[n % ROWS]),
                black_box(&mut verdict),
            );
        })
    });

    let mut suite = AnomalyDetectors::from_baseline(&inputs.baseline, &config).expect("suite");
    group.bench_function(id("suite"), |b| {
        b.iter(|| {
            n += 1;
            verdict.clear();
            suite.check(
                black_box(&inputs.observations[n % ROWS]),
                black_box(&mut verdict),
            );
        })
    });
    group.finish();
}

fn concept_group(c: &mut Criterion, inputs: &Inputs) {
    let mut group = c.benchmark_group("concept");
    configure(&mut group);
    let mut n = 0usize;

    let mut page_hinkley = PageHinkley::default();
    group.bench_function("page_hinkley", |b| {
        b.iter(|| {
            n += 1;
            page_hinkley.update(black_box(inputs.scores[n % ROWS]))
        })
    });
    let mut adwin = Adwin::default();
    group.bench_function("adwin", |b| {
        b.iter(|| {
            n += 1;
            adwin.update(black_box(inputs.scores[n % ROWS]))
        })
    });
    let mut ddm = Ddm::default();
    group.bench_function("ddm", |b| {
        b.iter(|| {
            n += 1;
            ddm.update(black_box(inputs.errors[n % ROWS]))
        })
    });
    group.finish();
}

fn multivariate_group(c: &mut Criterion, inputs: &Inputs) {
    let drift = MultivariateDrift::from_baseline(&inputs.baseline, &MultivariateConfig::default())
        .expect("multivariate");
    let mut group = c.benchmark_group("multivariate");
    configure(&mut group);
    let mut n = 0usize;

    let mut window = drift.window();
    group.bench_function(BenchmarkId::new("observe", COLS), |b| {
        b.iter(|| {
            n += 1;
            drift.observe(&mut window, black_box(inputs.row(n)));
        })
    });

    // A window's evaluation does not depend on how many rows it summed.
    let mut full = drift.window();
    for i in 0..ROWS {
        drift.observe(&mut full, inputs.row(i));
    }
    let result = drift.evaluate(&full);
    assert!(result.pca.is_some() && result.mean_shift.is_some());
    group.bench_function(BenchmarkId::new("evaluate_window", COLS), |b| {
        b.iter(|| drift.evaluate(black_box(&full)))
    });
    group.finish();
}

fn every_detector_group(c: &mut Criterion, inputs: &Inputs) {
    let config = anomaly_defaults();
    let mut suite = AnomalyDetectors::from_baseline(&inputs.baseline, &config).expect("suite");
    let drift = MultivariateDrift::from_baseline(&inputs.baseline, &MultivariateConfig::default())
        .expect("multivariate");
    let mut window = drift.window();
    let mut page_hinkley = PageHinkley::default();
    let mut adwin = Adwin::default();
    let mut ddm = Ddm::default();
    let mut verdict = Verdict::new();
    let mut group = c.benchmark_group("every_detector");
    configure(&mut group);
    let mut n = 0usize;
    group.bench_function(BenchmarkId::new("observation", COLS), |b| {
        b.iter(|| {
            n += 1;
            let i = n % ROWS;
            let observation = black_box(&inputs.observations[i]);
            verdict.clear();
            suite.check(observation, &mut verdict);
            let score = inputs.scores[i];
            let concept = [
                page_hinkley.update(score),
                adwin.update(score),
                ddm.update(inputs.errors[i]),
            ];
            drift.observe(&mut window, inputs.row(i));
            (verdict.is_anomalous(), concept)
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let inputs = Inputs::new();
    anomaly_group(c, &inputs);
    concept_group(c, &inputs);
    multivariate_group(c, &inputs);
    every_detector_group(c, &inputs);
}

criterion_group!(detectors, benches);
criterion_main!(detectors);
