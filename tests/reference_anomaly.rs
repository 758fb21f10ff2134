//! The anomaly and multivariate detectors against reference vectors
//! computed once by NumPy, SciPy, scikit-learn and River and committed in
//! `tests/fixtures/reference/anomaly.json`.
//!
//! Regenerate with `scripts/reference/generate`. Each test reports every
//! failure by case name and prints the largest error seen (`cargo test
//! --test reference_anomaly -- --nocapture`).
//!
//! Half-Space Trees draw random splits, so sidewatch's trees (seeded
//! `fastrand`) differ from River's (Python's Mersenne Twister). Two checks:
//! fed Python's own `random.Random(seed)` stream (reimplemented below), the
//! trees are River's and every score must be identical; with sidewatch's
//! own generator, the scores must rank the stream like River's (Spearman
//! correlation), for one seed and averaged over ten.

use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use sidewatch::baseline::{Baseline, BaselineBuilder, BuildOptions, FeatureKind, LineageInputs};
use sidewatch::detect::anomaly::{
    HalfSpaceTrees, HstConfig, Mahalanobis, Precision, RobustZ, chi_square_quantile,
};
use sidewatch::detect::multivariate::{PcaConfig, PcaDrift};
use sidewatch::observation::FeatureValue;

/// Reads one family of cases from the fixture file.
fn cases<T: DeserializeOwned>(family: &str) -> Vec<T> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference/anomaly.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/reference/generate)", path.display()));
    let mut all: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let family_cases = all
        .remove(family)
        .unwrap_or_else(|| panic!("{} has no {family:?} cases", path.display()));
    serde_json::from_value(family_cases).unwrap_or_else(|e| panic!("{family} cases: {e}"))
}

/// Rows whose nulls are missing values (NaN).
fn nan_rows<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Vec<f64>>, D::Error> {
    let rows: Vec<Vec<Option<f64>>> = Vec::deserialize(deserializer)?;
    Ok(rows
        .into_iter()
        .map(|row| row.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect())
        .collect())
}

/// Largest error per quantity, and every failure by case name.
struct Report {
    family: &'static str,
    /// Per quantity: largest scaled error, largest absolute error.
    max_errors: Vec<(&'static str, f64, f64)>,
    failures: Vec<String>,
}

impl Report {
    fn new(family: &'static str) -> Self {
        Report {
            family,
            max_errors: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// Passes when `|got − want| ≤ tolerance · max(1, |want|)`: absolute
    /// for values up to 1, relative above.
    fn check(&mut self, case: &str, quantity: &'static str, got: f64, want: f64, tolerance: f64) {
        let absolute = if got == want { 0.0 } else { (got - want).abs() };
        let error = absolute / want.abs().max(1.0);
        match self.max_errors.iter_mut().find(|(q, _, _)| *q == quantity) {
            Some((_, max, max_absolute)) => {
                *max = max.max(error);
                *max_absolute = max_absolute.max(absolute);
            }
            None => self.max_errors.push((quantity, error, absolute)),
        }
        // Written so that a NaN error fails too.
        if error.is_nan() || error > tolerance {
            self.failures.push(format!(
                "{case}: {quantity} = {got:e}, reference {want:e} (error {error:e} > {tolerance:e})"
            ));
        }
    }

    fn finish(self, count: usize) {
        for (quantity, max, absolute) in &self.max_errors {
            println!(
                "{}: {count} cases, max error of {quantity}: {max:e} (absolute {absolute:e})",
                self.family
            );
        }
        assert!(
            self.failures.is_empty(),
            "{} {} comparisons disagree with the reference:\n{}",
            self.failures.len(),
            self.family,
            self.failures.join("\n")
        );
    }
}

/// A baseline of numeric features `f0, f1, …` over `rows`, every row kept
/// in the row sample.
fn baseline(rows: &[Vec<f64>]) -> Baseline {
    let d = rows[0].len();
    let features = (0..d)
        .map(|j| (format!("f{j}"), FeatureKind::Numeric))
        .collect();
    let options = BuildOptions {
        row_cap: rows.len(),
        sample_cap: rows.len(),
        ..BuildOptions::default()
    };
    let mut builder = BaselineBuilder::new("m", features, options);
    for row in rows {
        let values: Vec<FeatureValue> = row.iter().map(|&x| FeatureValue::Number(x)).collect();
        builder.add_row(&values, None);
    }
    let lineage = LineageInputs::live(rows.len() as u64, std::time::SystemTime::UNIX_EPOCH);
    builder.finish(lineage).unwrap_or_else(|e| panic!("{e}"))
}

// === robust z ===

#[derive(Deserialize)]
struct RobustZFeatureCase {
    median: f64,
    mad: f64,
    std: f64,
    scale: f64,
}

#[derive(Deserialize)]
struct RobustZCase {
    name: String,
    rows: Vec<Vec<f64>>,
    features: Vec<RobustZFeatureCase>,
    tests: Vec<Vec<f64>>,
    /// `None` is +∞ (a constant feature away from its value).
    z: Vec<Vec<Option<f64>>>,
}

#[test]
fn robust_z_matches_numpy() {
    let cases: Vec<RobustZCase> = cases("robust_z");
    let mut report = Report::new("robust_z");
    for case in &cases {
        let baseline = baseline(&case.rows);
        for (j, want) in case.features.iter().enumerate() {
            let profile = baseline.features[j]
                .numeric
                .as_ref()
                .unwrap_or_else(|| panic!("numeric"));
            report.check(&case.name, "median", profile.median, want.median, 1e-12);
            report.check(&case.name, "mad", profile.mad, want.mad, 1e-12);
            report.check(&case.name, "std", profile.std, want.std, 1e-12);
        }
        let detector = RobustZ::from_baseline(&baseline, 4.0).unwrap_or_else(|e| panic!("{e}"));
        for (feature, want) in detector.features().iter().zip(&case.features) {
            report.check(&case.name, "scale", feature.scale, want.scale, 1e-12);
        }
        for (row, want) in case.tests.iter().zip(&case.z) {
            for (axis, (&x, want)) in row.iter().zip(want).enumerate() {
                let got = detector.z(axis, x);
                match want {
                    Some(want) => report.check(&case.name, "z", got, *want, 1e-12),
                    None if got == f64::INFINITY => {}
                    None => report.check(&case.name, "z (infinite)", got, f64::INFINITY, 0.0),
                }
            }
        }
    }
    report.finish(cases.len());
}

// === Mahalanobis ===

#[derive(Deserialize)]
struct MahalanobisCase {
    name: String,
    rows: Vec<Vec<f64>>,
    mean: Vec<f64>,
    covariance: Vec<Vec<f64>>,
    ridge: f64,
    tests: Vec<Vec<f64>>,
    distance: Vec<f64>,
}

#[test]
fn mahalanobis_matches_scipy() {
    let cases: Vec<MahalanobisCase> = cases("mahalanobis");
    let mut report = Report::new("mahalanobis");
    for case in &cases {
        // From NumPy's mean and covariance: the distance computation alone.
        let precision =
            Precision::new(&case.mean, &case.covariance).unwrap_or_else(|e| panic!("{e}"));
        report.check(&case.name, "ridge", precision.ridge(), case.ridge, 0.0);
        for (row, &want) in case.tests.iter().zip(&case.distance) {
            let got = precision.squared_distance(row).sqrt();
            report.check(&case.name, "distance (numpy covariance)", got, want, 1e-9);
        }
        // From a baseline built on the same rows: sidewatch's own streaming
        // mean and covariance, then the detector.
        let baseline = baseline(&case.rows);
        let detector =
            Mahalanobis::from_baseline(&baseline, 0.001).unwrap_or_else(|e| panic!("{e}"));
        for (row, &want) in case.tests.iter().zip(&case.distance) {
            let got = detector.score(row).unwrap_or(f64::NAN).sqrt();
            report.check(&case.name, "distance (baseline)", got, want, 1e-9);
        }
    }
    report.finish(cases.len());
}

#[derive(Deserialize)]
struct ChiSquareCase {
    dof: usize,
    p: f64,
    threshold: f64,
}

#[test]
fn chi_square_thresholds_match_scipy() {
    let cases: Vec<ChiSquareCase> = cases("chi2_threshold");
    let mut report = Report::new("chi2_threshold");
    for case in &cases {
        let name = format!("chi2({}) at 1 - {}", case.dof, case.p);
        let got = chi_square_quantile(case.dof, 1.0 - case.p).unwrap_or_else(|e| panic!("{e}"));
        report.check(&name, "threshold", got, case.threshold, 1e-9);
    }
    report.finish(cases.len());
}

// === PCA reconstruction error ===

#[derive(Deserialize)]
struct PcaCase {
    name: String,
    rows: Vec<Vec<f64>>,
    #[serde(deserialize_with = "nan_rows")]
    tests: Vec<Vec<f64>>,
    variance: f64,
    chunk_size: Option<usize>,
    components: usize,
    explained: f64,
    errors: Vec<f64>,
    lower: f64,
    upper: f64,
}

#[test]
fn pca_reconstruction_error_matches_scikit_learn() {
    let cases: Vec<PcaCase> = cases("pca");
    let mut report = Report::new("pca");
    for case in &cases {
        let config = PcaConfig {
            variance: case.variance,
            chunk_size: case.chunk_size,
            sigmas: 3.0,
        };
        let pca = PcaDrift::fit(&case.rows, &config).unwrap_or_else(|e| panic!("{e}"));
        let components = pca.components() as f64;
        report.check(
            &case.name,
            "components",
            components,
            case.components as f64,
            0.0,
        );
        report.check(
            &case.name,
            "explained",
            pca.explained_variance(),
            case.explained,
            1e-9,
        );
        for (row, &want) in case.tests.iter().zip(&case.errors) {
            let got = pca.reconstruction_error(row);
            report.check(&case.name, "reconstruction error", got, want, 1e-9);
        }
        let (lower, upper) = pca.band();
        report.check(&case.name, "band lower", lower, case.lower, 1e-9);
        report.check(&case.name, "band upper", upper, case.upper, 1e-9);
    }
    report.finish(cases.len());
}

// === Half-Space Trees ===

#[derive(Deserialize)]
struct HstCase {
    name: String,
    #[serde(deserialize_with = "nan_rows")]
    stream: Vec<Vec<f64>>,
    n_trees: usize,
    height: usize,
    window_size: usize,
    limits: Vec<(f64, f64)>,
    seed: u32,
    scores: Vec<f64>,
    seeds: Vec<u64>,
    #[serde(default)]
    mean_scores: Vec<f64>,
}

impl HstCase {
    fn config(&self, seed: u64) -> HstConfig {
        HstConfig {
            trees: self.n_trees,
            height: self.height,
            window: self.window_size,
            threshold: 0.9,
            seed,
        }
    }

    /// Scores of the stream, each row scored then learned (River's order).
    fn run(&self, mut trees: HalfSpaceTrees) -> Vec<f64> {
        self.stream
            .iter()
            .map(|row| trees.score_and_learn(row))
            .collect()
    }

    fn indices(&self) -> Vec<usize> {
        (0..self.limits.len()).collect()
    }
}

#[test]
fn half_space_trees_replay_river_exactly() {
    let cases: Vec<HstCase> = cases("hst");
    let mut report = Report::new("hst (River's random stream)");
    for case in &cases {
        let mut random = PythonRandom::new(case.seed);
        let trees =
            HalfSpaceTrees::with_uniform(&case.config(0), &case.limits, case.indices(), || {
                random.random()
            })
            .unwrap_or_else(|e| panic!("{e}"));
        for (got, &want) in case.run(trees).iter().zip(&case.scores) {
            report.check(&case.name, "score", *got, want, 0.0);
        }
    }
    report.finish(cases.len());
}

#[test]
fn half_space_trees_rank_like_river() {
    let cases: Vec<HstCase> = cases("hst");
    for case in cases.iter().filter(|c| !c.seeds.is_empty()) {
        let own = |seed: u64| {
            let trees = HalfSpaceTrees::new(&case.config(seed), &case.limits, case.indices())
                .unwrap_or_else(|e| panic!("{e}"));
            case.run(trees)
        };
        // Scores are 0 until the first window is full: compare after it.
        let after = |scores: &[f64]| scores[case.window_size..].to_vec();
        let single = spearman(&after(&own(u64::from(case.seed))), &after(&case.scores));
        let mut mean = vec![0.0; case.stream.len()];
        for &seed in &case.seeds {
            for (m, s) in mean.iter_mut().zip(own(seed)) {
                *m += s / case.seeds.len() as f64;
            }
        }
        let averaged = spearman(&after(&mean), &after(&case.mean_scores));
        // The ceiling for one seed: River against River with another seed
        // (replayed exactly through Python's generator).
        let river = |seed: u32| {
            let mut random = PythonRandom::new(seed);
            let trees =
                HalfSpaceTrees::with_uniform(&case.config(0), &case.limits, case.indices(), || {
                    random.random()
                })
                .unwrap_or_else(|e| panic!("{e}"));
            case.run(trees)
        };
        let river_pairs: Vec<f64> = (0..5)
            .map(|seed| spearman(&after(&river(seed)), &after(&case.scores)))
            .collect();
        println!(
            "{}: Spearman vs River seed {}: sidewatch one seed {single:.4}; River seeds 0-4 \
             {river_pairs:.4?}; sidewatch mean of {} seeds vs River mean of as many {averaged:.4}",
            case.name,
            case.seed,
            case.seeds.len(),
        );
        // One seed cannot reach 0.95: two River runs differing only in the
        // seed do not either. Averaging over ten seeds on both sides does.
        let best_river = river_pairs.iter().copied().fold(0.0, f64::max);
        assert!(
            single >= 0.85 && best_river < 0.95,
            "{}: {single} {best_river}",
            case.name
        );
        assert!(
            averaged >= 0.95,
            "{}: averaged Spearman {averaged}",
            case.name
        );
    }
}

/// Spearman's rank correlation (average ranks for ties).
fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let (ra, rb) = (ranks(a), ranks(b));
    let n = a.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        cov += (x - ma) * (y - mb);
        va += (x - ma) * (x - ma);
        vb += (y - mb) * (y - mb);
    }
    cov / (va * vb).sqrt()
}

fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start;
        while end + 1 < order.len() && values[order[end + 1]] == values[order[start]] {
            end += 1;
        }
        let rank = (start + end) as f64 / 2.0;
        for &i in &order[start..=end] {
            ranks[i] = rank;
        }
        start = end + 1;
    }
    ranks
}

/// Python's `random.Random(seed)` for a seed below 2³²: MT19937 seeded by
/// `init_by_array([seed])`, and `random()` as CPython's `genrand_res53`.
struct PythonRandom {
    state: [u32; 624],
    index: usize,
}

impl PythonRandom {
    fn new(seed: u32) -> PythonRandom {
        let mut state = [0u32; 624];
        state[0] = 19_650_218;
        for i in 1..624 {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        let (mut i, key) = (1, [seed]);
        for k in 0..624 {
            let prev = state[i - 1];
            state[i] = (state[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_664_525))
                .wrapping_add(key[k % key.len()])
                .wrapping_add((k % key.len()) as u32);
            i += 1;
            if i >= 624 {
                state[0] = state[623];
                i = 1;
            }
        }
        for _ in 0..623 {
            let prev = state[i - 1];
            state[i] = (state[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_566_083_941))
                .wrapping_sub(i as u32);
            i += 1;
            if i >= 624 {
                state[0] = state[623];
                i = 1;
            }
        }
        state[0] = 0x8000_0000;
        PythonRandom { state, index: 624 }
    }

    fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            for k in 0..624 {
                let y = (self.state[k] & 0x8000_0000) | (self.state[(k + 1) % 624] & 0x7fff_ffff);
                let mag = if y & 1 == 1 { 0x9908_b0df } else { 0 };
                self.state[k] = self.state[(k + 397) % 624] ^ (y >> 1) ^ mag;
            }
            self.index = 0;
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// A double in [0, 1) from 53 random bits.
    fn random(&mut self) -> f64 {
        let a = f64::from(self.next_u32() >> 5);
        let b = f64::from(self.next_u32() >> 6);
        (a * 67_108_864.0 + b) * (1.0 / 9_007_199_254_740_992.0)
    }
}

#[test]
fn python_random_matches_cpython() {
    // python3 -c "import random; r = random.Random(42); print([r.random() for _ in range(3)])"
    let mut random = PythonRandom::new(42);
    let got: Vec<f64> = (0..3).map(|_| random.random()).collect();
    assert_eq!(
        got,
        [
            0.6394267984578837,
            0.025010755222666936,
            0.27502931836911926
        ]
    );
}
