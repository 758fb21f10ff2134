//! Rows no real flower gives, which the traffic injects now and then for
//! the anomaly detectors to catch: one request in [`EVERY`] carries one.
//!
//! - a **typo**: a flower with a sepal measured in millimetres, ten times
//!   too large. Far outside the baseline on one feature: the robust
//!   z-score names it, and the Mahalanobis distance is huge. (Not a petal:
//!   ten times a setosa's petal width is a virginica's.)
//! - a **chimera**: a virginica with a setosa's petal width. Each value is
//!   ordinary on its own, so no robust z-score notices; but petal length
//!   and width rise together from species to species, and the Mahalanobis
//!   distance sees the pair break that (99% of them; a small virginica
//!   with a wide setosa petal can pass for an odd versicolor).
//!
//! Injected requests carry their kind at the end of their request id
//! (`demo-3-125-typo`), so they can be told apart in `/v1/anomalies` and
//! in the summary. They get no ground-truth label: a chimera has no
//! species, and the accuracy the demo shows is the model's on flowers.

use super::model::FEATURES;
use super::phase::{self, Phase};
use super::traffic::CLIENTS;

/// One request in this many, per client, carries an injected row: 1% of
/// the traffic, about two a second.
pub const EVERY: u64 = 100;
/// The sepal features come first in the feature order, then petal length
/// and width.
const SEPALS: usize = 2;
const PETAL_WIDTH: usize = 3;
/// Species, as class indices.
const SETOSA: usize = 0;
const VIRGINICA: usize = 2;

/// A kind of injected row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outlier {
    /// A sepal measurement ten times too large.
    Typo,
    /// A virginica with a setosa's petal width.
    Chimera,
}

// === impl Outlier ===

impl Outlier {
    /// Every kind, in the order the summary lists them.
    pub const ALL: [Outlier; 2] = [Outlier::Typo, Outlier::Chimera];

    /// The request id suffix and the summary's name.
    pub fn name(self) -> &'static str {
        match self {
            Outlier::Typo => "typo",
            Outlier::Chimera => "chimera",
        }
    }

    /// What the row is, for the summary.
    pub fn describe(self) -> &'static str {
        match self {
            Outlier::Typo => "a sepal measured in mm, 10x too large",
            Outlier::Chimera => "a virginica with a setosa's petal width",
        }
    }

    /// The kind of row client `client` injects as its `sequence`-th request,
    /// if any. Each client starts a quarter of [`EVERY`] in, and later
    /// clients later still, so the outliers spread out over the run rather
    /// than arriving eight at a time; the kinds alternate.
    pub fn scheduled(client: usize, sequence: u64) -> Option<Outlier> {
        let offset = EVERY / 4 + client as u64 * EVERY / (2 * CLIENTS as u64);
        let since = sequence.checked_sub(offset)?;
        if since % EVERY != 0 {
            return None;
        }
        let round = (since / EVERY) as usize;
        Some(Outlier::ALL[(round + client) % Outlier::ALL.len()])
    }

    /// The kind named at the end of `request_id`, if it was injected.
    pub fn from_request_id(request_id: &str) -> Option<Outlier> {
        let (_, suffix) = request_id.rsplit_once('-')?;
        Outlier::ALL.into_iter().find(|o| o.name() == suffix)
    }

    /// Draws a row of this kind, as the measuring rig of `phase` reads it,
    /// into `row`.
    pub fn sample(self, rng: &mut fastrand::Rng, phase: &Phase, row: &mut Vec<f64>) {
        match self {
            Outlier::Typo => {
                phase::sample_row(rng, phase, row);
                row[rng.usize(..SEPALS)] *= 10.0;
            }
            Outlier::Chimera => {
                let mut setosa = Vec::with_capacity(FEATURES.len());
                phase::sample_species(rng, phase, VIRGINICA, row);
                phase::sample_species(rng, phase, SETOSA, &mut setosa);
                row[PETAL_WIDTH] = setosa[PETAL_WIDTH];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::time::SystemTime;

    use super::*;
    use crate::demo::baseline;
    use crate::demo::phase::{BASELINE, DRIFT};
    use crate::detect::anomaly::{AnomalyConfig, AnomalyDetectors, Detector, Verdict};
    use crate::observation::{FeatureValue, Observation};

    #[test]
    fn one_request_in_every_hundred_alternating_kinds() {
        for client in 0..CLIENTS {
            let injected: Vec<(u64, Outlier)> = (0..1000)
                .filter_map(|s| Some((s, Outlier::scheduled(client, s)?)))
                .collect();
            assert_eq!(injected.len(), 10, "client {client}");
            assert!((EVERY / 4..3 * EVERY / 4).contains(&injected[0].0));
            assert_ne!(injected[0].1, injected[1].1);
        }
        // The clients' first outliers come at different times.
        let firsts: std::collections::HashSet<u64> = (0..CLIENTS)
            .map(|c| {
                (0..)
                    .find(|&s| Outlier::scheduled(c, s).is_some())
                    .unwrap_or(0)
            })
            .collect();
        assert_eq!(firsts.len(), CLIENTS);
    }

    #[test]
    fn the_kind_is_read_back_from_the_request_id() {
        assert_eq!(
            Outlier::from_request_id("demo-3-125-typo"),
            Some(Outlier::Typo)
        );
        assert_eq!(
            Outlier::from_request_id("demo-0-25-chimera"),
            Some(Outlier::Chimera)
        );
        assert_eq!(Outlier::from_request_id("demo-3-125"), None);
        assert_eq!(Outlier::from_request_id("typo"), None);
    }

    /// How often each detector flags `n` rows of `kind` (or ordinary
    /// flowers for `None`) drawn from `phase`, checked against the demo's
    /// baseline with the default settings, as the demo's sidecar does.
    fn flag_rates(kind: Option<Outlier>, phase: &Phase, n: usize) -> HashMap<Detector, f64> {
        let baseline = baseline::build().expect("baseline");
        let mut detectors = AnomalyDetectors::from_baseline(&baseline, &AnomalyConfig::default())
            .expect("detectors");
        let mut rng = fastrand::Rng::with_seed(5);
        let mut row = Vec::new();
        let mut verdict = Verdict::new();
        let mut counts = HashMap::new();
        for _ in 0..n {
            match kind {
                Some(kind) => kind.sample(&mut rng, phase, &mut row),
                None => {
                    phase::sample_row(&mut rng, phase, &mut row);
                }
            }
            let observation = Observation {
                model: Arc::from("iris"),
                version: None,
                time: SystemTime::UNIX_EPOCH,
                request_id: Arc::from("r"),
                exchange: 0,
                row: 0,
                features: row.iter().map(|&x| FeatureValue::Number(x)).collect(),
                prediction: None,
            };
            verdict.clear();
            detectors.check(&observation, &mut verdict);
            for reason in &verdict.reasons {
                *counts.entry(reason.detector).or_insert(0usize) += 1;
            }
        }
        counts
            .into_iter()
            .map(|(detector, count)| (detector, count as f64 / n as f64))
            .collect()
    }

    #[test]
    fn typos_are_caught_by_the_robust_z_score_and_chimeras_by_mahalanobis() {
        for phase in [&BASELINE, &DRIFT] {
            let typos = flag_rates(Some(Outlier::Typo), phase, 2000);
            assert_eq!(typos.get(&Detector::RobustZ), Some(&1.0), "{typos:?}");
            assert_eq!(typos.get(&Detector::Mahalanobis), Some(&1.0), "{typos:?}");
            let chimeras = flag_rates(Some(Outlier::Chimera), phase, 2000);
            // 99.0% and 99.9% with this seed: a small virginica with a
            // wide setosa petal can pass for an odd versicolor.
            let caught = chimeras.get(&Detector::Mahalanobis).copied().unwrap_or(0.0);
            assert!(caught > 0.98, "{chimeras:?}");
            let robust_z = chimeras.get(&Detector::RobustZ).copied().unwrap_or(0.0);
            assert!(robust_z < 0.01, "each value looks ordinary: {chimeras:?}");
        }
        // Ordinary flowers of the baseline phase: rarely, at about the
        // configured rates.
        let ordinary = flag_rates(None, &BASELINE, 5000);
        for detector in [Detector::RobustZ, Detector::Mahalanobis] {
            let rate = ordinary.get(&detector).copied().unwrap_or(0.0);
            assert!(rate < 0.01, "{detector:?}: {ordinary:?}");
        }
    }
}
