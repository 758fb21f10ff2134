//! Sliding time windows over observations: a ring of sub-windows ("slices")
//! of `step` length, `window / step` of them, each holding per-feature bin
//! counts, moments, a small reservoir of raw values and category counts,
//! and, when the spec asks for it, the sums the multivariate drift
//! detectors need over whole numeric rows.
//!
//! Evaluating a window merges the slices: O(bins × slices), independent of
//! how many observations the window holds. Expiring old data is dropping
//! the oldest slice. Time is passed in (milliseconds since the Unix epoch),
//! so tests drive windows with a fake clock.
//!
//! Rows are not stored. The multivariate detectors are fitted once on the
//! baseline and fixed while a window exists (a new baseline gets a new
//! window), so each row can be reduced on arrival to its PCA
//! reconstruction error and its values, summed per slice: `d + 3` numbers
//! per slice whatever the traffic, and exact over every row of the window
//! where a reservoir of rows would only sample them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::baseline::bin_index;
use crate::detect::multivariate::{MultivariateDrift, MultivariateWindow};
use crate::observation::{FeatureValue, Observation};

/// How a window is cut and what it keeps per feature.
#[derive(Debug, Clone)]
pub struct WindowSpec {
    /// Length of the window.
    pub length: Duration,
    /// Length of one slice; the window advances by this much.
    pub step: Duration,
    /// Raw values kept per numeric feature over the whole window (for KS
    /// and Wasserstein). Each slice keeps up to this many; the merge draws
    /// from each slice in proportion to its share of the window.
    pub sample_cap: usize,
    /// Per feature, in model feature order.
    pub features: Vec<FeatureSpec>,
    /// Bin edges for the prediction score, when the baseline has them.
    pub score_edges: Option<Vec<f64>>,
    /// Whole numeric rows for the multivariate detectors, when they run.
    pub multivariate: Option<RowSpec>,
}

/// Which features make up a numeric row, and the detectors each row is
/// reduced with as it arrives.
#[derive(Debug, Clone)]
pub struct RowSpec {
    /// Fitted on the baseline; fixed for the window's life.
    pub detectors: Arc<MultivariateDrift>,
    /// Positions, in model feature order, of the values of a row, in the
    /// order of the baseline's numeric features (its `rows`' columns).
    pub columns: Vec<usize>,
}

/// What a window tracks for one feature.
#[derive(Debug, Clone, PartialEq)]
pub enum FeatureSpec {
    /// Numbers, binned by the baseline's interior edges.
    Numeric {
        /// Interior cut points of right-closed bins (see [`crate::baseline::bin_index`]).
        edges: Vec<f64>,
    },
    /// Category labels, counted.
    Categorical,
}

/// A sliding window of observations for one model.
#[derive(Debug)]
pub struct Window {
    spec: WindowSpec,
    step_ms: u64,
    slots: usize,
    per_slice_sample: usize,
    /// Newest slice last; each tagged with its slice number (`time / step`).
    slices: VecDeque<Slice>,
    rng: fastrand::Rng,
    /// Observations older than the window when they arrived.
    late: u64,
    /// The newest slice number the clock or an observation has reached.
    newest: u64,
    /// Reused for each observation's numeric row (NaN where missing).
    row: Vec<f64>,
}

#[derive(Debug)]
struct Slice {
    number: u64,
    count: u64,
    features: Vec<FeatureSlice>,
    classes: HashMap<u32, u64>,
    score: Numeric,
    /// Multivariate sums, when the spec has a [`RowSpec`].
    multivariate: Option<MultivariateWindow>,
}

#[derive(Debug, Clone)]
enum FeatureSlice {
    Numeric(Numeric),
    Categorical {
        counts: HashMap<Arc<str>, u64>,
        missing: u64,
    },
}

/// Bins, moments and a reservoir for one numeric series.
#[derive(Debug, Clone, Default)]
struct Numeric {
    bins: Vec<u64>,
    /// Finite values seen (the moments and bins cover these).
    n: u64,
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
    missing: u64,
    /// NaN or ±Inf (and categories where numbers were expected).
    invalid: u64,
    sample: Vec<f64>,
}

/// A merged view of a whole window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowSummary {
    /// Observations in the window.
    pub count: u64,
    /// Per feature, in model feature order.
    pub features: Vec<FeatureSummary>,
    /// Predicted class counts.
    pub classes: BTreeMap<u32, u64>,
    /// Prediction scores (binned by `score_edges` when given).
    pub score: NumericSummary,
    /// Observations that arrived after their slice had expired.
    pub late: u64,
    /// Multivariate sums over the window's rows, when the spec has a
    /// [`RowSpec`].
    pub multivariate: Option<MultivariateWindow>,
}

/// One feature over the window.
#[derive(Debug, Clone, PartialEq)]
pub enum FeatureSummary {
    /// A numeric feature.
    Numeric(NumericSummary),
    /// A categorical feature.
    Categorical {
        /// Count per label.
        counts: BTreeMap<Arc<str>, u64>,
        /// Observations without this feature.
        missing: u64,
    },
}

/// A numeric series over the window.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NumericSummary {
    /// Count per bin (right-closed bins from the spec's edges).
    pub bins: Vec<u64>,
    /// Finite values.
    pub count: u64,
    /// Mean of the finite values.
    pub mean: f64,
    /// Sample standard deviation (ddof = 1) of the finite values.
    pub std: f64,
    /// Smallest finite value (NaN when none).
    pub min: f64,
    /// Largest finite value (NaN when none).
    pub max: f64,
    /// Observations without this feature.
    pub missing: u64,
    /// NaN, ±Inf or wrongly typed values.
    pub invalid: u64,
    /// A uniform sample of the finite values, at most the spec's `sample_cap`.
    pub sample: Vec<f64>,
}

// === impl Window ===

impl Window {
    /// An empty window; `seed` makes the reservoirs reproducible.
    pub fn new(spec: WindowSpec, seed: u64) -> Self {
        let step_ms = (spec.step.as_millis() as u64).max(1);
        let slots = (spec.length.as_millis() as u64)
            .div_ceil(step_ms)
            .clamp(1, 100_000) as usize;
        let per_slice_sample = spec.sample_cap;
        Window {
            spec,
            step_ms,
            slots,
            per_slice_sample,
            slices: VecDeque::with_capacity(slots),
            rng: fastrand::Rng::with_seed(seed),
            late: 0,
            newest: 0,
            row: Vec::new(),
        }
    }

    /// The spec the window was built with.
    pub fn spec(&self) -> &WindowSpec {
        &self.spec
    }

    /// Adds an observation made at `at_ms` (Unix milliseconds).
    pub fn observe(&mut self, at_ms: u64, observation: &Observation) {
        let number = at_ms / self.step_ms;
        let Some(index) = self.slice_for(number) else {
            self.late += 1;
            return;
        };
        let cap = self.per_slice_sample;
        let Some(slice) = self.slices.get_mut(index) else {
            return;
        };
        slice.count += 1;
        for (i, feature) in slice.features.iter_mut().enumerate() {
            let value = observation
                .features
                .get(i)
                .unwrap_or(&FeatureValue::Missing);
            let edges = match &self.spec.features.get(i) {
                Some(FeatureSpec::Numeric { edges }) => edges.as_slice(),
                _ => &[],
            };
            feature.add(value, edges, cap, &mut self.rng);
        }
        if let Some(prediction) = &observation.prediction {
            if let Some(class) = prediction.class {
                *slice.classes.entry(class).or_default() += 1;
            }
            if let Some(score) = prediction.score {
                let edges = self.spec.score_edges.as_deref().unwrap_or(&[]);
                slice.score.add(score, edges, cap, &mut self.rng);
            }
        }
        if let (Some(spec), Some(sums)) = (&self.spec.multivariate, &mut slice.multivariate) {
            self.row.clear();
            self.row.extend(
                spec.columns
                    .iter()
                    .map(|&c| match observation.features.get(c) {
                        Some(FeatureValue::Number(x)) => *x,
                        _ => f64::NAN,
                    }),
            );
            spec.detectors.observe(sums, &self.row);
        }
    }

    /// Drops slices that have left the window by `now_ms`.
    pub fn advance(&mut self, now_ms: u64) {
        self.newest = self.newest.max(now_ms / self.step_ms);
        let oldest_kept = self.newest.saturating_sub(self.slots as u64 - 1);
        while self.slices.front().is_some_and(|s| s.number < oldest_kept) {
            self.slices.pop_front();
        }
    }

    /// Merges the slices into one view of the window.
    pub fn summary(&self) -> WindowSummary {
        let mut merged = self.empty_slice(0);
        // Seeded by the window's content, so the same window always gives
        // the same sample (evaluations are reproducible).
        let mut rng = fastrand::Rng::with_seed(self.count() ^ self.newest);
        for slice in &self.slices {
            merged.count += slice.count;
            for (into, from) in merged.features.iter_mut().zip(&slice.features) {
                into.merge(from);
            }
            for (class, n) in &slice.classes {
                *merged.classes.entry(*class).or_default() += n;
            }
            merged.score.merge(&slice.score);
            if let (Some(into), Some(from)) = (&mut merged.multivariate, &slice.multivariate) {
                into.merge(from);
            }
        }
        let cap = self.spec.sample_cap;
        for (f, feature) in merged.features.iter_mut().enumerate() {
            if let FeatureSlice::Numeric(numeric) = feature {
                numeric.sample = proportional_sample(
                    self.slices.iter().filter_map(|s| match s.features.get(f) {
                        Some(FeatureSlice::Numeric(n)) => Some(n),
                        _ => None,
                    }),
                    cap,
                    &mut rng,
                );
            }
        }
        merged.score.sample =
            proportional_sample(self.slices.iter().map(|s| &s.score), cap, &mut rng);
        WindowSummary {
            count: merged.count,
            features: merged
                .features
                .into_iter()
                .map(FeatureSlice::summary)
                .collect(),
            classes: merged.classes.into_iter().collect(),
            score: merged.score.summary(),
            late: self.late,
            multivariate: merged.multivariate,
        }
    }

    /// Observations currently in the window.
    pub fn count(&self) -> u64 {
        self.slices.iter().map(|s| s.count).sum()
    }

    fn slice_for(&mut self, number: u64) -> Option<usize> {
        self.newest = self.newest.max(number);
        let oldest_kept = self.newest.saturating_sub(self.slots as u64 - 1);
        if number < oldest_kept {
            return None;
        }
        while self.slices.front().is_some_and(|s| s.number < oldest_kept) {
            self.slices.pop_front();
        }
        // Slices stay ordered by number; a late observation may need a slice
        // between two live ones.
        let position = self.slices.partition_point(|s| s.number < number);
        if self.slices.get(position).is_none_or(|s| s.number != number) {
            let slice = self.empty_slice(number);
            self.slices.insert(position, slice);
        }
        Some(position)
    }

    fn empty_slice(&self, number: u64) -> Slice {
        Slice {
            number,
            count: 0,
            features: self
                .spec
                .features
                .iter()
                .map(|f| match f {
                    FeatureSpec::Numeric { edges } => {
                        FeatureSlice::Numeric(Numeric::with_bins(edges.len() + 1))
                    }
                    FeatureSpec::Categorical => FeatureSlice::Categorical {
                        counts: HashMap::new(),
                        missing: 0,
                    },
                })
                .collect(),
            classes: HashMap::new(),
            score: Numeric::with_bins(self.spec.score_edges.as_ref().map_or(1, |e| e.len() + 1)),
            multivariate: self
                .spec
                .multivariate
                .as_ref()
                .map(|r| r.detectors.window()),
        }
    }
}

// === impl FeatureSlice ===

impl FeatureSlice {
    fn add(&mut self, value: &FeatureValue, edges: &[f64], cap: usize, rng: &mut fastrand::Rng) {
        match (self, value) {
            (FeatureSlice::Numeric(numeric), FeatureValue::Number(x)) => {
                numeric.add(*x, edges, cap, rng)
            }
            (FeatureSlice::Numeric(numeric), FeatureValue::Missing) => numeric.missing += 1,
            (FeatureSlice::Numeric(numeric), FeatureValue::Category(_)) => numeric.invalid += 1,
            (FeatureSlice::Categorical { counts, .. }, FeatureValue::Category(label)) => {
                *counts.entry(label.clone()).or_default() += 1;
            }
            (FeatureSlice::Categorical { counts, .. }, FeatureValue::Number(x)) => {
                // Categorical codes sent as numbers count under their text form.
                *counts.entry(Arc::from(format_number(*x))).or_default() += 1;
            }
            (FeatureSlice::Categorical { missing, .. }, FeatureValue::Missing) => *missing += 1,
        }
    }

    fn merge(&mut self, other: &FeatureSlice) {
        match (self, other) {
            (FeatureSlice::Numeric(a), FeatureSlice::Numeric(b)) => a.merge(b),
            (
                FeatureSlice::Categorical { counts, missing },
                FeatureSlice::Categorical {
                    counts: more,
                    missing: more_missing,
                },
            ) => {
                for (label, n) in more {
                    *counts.entry(label.clone()).or_default() += n;
                }
                *missing += more_missing;
            }
            _ => {}
        }
    }

    fn summary(self) -> FeatureSummary {
        match self {
            FeatureSlice::Numeric(numeric) => FeatureSummary::Numeric(numeric.summary()),
            FeatureSlice::Categorical { counts, missing } => FeatureSummary::Categorical {
                counts: counts.into_iter().collect(),
                missing,
            },
        }
    }
}

/// Draws about `cap` values from the slices' reservoirs, from each in
/// proportion to how many values it saw, so the result is close to a
/// uniform sample of the whole window even when slices differ in traffic.
fn proportional_sample<'a>(
    slices: impl Iterator<Item = &'a Numeric> + Clone,
    cap: usize,
    rng: &mut fastrand::Rng,
) -> Vec<f64> {
    let total: u64 = slices.clone().map(|s| s.n).sum();
    if total as usize <= cap {
        return slices.flat_map(|s| s.sample.iter().copied()).collect();
    }
    let mut out = Vec::with_capacity(cap);
    for slice in slices {
        let share = ((slice.n as f64 / total as f64) * cap as f64).round() as usize;
        let take = share.min(slice.sample.len());
        if take == slice.sample.len() {
            out.extend_from_slice(&slice.sample);
        } else {
            // A partial Fisher–Yates shuffle picks `take` values without bias.
            let mut pool = slice.sample.clone();
            for i in 0..take {
                let j = rng.usize(i..pool.len());
                pool.swap(i, j);
            }
            out.extend_from_slice(&pool[..take]);
        }
    }
    out
}

fn format_number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        x.to_string()
    }
}

// === impl Numeric ===

impl Numeric {
    fn with_bins(bins: usize) -> Self {
        Numeric {
            bins: vec![0; bins],
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            ..Numeric::default()
        }
    }

    fn add(&mut self, x: f64, edges: &[f64], cap: usize, rng: &mut fastrand::Rng) {
        if !x.is_finite() {
            self.invalid += 1;
            return;
        }
        if let Some(bin) = bin_index(edges, x).and_then(|b| self.bins.get_mut(b)) {
            *bin += 1;
        }
        // Welford's update keeps the variance stable for large counts.
        self.n += 1;
        let delta = x - self.mean;
        self.mean += delta / self.n as f64;
        self.m2 += delta * (x - self.mean);
        self.min = self.min.min(x);
        self.max = self.max.max(x);
        // Reservoir sampling (Algorithm R): every value seen by this slice
        // has the same chance to be kept.
        if self.sample.len() < cap {
            self.sample.push(x);
        } else if cap > 0 {
            let j = rng.u64(..self.n) as usize;
            if j < cap {
                self.sample[j] = x;
            }
        }
    }

    fn merge(&mut self, other: &Numeric) {
        for (a, b) in self.bins.iter_mut().zip(&other.bins) {
            *a += b;
        }
        if other.n > 0 {
            // Chan et al.'s pairwise combination of mean and M2.
            let n = self.n + other.n;
            let delta = other.mean - self.mean;
            self.mean += delta * other.n as f64 / n as f64;
            self.m2 += other.m2 + delta * delta * (self.n as f64) * (other.n as f64) / n as f64;
            self.n = n;
        }
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.missing += other.missing;
        self.invalid += other.invalid;
    }

    fn summary(self) -> NumericSummary {
        let std = if self.n > 1 {
            (self.m2 / (self.n - 1) as f64).sqrt()
        } else {
            0.0
        };
        let finite = self.n > 0;
        NumericSummary {
            bins: self.bins,
            count: self.n,
            mean: if finite { self.mean } else { f64::NAN },
            std,
            min: if finite { self.min } else { f64::NAN },
            max: if finite { self.max } else { f64::NAN },
            missing: self.missing,
            invalid: self.invalid,
            sample: self.sample,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn spec(sample_cap: usize) -> WindowSpec {
        WindowSpec {
            length: Duration::from_secs(60),
            step: Duration::from_secs(10),
            sample_cap,
            features: vec![
                FeatureSpec::Numeric {
                    edges: vec![0.0, 1.0, 2.0],
                },
                FeatureSpec::Categorical,
            ],
            score_edges: None,
            multivariate: None,
        }
    }

    fn obs(x: f64, label: &str) -> Observation {
        Observation {
            model: Arc::from("m"),
            version: None,
            time: SystemTime::UNIX_EPOCH,
            request_id: Arc::from("r"),
            exchange: 0,
            row: 0,
            features: vec![
                FeatureValue::Number(x),
                FeatureValue::Category(Arc::from(label)),
            ],
            prediction: None,
        }
    }

    fn numeric(summary: &WindowSummary) -> &NumericSummary {
        match &summary.features[0] {
            FeatureSummary::Numeric(n) => n,
            other => panic!("expected numeric, got {other:?}"),
        }
    }

    #[test]
    fn summary_merges_slices_exactly() {
        let mut window = Window::new(spec(1000), 1);
        let values: Vec<f64> = (0..300).map(|i| (i as f64 * 0.37).sin() * 3.0).collect();
        for (i, &x) in values.iter().enumerate() {
            // Spread over 30 s: three slices.
            window.observe(
                1_000_000 + i as u64 * 100,
                &obs(x, if i % 3 == 0 { "a" } else { "b" }),
            );
        }
        let summary = window.summary();
        assert_eq!(summary.count, 300);
        let n = numeric(&summary);
        let mean = values.iter().sum::<f64>() / 300.0;
        let var = values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 299.0;
        assert!((n.mean - mean).abs() < 1e-12);
        assert!((n.std - var.sqrt()).abs() < 1e-12);
        let expected_bins: Vec<u64> = (0..4)
            .map(|b| {
                values
                    .iter()
                    .filter(|&&x| bin_index(&[0.0, 1.0, 2.0], x) == Some(b))
                    .count() as u64
            })
            .collect();
        assert_eq!(n.bins, expected_bins);
        assert_eq!(n.sample.len(), 300);
        match &summary.features[1] {
            FeatureSummary::Categorical { counts, .. } => {
                assert_eq!(counts.get("a"), Some(&100));
                assert_eq!(counts.get("b"), Some(&200));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn old_slices_expire_and_late_observations_are_counted() {
        let mut window = Window::new(spec(100), 1);
        window.observe(0, &obs(1.0, "a"));
        window.observe(59_999, &obs(1.0, "a"));
        assert_eq!(window.count(), 2);
        window.advance(60_000);
        assert_eq!(window.count(), 1, "the slice starting at 0 left the window");
        window.observe(5_000, &obs(1.0, "a"));
        assert_eq!(window.summary().late, 1);
        // Out of order but still inside the window: kept in its own slice.
        window.observe(75_000, &obs(1.0, "a"));
        window.observe(65_000, &obs(1.0, "a"));
        assert_eq!(window.count(), 3);
        window.advance(1_000_000);
        assert_eq!(window.count(), 0);
    }

    /// Detectors over numeric `a` and `b` (correlated), with a categorical
    /// `c` between them in model order.
    fn row_spec() -> RowSpec {
        use crate::baseline::{BaselineBuilder, BuildOptions, FeatureKind, LineageInputs};
        use crate::detect::multivariate::MultivariateConfig;
        let features = vec![
            ("a".to_owned(), FeatureKind::Numeric),
            ("c".to_owned(), FeatureKind::Categorical),
            ("b".to_owned(), FeatureKind::Numeric),
        ];
        let mut builder = BaselineBuilder::new("m", features, BuildOptions::default());
        for i in 0..500 {
            let a = ((i * 37) % 101) as f64 / 10.0;
            let b = a + ((i * 53) % 7) as f64 / 10.0;
            let row = [
                FeatureValue::Number(a),
                FeatureValue::Category(Arc::from("x")),
                FeatureValue::Number(b),
            ];
            builder.add_row(&row, None);
        }
        let baseline = builder
            .finish(LineageInputs::live(500, SystemTime::UNIX_EPOCH))
            .unwrap_or_else(|e| panic!("{e}"));
        let detectors = MultivariateDrift::from_baseline(&baseline, &MultivariateConfig::default())
            .unwrap_or_else(|e| panic!("{e}"));
        RowSpec {
            detectors: Arc::new(detectors),
            columns: vec![0, 2],
        }
    }

    fn row(a: FeatureValue, b: FeatureValue) -> Observation {
        Observation {
            features: vec![a, FeatureValue::Category(Arc::from("x")), b],
            ..obs(0.0, "x")
        }
    }

    #[test]
    fn rows_are_summed_per_slice_and_expire_with_it() {
        let rows = row_spec();
        let spec = WindowSpec {
            features: vec![
                FeatureSpec::Numeric { edges: Vec::new() },
                FeatureSpec::Categorical,
                FeatureSpec::Numeric { edges: Vec::new() },
            ],
            multivariate: Some(rows.clone()),
            ..spec(10)
        };
        let mut window = Window::new(spec, 1);
        let (mut kept, mut everything) = (rows.detectors.window(), rows.detectors.window());
        let number = FeatureValue::Number;
        for i in 0..300u64 {
            let (a, b) = ((i % 13) as f64, (i % 13) as f64 * 0.5 - (i % 3) as f64);
            // 0 to 59.8 s: six slices; the first leaves the window at 60 s.
            let at = i * 200;
            window.observe(at, &row(number(a), number(b)));
            rows.detectors.observe(&mut everything, &[a, b]);
            if at >= 10_000 {
                rows.detectors.observe(&mut kept, &[a, b]);
            }
        }
        // A missing value and a category where a number belongs: rows for
        // PCA (imputed), not complete rows for the mean shift.
        window.observe(59_000, &row(number(1.0), FeatureValue::Missing));
        window.observe(
            59_000,
            &row(FeatureValue::Category(Arc::from("?")), number(1.0)),
        );
        for detectors in [&mut kept, &mut everything] {
            rows.detectors.observe(detectors, &[1.0, f64::NAN]);
            rows.detectors.observe(detectors, &[f64::NAN, 1.0]);
        }
        let close = |x: &MultivariateWindow, y: &MultivariateWindow| {
            assert_eq!((x.rows(), x.complete_rows()), (y.rows(), y.complete_rows()));
            let (x, y) = (rows.detectors.evaluate(x), rows.detectors.evaluate(y));
            let (px, py) = (x.pca.map(|p| p.mean_error), y.pca.map(|p| p.mean_error));
            let (mx, my) = (
                x.mean_shift.map(|m| m.statistic),
                y.mean_shift.map(|m| m.statistic),
            );
            assert!((px.unwrap_or(f64::NAN) - py.unwrap_or(0.0)).abs() < 1e-9);
            assert!((mx.unwrap_or(f64::NAN) - my.unwrap_or(0.0)).abs() < 1e-6);
        };
        let summary = window.summary();
        let sums = summary.multivariate.unwrap_or_else(|| panic!("sums"));
        assert_eq!((sums.rows(), sums.complete_rows()), (302, 300));
        close(&sums, &everything);
        window.advance(60_000);
        let sums = window
            .summary()
            .multivariate
            .unwrap_or_else(|| panic!("sums"));
        assert_eq!(sums.rows(), 252, "the first slice's 50 rows left");
        close(&sums, &kept);
        window.advance(1_000_000);
        let sums = window
            .summary()
            .multivariate
            .unwrap_or_else(|| panic!("sums"));
        assert_eq!((sums.rows(), sums.complete_rows()), (0, 0));
    }

    #[test]
    fn without_a_row_spec_no_sums_are_kept() {
        let mut window = Window::new(spec(10), 1);
        window.observe(0, &obs(1.0, "a"));
        assert_eq!(window.summary().multivariate, None);
    }

    #[test]
    fn samples_are_capped_and_invalid_values_counted() {
        let mut window = Window::new(spec(60), 7);
        for i in 0..10_000u64 {
            window.observe(i * 6, &obs(i as f64, "a"));
        }
        window.observe(0, &obs(f64::NAN, "a"));
        let summary = window.summary();
        let n = numeric(&summary);
        assert!((55..=65).contains(&n.sample.len()), "{}", n.sample.len());
        // Drawn across the whole window, not just its newest slices.
        let early = n.sample.iter().filter(|&&x| x < 5000.0).count();
        assert!(
            (15..=45).contains(&early),
            "{early} of {} from the first half",
            n.sample.len()
        );
        assert_eq!(n.invalid, 1);
        assert_eq!(n.count, 10_000);
        assert_eq!(n.min, 0.0);
        assert_eq!(n.max, 9999.0);
    }
}
