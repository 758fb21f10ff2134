//! Follows the iris model's drift verdicts while the demo runs: when each
//! feature (and the predictions) was first flagged, the last report that
//! evaluated the window, which the summary shows, when each concept-drift
//! detector fired, and the rolling accuracy of the labelled predictions.
//!
//! It reads what `/v1/drift` and `/v1/feedback` serve, from the monitor's
//! published reports and counters.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::monitor::report::ModelDrift;
use crate::monitor::stats::CONCEPT_DETECTORS;
use crate::monitor::{ModelFeedback, ModelStats, MonitorView};

use super::model::{FEATURES, MODEL_NAME};

/// How long [`DriftWatch::settle`] waits for the shard to take the last rows.
const CATCH_UP: Duration = Duration::from_secs(2);

/// The iris model's verdicts over the run.
#[derive(Debug)]
pub struct DriftWatch {
    stats: Arc<ModelStats>,
    /// When the drift phase begins, if it is part of the run.
    drift_start: Option<Duration>,
    /// The report last read, so that each evaluation is read once.
    seen: Option<Arc<ModelDrift>>,
    /// Per feature, in [`FEATURES`] order.
    features: [FirstFlag; FEATURES.len()],
    prediction: FirstFlag,
    /// The newest report that evaluated the window. Once the traffic stops
    /// the window empties and the latest report only says so.
    last_evaluated: Option<Arc<ModelDrift>>,
    /// Per concept detector, in [`CONCEPT_DETECTORS`] order.
    concept: [ConceptFlag; CONCEPT_DETECTORS.len()],
    /// The labels' side; `None` when feedback is off.
    feedback: Option<Arc<ModelFeedback>>,
    /// The rolling accuracy as last read before the drift phase began.
    accuracy_before_drift: Option<f64>,
}

/// A concept-drift detector's events over the run.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ConceptFlag {
    /// When it first fired, on either side of the drift phase's start.
    pub first: FirstFlag,
    /// Events so far.
    pub events: u64,
}

/// When something was first flagged as drifted, on either side of the
/// start of the drift phase.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FirstFlag {
    /// During the baseline phase (a false alarm), since the run began.
    pub before: Option<Duration>,
    /// During the drift phase, since that phase began.
    pub after: Option<Duration>,
}

// === impl DriftWatch ===

impl DriftWatch {
    /// Watches the demo model in `monitor`; `drift_start` as in
    /// [`phase::drift_start`](super::phase::drift_start).
    pub fn new(monitor: &MonitorView, drift_start: Option<Duration>) -> Option<DriftWatch> {
        Some(DriftWatch {
            stats: monitor.model(MODEL_NAME)?.clone(),
            drift_start,
            seen: None,
            features: [FirstFlag::default(); FEATURES.len()],
            prediction: FirstFlag::default(),
            last_evaluated: None,
            concept: [ConceptFlag::default(); CONCEPT_DETECTORS.len()],
            feedback: monitor
                .feedback()
                .and_then(|hub| hub.model(MODEL_NAME))
                .cloned(),
            accuracy_before_drift: None,
        })
    }

    /// Reads the concept detectors' counts, the accuracy, and the latest
    /// report if it is new; `elapsed` is the time since the traffic started.
    pub fn poll(&mut self, elapsed: Duration) {
        // Concept detectors count as they fire, not at each evaluation.
        for (i, flag) in self.concept.iter_mut().enumerate() {
            let events = self.stats.concept_drifts(i);
            if events > flag.events {
                flag.events = events;
                flag.first.record(elapsed, self.drift_start);
            }
        }
        if self.drift_start.is_none_or(|start| elapsed < start) {
            self.accuracy_before_drift = self.accuracy().or(self.accuracy_before_drift);
        }
        let report = self.stats.report();
        if self.seen.as_ref().is_some_and(|s| Arc::ptr_eq(s, &report)) {
            return;
        }
        self.seen = Some(report.clone());
        if !evaluated(&report) {
            return;
        }
        for feature in report.features.iter().filter(|f| f.drifted) {
            if let Some(i) = FEATURES.iter().position(|n| *n == feature.feature) {
                self.features[i].record(elapsed, self.drift_start);
            }
        }
        if report.prediction.drifted {
            self.prediction.record(elapsed, self.drift_start);
        }
        self.last_evaluated = Some(report);
    }

    /// After the traffic stopped: waits until the shard has taken `rows`
    /// observations and evaluated them once more (one `step` later), so the
    /// final report covers the last requests. Gives up after a while, as a
    /// decode error means some rows never arrive.
    pub async fn settle(&mut self, rows: u64, step: Duration, started: Instant) {
        let deadline = Instant::now() + CATCH_UP;
        while self.stats.observations() < rows && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let before = self.stats.report();
        let deadline = Instant::now() + step + CATCH_UP;
        while Arc::ptr_eq(&before, &self.stats.report()) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.poll(started.elapsed());
    }

    /// The latest report, evaluated or not.
    pub fn latest(&self) -> Arc<ModelDrift> {
        self.stats.report()
    }

    /// The newest report that evaluated the window.
    pub fn last_evaluated(&self) -> Option<&ModelDrift> {
        self.last_evaluated.as_deref()
    }

    /// The model's counters.
    pub fn stats(&self) -> &ModelStats {
        &self.stats
    }

    /// When the drift phase begins, if it is part of the run.
    pub fn drift_start(&self) -> Option<Duration> {
        self.drift_start
    }

    /// Each feature with when it was first flagged, in [`FEATURES`] order.
    pub fn features(&self) -> impl Iterator<Item = (&'static str, FirstFlag)> + '_ {
        FEATURES.iter().copied().zip(self.features.iter().copied())
    }

    /// When the predictions were first flagged.
    pub fn prediction(&self) -> FirstFlag {
        self.prediction
    }

    /// Each concept-drift detector with its events, in
    /// [`CONCEPT_DETECTORS`] order.
    pub fn concept(&self) -> impl Iterator<Item = (&'static str, ConceptFlag)> + '_ {
        CONCEPT_DETECTORS
            .iter()
            .copied()
            .zip(self.concept.iter().copied())
    }

    /// The rolling accuracy of the labelled predictions now, once any
    /// label was joined.
    pub fn accuracy(&self) -> Option<f64> {
        self.feedback.as_ref().and_then(|f| f.accuracy())
    }

    /// The rolling accuracy as it stood just before the drift phase.
    pub fn accuracy_before_drift(&self) -> Option<f64> {
        self.accuracy_before_drift
    }
}

/// Whether `report` tested the window. Below `min_samples`, or without a
/// ready baseline, a report may still list the features, but with no test
/// results and no verdict.
pub fn evaluated(report: &ModelDrift) -> bool {
    report.features.iter().any(|f| !f.methods.is_empty())
}

// === impl FirstFlag ===

impl FirstFlag {
    fn record(&mut self, elapsed: Duration, drift_start: Option<Duration>) {
        match drift_start {
            Some(start) if elapsed >= start => {
                self.after.get_or_insert(elapsed - start);
            }
            _ => {
                self.before.get_or_insert(elapsed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_timed_from_the_phase_they_fall_in() {
        let start = Some(Duration::from_secs(10));
        let mut flag = FirstFlag::default();
        flag.record(Duration::from_secs(3), start);
        flag.record(Duration::from_secs(4), start);
        flag.record(Duration::from_millis(11_500), start);
        flag.record(Duration::from_secs(12), start);
        assert_eq!(flag.before, Some(Duration::from_secs(3)));
        assert_eq!(flag.after, Some(Duration::from_millis(1500)));

        let mut unshifted_run = FirstFlag::default();
        unshifted_run.record(Duration::from_secs(20), None);
        assert_eq!(unshifted_run.before, Some(Duration::from_secs(20)));
        assert_eq!(unshifted_run.after, None);
    }
}
