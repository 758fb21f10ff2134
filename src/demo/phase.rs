//! The demo's phases and the flowers each one draws. The traffic samples its
//! rows here, and so does the baseline, so that the baseline describes
//! exactly what the baseline phase sends.
//!
//! ```text
//! 0 ─────────── baseline ───────────┬──────────── drift ────────────► duration
//!   Fisher's three species, as is   │ the same flowers, read by a
//!                                   │ recalibrated measuring rig
//! ```

use std::f64::consts::TAU;
use std::time::Duration;

use super::model::FEATURES;

/// Measurements are positive; the Gaussian tails are not.
const MIN_MEASUREMENT: f64 = 0.1;

/// Mean and standard deviation per species of Fisher's measurements (cm),
/// in [`FEATURES`] order. Sampling features independently ignores their
/// correlation, which still looks like iris to the model and the detectors.
const SPECIES: [([f64; 4], [f64; 4]); 3] = [
    ([5.006, 3.428, 1.462, 0.246], [0.352, 0.379, 0.174, 0.105]),
    ([5.936, 2.770, 4.260, 1.326], [0.516, 0.314, 0.470, 0.198]),
    ([6.588, 2.974, 5.552, 2.026], [0.636, 0.322, 0.552, 0.275]),
];

/// A stretch of the run with its own input distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Phase {
    /// Shown in the live view.
    pub name: &'static str,
    /// Fraction of the run; the shares of all phases add up to 1.
    pub share: f64,
    /// Added to every sampled row (cm), in [`FEATURES`] order.
    pub shift: [f64; FEATURES.len()],
}

/// Flowers as Fisher measured them; the baseline is drawn from this phase.
pub const BASELINE: Phase = Phase {
    name: "baseline",
    share: 0.5,
    shift: [0.0; FEATURES.len()],
};

/// The same flowers after the measuring rig was recalibrated: petals read
/// 6.5 mm longer and sepals 3.5 mm narrower. That is +1.5σ and −1σ of the
/// within-species spread (pooled σ ≈ 0.43 cm and 0.34 cm): small enough to
/// pass a glance at the numbers, large enough to move predictions towards
/// virginica. Sepal length and petal width stay as they were, so the
/// detectors must tell the shifted features from the others.
pub const DRIFT: Phase = Phase {
    name: "drift",
    share: 0.5,
    shift: [0.0, -0.35, 0.65, 0.0],
};

/// The phases, in order.
pub const PHASES: [Phase; 2] = [BASELINE, DRIFT];

// === impl Phase ===

impl Phase {
    /// The shifted features as `name +0.65 cm`, for the banner.
    pub fn describe_shift(&self) -> Vec<String> {
        FEATURES
            .iter()
            .zip(self.shift)
            .filter(|(_, shift)| *shift != 0.0)
            .map(|(name, shift)| format!("{name} {shift:+} cm"))
            .collect()
    }
}

/// The phase in force after `elapsed` of a run lasting `total`.
pub fn phase_at(elapsed: Duration, total: Duration) -> &'static Phase {
    let fraction = elapsed.as_secs_f64() / total.as_secs_f64().max(f64::MIN_POSITIVE);
    let mut end = 0.0;
    for phase in &PHASES {
        end += phase.share;
        if fraction < end {
            return phase;
        }
    }
    &PHASES[PHASES.len() - 1]
}

/// When the first phase that shifts anything begins, in a run of `total`.
pub fn drift_start(total: Duration) -> Option<Duration> {
    let mut start = 0.0;
    for phase in &PHASES {
        if phase.shift.iter().any(|s| *s != 0.0) {
            return Some(total.mul_f64(start));
        }
        start += phase.share;
    }
    None
}

/// Draws one flower of `phase` into `row` (cleared first); returns its species.
pub fn sample_row(rng: &mut fastrand::Rng, phase: &Phase, row: &mut Vec<f64>) -> usize {
    let species = rng.usize(..SPECIES.len());
    sample_species(rng, phase, species, row);
    species
}

/// Draws one flower of `species` (an index into the model's classes) as
/// `phase` reads it into `row` (cleared first).
pub fn sample_species(rng: &mut fastrand::Rng, phase: &Phase, species: usize, row: &mut Vec<f64>) {
    let (mean, std_dev) = SPECIES[species % SPECIES.len()];
    row.clear();
    for f in 0..FEATURES.len() {
        let x = mean[f] + phase.shift[f] + std_dev[f] * standard_normal(rng);
        // Fisher measured to the millimetre; rounding keeps bodies short too.
        row.push((x.max(MIN_MEASUREMENT) * 10.0).round() / 10.0);
    }
}

/// Box-Muller; `1 - u` keeps the logarithm away from zero.
fn standard_normal(rng: &mut fastrand::Rng) -> f64 {
    let u = 1.0 - rng.f64();
    let v = rng.f64();
    (-2.0 * u.ln()).sqrt() * (TAU * v).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Per species and feature: the mean of `n` rows drawn from `phase`.
    fn means(phase: &Phase, n: usize) -> [[f64; 4]; 3] {
        let mut rng = fastrand::Rng::with_seed(1);
        let mut sums = [[0.0; 4]; 3];
        let mut counts = [0usize; 3];
        let mut row = Vec::new();
        for _ in 0..n {
            let species = sample_row(&mut rng, phase, &mut row);
            counts[species] += 1;
            for (sum, x) in sums[species].iter_mut().zip(&row) {
                assert!(*x >= MIN_MEASUREMENT);
                *sum += x;
            }
        }
        std::array::from_fn(|s| sums[s].map(|sum| sum / counts[s] as f64))
    }

    #[test]
    fn rows_look_like_their_species() {
        let means = means(&BASELINE, 6000);
        for (species, (mean, _)) in SPECIES.iter().enumerate() {
            for f in 0..4 {
                let sample_mean = means[species][f];
                assert!(
                    (sample_mean - mean[f]).abs() < 0.05,
                    "species {species} feature {f}: {sample_mean}"
                );
            }
        }
    }

    #[test]
    fn the_drift_phase_shifts_only_its_features() {
        let (before, after) = (means(&BASELINE, 6000), means(&DRIFT, 6000));
        for species in 0..3 {
            for f in 0..4 {
                let moved = after[species][f] - before[species][f];
                // Same seed, same flowers: only the shift (and rounding) differs.
                assert!(
                    (moved - DRIFT.shift[f]).abs() < 0.02,
                    "{species} {f}: {moved}"
                );
            }
        }
        assert_eq!(
            DRIFT.describe_shift(),
            ["sepal_width -0.35 cm", "petal_length +0.65 cm"]
        );
        assert!(BASELINE.describe_shift().is_empty());
    }

    #[test]
    fn the_run_starts_in_the_baseline_and_ends_drifted() {
        let total = Duration::from_secs(30);
        assert_eq!(phase_at(Duration::ZERO, total).name, "baseline");
        assert_eq!(phase_at(Duration::from_secs(14), total).name, "baseline");
        assert_eq!(phase_at(Duration::from_secs(15), total).name, "drift");
        assert_eq!(phase_at(total, total).name, "drift");
        assert_eq!(drift_start(total), Some(Duration::from_secs(15)));
        let shares: f64 = PHASES.iter().map(|p| p.share).sum();
        assert!((shares - 1.0).abs() < 1e-9);
    }
}
