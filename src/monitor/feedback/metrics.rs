//! The feedback metrics, encoded at scrape time from atomics (a scrape
//! takes no lock).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::encoding::DescriptorEncoder;

use super::{DDM, FeedbackHub, ModelFeedback, RESULTS, count};
use crate::monitor::stats::{CONCEPT_DETECTORS, counter, gauge};

/// `sidewatch_feedback_total`, `_accuracy`, `_mae`, `_pending` and
/// `sidewatch_concept_warning`.
#[derive(Debug, Clone)]
pub struct FeedbackMetrics(pub Arc<FeedbackHub>);

// === impl FeedbackMetrics ===

impl prometheus_client::collector::Collector for FeedbackMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let hub = &*self.0;
        let m = |f: &ModelFeedback| ("model", f.name().to_string());
        let unattributed = RESULTS.iter().map(|r| {
            (
                vec![("model", "unknown".to_owned()), ("result", (*r).to_owned())],
                count(&hub.unattributed, r),
            )
        });
        counter(
            &mut encoder,
            "sidewatch_feedback",
            "Ground-truth feedback items, by result (joined, unknown, expired, invalid, duplicate); model=\"unknown\" when no model matched.",
            hub.models
                .iter()
                .flat_map(|f| {
                    RESULTS
                        .iter()
                        .map(move |r| (vec![m(f), ("result", (*r).to_owned())], f.results(r)))
                })
                .chain(unattributed),
        )?;
        gauge(
            &mut encoder,
            "sidewatch_feedback_accuracy",
            "Share of correct predictions over the last feedback.window joined labels.",
            hub.models
                .iter()
                .filter_map(|f| Some((vec![m(f)], f.accuracy()?))),
        )?;
        gauge(
            &mut encoder,
            "sidewatch_feedback_mae",
            "Mean absolute error over the last feedback.window joined regression values.",
            hub.models
                .iter()
                .filter_map(|f| Some((vec![m(f)], f.mae()?))),
        )?;
        gauge(
            &mut encoder,
            "sidewatch_feedback_pending",
            "Predictions awaiting ground-truth feedback.",
            hub.models
                .iter()
                .map(|f| (vec![m(f)], f.pending.load(Ordering::Relaxed) as f64)),
        )?;
        gauge(
            &mut encoder,
            "sidewatch_concept_warning",
            "1 while a concept-drift detector with a warning level (ddm) is in its warning zone.",
            hub.models.iter().map(|f| {
                (
                    vec![m(f), ("detector", CONCEPT_DETECTORS[DDM].to_owned())],
                    if f.ddm().warning { 1.0 } else { 0.0 },
                )
            }),
        )
    }
}
