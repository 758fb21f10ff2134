//! Tallies the monitor's verdicts while the demo runs: how many rows each
//! anomaly detector flagged among the baseline phase's flowers, the drift
//! phase's and the injected outliers, with one example reason per detector.
//!
//! It subscribes to the verdicts (`MonitorView::subscribe`), as an alert
//! engine or an audit writer would, and drains them at every poll. The
//! example of each detector is the most extreme of the rows that show best
//! what the detector is for (see [`example_rank`]).

use std::time::{Duration, SystemTime};

use crossbeam_channel::Receiver;

use crate::monitor::report::FlagReason;
use crate::monitor::stats::ANOMALY_DETECTORS;
use crate::monitor::{MonitorView, Verdict};

use super::outlier::Outlier;

/// Verdicts the monitor may hold for the demo between two polls (about 25
/// at the demo's rate).
const CAPACITY: usize = 16_384;

/// Which rows a count is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Flowers sent during the baseline phase.
    Baseline,
    /// Flowers sent during the drift phase.
    Drift,
    /// Injected outliers, in either phase.
    Injected,
}

/// Rows seen and flagged in one [`Group`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Rows with a verdict.
    pub rows: u64,
    /// Rows flagged by any detector.
    pub flagged: u64,
    /// Rows flagged per detector, in [`ANOMALY_DETECTORS`] order.
    pub by_detector: [u64; ANOMALY_DETECTORS.len()],
}

/// One flagged row, shown as an example of a detector's reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The request's id (an injected one ends with its kind).
    pub request_id: String,
    /// The detector's reason.
    pub reason: FlagReason,
}

/// The verdicts seen so far.
#[derive(Debug)]
pub struct AnomalyTally {
    verdicts: Receiver<Verdict>,
    /// When the drift phase began, on the clock verdicts are stamped with.
    drift_start: Option<SystemTime>,
    /// Per [`Group`], in its declaration order.
    counts: [Counts; 3],
    /// Per detector, in [`ANOMALY_DETECTORS`] order.
    examples: [Option<Example>; ANOMALY_DETECTORS.len()],
}

// === impl Group ===

impl Group {
    /// Every group, in the order the summary shows them.
    pub const ALL: [Group; 3] = [Group::Baseline, Group::Drift, Group::Injected];

    fn index(self) -> usize {
        self as usize
    }
}

// === impl AnomalyTally ===

impl AnomalyTally {
    /// Subscribes to `monitor`'s verdicts. The run started at `started`
    /// and its drift phase begins `drift_start` later, if at all.
    pub fn new(
        monitor: &MonitorView,
        started: SystemTime,
        drift_start: Option<Duration>,
    ) -> AnomalyTally {
        AnomalyTally {
            verdicts: monitor.subscribe(CAPACITY),
            drift_start: drift_start.map(|d| started + d),
            counts: [Counts::default(); 3],
            examples: Default::default(),
        }
    }

    /// Takes every verdict waiting.
    pub fn drain(&mut self) {
        while let Ok(verdict) = self.verdicts.try_recv() {
            self.count(&verdict);
        }
    }

    /// The counts of `group`.
    pub fn counts(&self, group: Group) -> Counts {
        self.counts[group.index()]
    }

    /// Rows flagged by any detector, over every group.
    pub fn flagged(&self) -> u64 {
        self.counts.iter().map(|c| c.flagged).sum()
    }

    /// An example reason of `detector` (an [`ANOMALY_DETECTORS`] name).
    pub fn example(&self, detector: &str) -> Option<&Example> {
        let i = ANOMALY_DETECTORS.iter().position(|d| *d == detector)?;
        self.examples[i].as_ref()
    }

    fn count(&mut self, verdict: &Verdict) {
        let outlier = Outlier::from_request_id(&verdict.request_id);
        let group = match (outlier, self.drift_start) {
            (Some(_), _) => Group::Injected,
            (None, Some(start)) if verdict.time >= start => Group::Drift,
            (None, _) => Group::Baseline,
        };
        let counts = &mut self.counts[group.index()];
        counts.rows += 1;
        if verdict.anomalies.is_empty() {
            return;
        }
        counts.flagged += 1;
        for reason in &verdict.anomalies {
            let Some(i) = ANOMALY_DETECTORS.iter().position(|d| *d == reason.detector) else {
                continue;
            };
            counts.by_detector[i] += 1;
            let rank = example_rank(reason.detector, outlier);
            let better = self.examples[i].as_ref().is_none_or(|old| {
                let old_rank = example_rank(
                    old.reason.detector,
                    Outlier::from_request_id(&old.request_id),
                );
                rank > old_rank || (rank == old_rank && further(reason, &old.reason))
            });
            if better {
                self.examples[i] = Some(Example {
                    request_id: verdict.request_id.to_string(),
                    reason: reason.clone(),
                });
            }
        }
    }
}

/// Whether `new` is further past its threshold than `old` (same detector).
fn further(new: &FlagReason, old: &FlagReason) -> bool {
    if new.detector == "low_confidence" {
        new.score < old.score
    } else {
        new.score > old.score
    }
}

/// How well a row flagged by `detector` shows what the detector is for:
/// a typo for the robust z-score, a chimera for Mahalanobis (what each was
/// injected to show), an ordinary flower for the others (the trees and the
/// confidence checks flag real traffic, and that is worth seeing).
fn example_rank(detector: &str, outlier: Option<Outlier>) -> u8 {
    let wanted = match detector {
        "robust_z" => Some(Outlier::Typo),
        "mahalanobis" => Some(Outlier::Chimera),
        _ => None,
    };
    match (wanted, outlier) {
        (wanted, outlier) if wanted == outlier => 2,
        (Some(_), Some(_)) => 1,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::monitor::DriftSummary;

    /// A verdict whose reasons all score `at / 10`.
    fn verdict(id: &str, at: u64, detectors: &[&'static str]) -> Verdict {
        Verdict {
            request_id: Arc::from(id),
            exchange: 0,
            row: 0,
            model: Arc::from("iris"),
            version: None,
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(at),
            prediction: None,
            anomalies: detectors
                .iter()
                .map(|d| FlagReason {
                    detector: d,
                    features: Vec::new(),
                    score: at as f64 / 10.0,
                    threshold: 4.0,
                })
                .collect(),
            violations: Vec::new(),
            drift: Arc::new(DriftSummary::default()),
        }
    }

    #[test]
    fn rows_are_counted_by_phase_and_injection_with_telling_examples() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut tally = AnomalyTally {
            verdicts: rx,
            drift_start: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(10)),
            counts: [Counts::default(); 3],
            examples: Default::default(),
        };
        for v in [
            verdict("demo-0-1", 1, &[]),
            verdict("demo-0-2", 2, &["robust_z", "low_confidence"]),
            verdict("demo-0-3", 11, &["mahalanobis"]),
            verdict("demo-0-4", 12, &[]),
            verdict("demo-0-5-typo", 3, &["robust_z", "mahalanobis"]),
            verdict("demo-0-6-chimera", 12, &["mahalanobis"]),
            verdict("demo-0-7-typo", 13, &["robust_z"]),
            verdict("demo-0-8", 14, &["low_confidence"]),
        ] {
            let _ = tx.send(v);
        }
        tally.drain();
        let baseline = tally.counts(Group::Baseline);
        assert_eq!((baseline.rows, baseline.flagged), (2, 1));
        assert_eq!(baseline.by_detector, [1, 0, 0, 1, 0]);
        let drift = tally.counts(Group::Drift);
        assert_eq!((drift.rows, drift.flagged), (3, 2));
        assert_eq!(drift.by_detector, [0, 1, 0, 1, 0]);
        let injected = tally.counts(Group::Injected);
        assert_eq!((injected.rows, injected.flagged), (3, 3));
        assert_eq!(injected.by_detector, [2, 2, 0, 0, 0]);
        assert_eq!(tally.flagged(), 6);

        let example = |d| tally.example(d).map(|e| e.request_id.as_str());
        assert_eq!(
            example("robust_z"),
            Some("demo-0-7-typo"),
            "the furthest typo"
        );
        assert_eq!(example("mahalanobis"), Some("demo-0-6-chimera"));
        assert_eq!(
            example("low_confidence"),
            Some("demo-0-2"),
            "the least confident"
        );
        assert_eq!(example("half_space_trees"), None);
    }
}
