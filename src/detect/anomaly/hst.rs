//! Half-Space Trees (Tan, Ting & Liu, IJCAI 2011), the streaming anomaly
//! detector of `river.anomaly.HalfSpaceTrees` (River 0.26.1), written from
//! its description and checked against River's scores.
//!
//! Each tree splits the feature space at random, to a fixed height: a node
//! picks a feature with probability proportional to the width of its
//! current range and a split point uniformly in the middle 70% of that
//! range (15% padding each side). Nodes count the rows that pass through
//! them in two windows: `latest` (River's `l_mass`) fills as rows are
//! learned, and every `window` rows it becomes `reference` (`r_mass`) and
//! starts again at zero. A row's score walks each tree from the root,
//! adding `reference · 2^depth` at every node it visits and stopping below
//! a node whose reference mass is under `0.1 · window`; the total over
//! trees, divided by its largest possible value
//! `trees · window · (2^(height+1) − 1)` and subtracted from 1, is the
//! anomaly score in [0, 1]: the deeper a row's path stays heavy, the lower
//! its score; rows in regions the reference window never visited score
//! near 1. Only the full path of a row in a point mass scores 0: with the
//! default height of 8, ordinary rows of real data score 0.7–0.99 (each
//! level that keeps the whole window adds only `1/511` of the maximum),
//! which is why [`HalfSpaceTrees::from_baseline`] calibrates the
//! threshold.
//!
//! Differences from River, all deliberate: the features are the numeric
//! axes in order (River sorts feature names); a NaN is a missing feature
//! (River's absent key, routed to the child with the larger latest mass);
//! split choices come from `fastrand` seeded with `seed` rather than
//! Python's Mersenne Twister, so trees differ from River's for the same
//! seed. [`HalfSpaceTrees::with_uniform`] accepts any source of uniform
//! numbers; fed Python's `random.Random(seed)` stream it rebuilds River's
//! trees exactly, which is how `tests/reference_anomaly.rs` proves the
//! scores identical.

mod build;

use super::{AnomalyError, Detector, NumericAxes, Reason};
use crate::baseline::{Baseline, quantile};

/// Share of a range's width excluded at each end when a split point is
/// drawn (River's `padding=0.15`).
pub const PADDING: f64 = 0.15;

/// The quantile of the baseline rows' own scores that
/// [`HalfSpaceTrees::from_baseline`] raises the threshold to: about one
/// baseline row in a thousand would be flagged (the default rate of the
/// Mahalanobis detector).
pub const CALIBRATION_QUANTILE: f64 = 0.999;

/// Fewest scored baseline rows for a calibration.
pub const CALIBRATION_MIN_ROWS: usize = 100;

/// Most nodes (over all trees) a model may ask for: `trees ·
/// 2^(height+1)`, about 14 bytes each.
const MAX_NODES: usize = 1 << 24;

/// Trees walked side by side by [`HalfSpaceTrees::score_and_learn`]. Of
/// 1 to 13 lanes, 4 and 5 were fastest on the benchmark machine (5: 0.54
/// µs a row with the defaults, 8: 0.64, 1: 0.93); 5 also divides the
/// default 25 trees.
const LANES: usize = 5;

/// Half-Space Trees parameters (`anomaly.hst`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HstConfig {
    /// Number of trees (default 25). Scores average over trees, so more
    /// trees give steadier scores.
    pub trees: usize,
    /// Height of each tree (default 8): `2^(height+1) − 1` nodes each.
    pub height: usize,
    /// Rows per mass window (default 250).
    pub window: usize,
    /// Flag rows scoring above this (default 0.9); a floor when built from
    /// a baseline, see [`HalfSpaceTrees::from_baseline`].
    pub threshold: f64,
    /// Seed of the random splits (default 1): same seed, same trees.
    pub seed: u64,
}

/// A streaming Half-Space Trees detector over the numeric axes.
///
/// Per row: scoring and learning each walk `trees · (height + 1)` nodes
/// (one walk when done together, by [`score_and_learn`](Self::score_and_learn)
/// and [`check`](Self::check)); every `window` rows the windows roll, touching all `trees ·
/// (2^(height+1) − 1)` nodes (about 51 node writes per row, amortised,
/// with the defaults). No allocation after construction.
#[derive(Debug, Clone, PartialEq)]
pub struct HalfSpaceTrees {
    /// Model feature index of each axis (for reasons).
    indices: Vec<usize>,
    trees: usize,
    height: usize,
    window: usize,
    threshold: f64,
    /// Nodes per tree, `2^(height+1) − 1`, in heap order (children of
    /// node `i` are `2i + 1` and `2i + 2`).
    nodes: usize,
    /// Internal nodes per tree, `2^height − 1`: the first heap indices.
    internal: usize,
    /// Split axis of each internal node, tree after tree.
    split_axis: Vec<u32>,
    /// Split point of each internal node: rows with `x < split` go left.
    split_at: Vec<f64>,
    /// Mass of each node in the window being filled (River's `l_mass`).
    latest: Vec<u32>,
    /// Mass of each node in the last full window (River's `r_mass`).
    reference: Vec<u32>,
    /// Rows learned in the current window.
    counter: usize,
    /// Whether a full window has been seen; until then the score is 0.
    warm: bool,
}

// === impl HstConfig ===

impl HstConfig {
    /// Every parameter out of range, as sentences.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.trees == 0 {
            problems.push("anomaly.hst.trees must be at least 1".to_owned());
        }
        if self.window == 0 || u32::try_from(self.window).is_err() {
            problems.push(format!(
                "anomaly.hst.window must be 1 to {}, not {}",
                u32::MAX,
                self.window
            ));
        }
        let nodes = 1usize
            .checked_shl(self.height.min(63) as u32 + 1)
            .and_then(|n| n.checked_mul(self.trees.max(1)));
        if self.height >= 63 || nodes.is_none_or(|n| n > MAX_NODES) {
            problems.push(format!(
                "anomaly.hst trees × 2^(height+1) must be at most {MAX_NODES} (trees {}, height {})",
                self.trees, self.height
            ));
        }
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            problems.push(format!(
                "anomaly.hst.threshold must be in (0, 1], not {}",
                self.threshold
            ));
        }
        problems
    }
}

impl Default for HstConfig {
    fn default() -> HstConfig {
        HstConfig {
            trees: 25,
            height: 8,
            window: 250,
            threshold: 0.9,
            seed: 1,
        }
    }
}

// === impl HalfSpaceTrees ===

impl HalfSpaceTrees {
    /// Trees over `limits` (one `(low, high)` range per numeric axis, model
    /// feature `indices[axis]` each), split with `fastrand` seeded by
    /// `config.seed`.
    pub fn new(
        config: &HstConfig,
        limits: &[(f64, f64)],
        indices: Vec<usize>,
    ) -> Result<HalfSpaceTrees, AnomalyError> {
        let mut rng = fastrand::Rng::with_seed(config.seed);
        HalfSpaceTrees::with_uniform(config, limits, indices, || rng.f64())
    }

    /// Like [`new`](Self::new), drawing split choices from `uniform`
    /// (numbers in [0, 1)) in River's order: for each node, depth first,
    /// one draw to pick the axis (`random.choices` weighted by range
    /// width) and one for the split point (`random.uniform`).
    ///
    /// `config.seed` is not used. A range of zero width is never split
    /// (its weight is 0, as in River); at least one must be wider.
    pub fn with_uniform(
        config: &HstConfig,
        limits: &[(f64, f64)],
        indices: Vec<usize>,
        uniform: impl FnMut() -> f64,
    ) -> Result<HalfSpaceTrees, AnomalyError> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(AnomalyError::Config(problems.join("; ")));
        }
        build::check_limits(limits)?;
        if indices.len() != limits.len() {
            return Err(AnomalyError::Shape {
                what: "feature indices",
                expected: limits.len(),
                got: indices.len(),
            });
        }
        let nodes = (1usize << (config.height + 1)) - 1;
        let internal = (1usize << config.height) - 1;
        let (split_axis, split_at) = build::splits(config.trees, config.height, limits, uniform);
        Ok(HalfSpaceTrees {
            indices,
            trees: config.trees,
            height: config.height,
            window: config.window,
            threshold: config.threshold,
            nodes,
            internal,
            split_axis,
            split_at,
            latest: vec![0; config.trees * nodes],
            reference: vec![0; config.trees * nodes],
            counter: 0,
            warm: false,
        })
    }

    /// Trees over the baseline's numeric features, with each feature's
    /// reference `(min, max)` as its limits, trained on the baseline's
    /// sample of complete `rows` in River's progressive order (score, then
    /// learn): with at least `window` rows the detector scores from the
    /// first live observation, its reference window drawn from the
    /// baseline.
    ///
    /// The threshold is then calibrated: River's normalisation puts
    /// ordinary rows high on the [0, 1] scale once trees are deep (with
    /// height 8 and limits at the data's range, a third of normal rows
    /// score above 0.9), so the configured threshold acts as a floor,
    /// raised to the [`CALIBRATION_QUANTILE`] of the scores the baseline
    /// rows got after the first window (when at least
    /// [`CALIBRATION_MIN_ROWS`] were scored). Reasons carry the threshold
    /// in force.
    pub fn from_baseline(
        baseline: &Baseline,
        config: &HstConfig,
    ) -> Result<HalfSpaceTrees, AnomalyError> {
        let axes = NumericAxes::from_baseline(baseline)?;
        let limits = axes
            .indices()
            .iter()
            .map(|&index| {
                let feature = &baseline.features[index];
                feature
                    .numeric
                    .as_ref()
                    .map(|profile| (profile.min, profile.max))
                    .ok_or_else(|| AnomalyError::Baseline {
                        detector: Detector::HalfSpaceTrees.label(),
                        why: format!("numeric feature '{}' has no profile", feature.name),
                    })
            })
            .collect::<Result<Vec<_>, AnomalyError>>()?;
        let mut trees = HalfSpaceTrees::new(config, &limits, axes.indices().to_vec())?;
        let mut scores = Vec::with_capacity(baseline.rows.len());
        for row in baseline.rows.iter().filter(|row| row.len() == limits.len()) {
            let warm = trees.is_warm();
            let score = trees.score_and_learn(row);
            if warm {
                scores.push(score);
            }
        }
        if scores.len() >= CALIBRATION_MIN_ROWS {
            scores.sort_by(f64::total_cmp);
            if let Some(q) = quantile(&scores, CALIBRATION_QUANTILE) {
                trees.threshold = trees.threshold.max(q);
            }
        }
        Ok(trees)
    }

    /// Whether a full window has been learned (before that every score is
    /// 0, as in River).
    pub fn is_warm(&self) -> bool {
        self.warm
    }

    /// The flagging threshold in force.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// Sets the flagging threshold (e.g. after a calibration of one's own).
    pub fn set_threshold(&mut self, threshold: f64) {
        self.threshold = threshold;
    }

    /// The anomaly score of a numeric row in [0, 1] (River's `score_one`),
    /// without learning it. NaN values are missing. `row` holds one value
    /// per axis (a shorter row panics).
    pub fn score(&self, row: &[f64]) -> f64 {
        debug_assert_eq!(row.len(), self.indices.len());
        if !self.warm {
            return 0.0;
        }
        let size_limit = 0.1 * self.window as f64;
        let mut total = 0.0;
        for tree in 0..self.trees {
            total += self.walk_score(tree, row, size_limit);
        }
        let max_score = (self.trees * self.window * self.nodes) as f64;
        1.0 - total / max_score
    }

    /// Counts a numeric row into the latest window (River's `learn_one`),
    /// rolling the windows after every `window` rows.
    pub fn learn(&mut self, row: &[f64]) {
        debug_assert_eq!(row.len(), self.indices.len());
        for tree in 0..self.trees {
            let splits = tree * self.internal..(tree + 1) * self.internal;
            let (axes, at) = (&self.split_axis[splits.clone()], &self.split_at[splits]);
            let masses = &mut self.latest[tree * self.nodes..(tree + 1) * self.nodes];
            let mut node = 0;
            for _ in 0..self.height {
                masses[node] += 1;
                node = next(axes, at, node, row, masses);
            }
            masses[node] += 1;
        }
        self.count_row();
    }

    /// Counts a learned row, rolling the windows after every `window`.
    fn count_row(&mut self) {
        self.counter += 1;
        if self.counter == self.window {
            std::mem::swap(&mut self.latest, &mut self.reference);
            self.latest.fill(0);
            self.warm = true;
            self.counter = 0;
        }
    }

    /// Scores a row, then learns it (River's progressive order): the same
    /// result, bit for bit, as [`score`](Self::score) then
    /// [`learn`](Self::learn), in one walk down each tree, a few trees
    /// side by side.
    pub fn score_and_learn(&mut self, row: &[f64]) -> f64 {
        debug_assert_eq!(row.len(), self.indices.len());
        let size_limit = 0.1 * self.window as f64;
        let mut total = 0.0;
        let mut first = 0;
        while first < self.trees {
            let lanes = (self.trees - first).min(LANES);
            let scores = self.walk_lanes(first, lanes, row, size_limit);
            // Tree after tree, as `score` adds them.
            for score in &scores[..lanes] {
                total += score;
            }
            first += lanes;
        }
        let score = if self.warm {
            1.0 - total / (self.trees * self.window * self.nodes) as f64
        } else {
            0.0
        };
        self.count_row();
        score
    }

    /// Scores and learns a row; a reason (naming every numeric feature:
    /// the trees cannot tell which split isolated the row) when the score
    /// exceeds the threshold.
    pub fn check(&mut self, row: &[f64]) -> Option<Reason> {
        let score = self.score_and_learn(row);
        (score > self.threshold).then(|| Reason {
            detector: Detector::HalfSpaceTrees,
            features: self.indices.clone(),
            score,
            threshold: self.threshold,
        })
    }

    /// One tree's unnormalised score: `Σ reference · 2^depth` down the
    /// row's path, stopping below the first node lighter than `size_limit`.
    fn walk_score(&self, tree: usize, row: &[f64], size_limit: f64) -> f64 {
        let splits = tree * self.internal..(tree + 1) * self.internal;
        let (axes, at) = (&self.split_axis[splits.clone()], &self.split_at[splits]);
        let reference = &self.reference[tree * self.nodes..(tree + 1) * self.nodes];
        let latest = &self.latest[tree * self.nodes..(tree + 1) * self.nodes];
        let mut node = 0;
        let mut weight = 1.0;
        let mut score = 0.0;
        for _ in 0..self.height {
            let mass = f64::from(reference[node]);
            score += mass * weight;
            if mass < size_limit {
                return score;
            }
            node = next(axes, at, node, row, latest);
            weight *= 2.0;
        }
        score + f64::from(reference[node]) * weight
    }

    /// Scores and learns a row in trees `first..first + lanes` (`lanes ≤
    /// LANES`), one walk each, the trees walked side by side a level at a
    /// time; returns each tree's unnormalised score.
    ///
    /// One walk serves both: a missing value is routed by its children's
    /// latest masses, which this row has not reached yet when it leaves
    /// their parent, so learning takes the path scoring takes; and scoring
    /// reads only the reference masses, which learning leaves alone. Each
    /// tree's score adds the same terms in the same order as
    /// [`walk_score`](Self::walk_score), so it is the same number.
    ///
    /// Why side by side: a walk is a chain of dependent loads (node → split
    /// axis → value → comparison → child), and walking several trees at
    /// once gives the processor independent chains to overlap. The child is
    /// computed, not branched to, as the side a row takes is a coin flip to
    /// the branch predictor. Together with the single walk this took the
    /// defaults (25 trees of height 8) from about 1.1 µs to 0.54 µs a row
    /// (BENCHMARKS.md).
    fn walk_lanes(
        &mut self,
        first: usize,
        lanes: usize,
        row: &[f64],
        size_limit: f64,
    ) -> [f64; LANES] {
        let mut node = [0usize; LANES];
        let mut score = [0.0; LANES];
        let mut scoring = [true; LANES];
        let mut weight = 1.0;
        for _ in 0..self.height {
            for k in 0..lanes {
                let tree = first + k;
                let base = tree * self.nodes;
                let n = node[k];
                self.latest[base + n] += 1;
                if scoring[k] {
                    let mass = f64::from(self.reference[base + n]);
                    score[k] += mass * weight;
                    scoring[k] = mass >= size_limit;
                }
                let split = tree * self.internal + n;
                let x = row[self.split_axis[split] as usize];
                let left = 2 * n + 1;
                node[k] = if x.is_nan() {
                    left + usize::from(self.latest[base + left] < self.latest[base + left + 1])
                } else {
                    left + usize::from(x >= self.split_at[split])
                };
            }
            weight *= 2.0;
        }
        for k in 0..lanes {
            let index = (first + k) * self.nodes + node[k];
            self.latest[index] += 1;
            if scoring[k] {
                score[k] += f64::from(self.reference[index]) * weight;
            }
        }
        score
    }
}

/// The child of internal `node` (of one tree, whose split `axes` and split
/// points `at` are given) that `row` goes to: left when its value on the
/// split axis is below the split point; when the value is missing (NaN),
/// the child with the larger `latest` mass (left on a tie), as River does.
#[inline]
fn next(axes: &[u32], at: &[f64], node: usize, row: &[f64], latest: &[u32]) -> usize {
    let (left, right) = (2 * node + 1, 2 * node + 2);
    let x = row[axes[node] as usize];
    if x.is_nan() {
        if latest[left] < latest[right] {
            right
        } else {
            left
        }
    } else {
        // Arithmetic rather than a branch: the side a row takes is a coin
        // flip to the branch predictor.
        left + usize::from(x >= at[node])
    }
}

#[cfg(test)]
mod tests;
