//! What the shards conclude about each observation, handed on to whoever
//! subscribes (the alert engine, the audit writer): its anomaly reasons,
//! its validation violations and the model's drift state at the time.
//!
//! Subscribers get a bounded channel; shards `try_send` and count what a
//! full channel refuses in `sidewatch_verdicts_dropped_total`, so a slow
//! subscriber never holds up detection. With nobody subscribed a shard
//! checks one atomic per batch and builds nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use prometheus_client::encoding::DescriptorEncoder;

use super::report::{ConceptState, FlagReason, ModelDrift};
use super::validate::Violation;
use crate::detect::anomaly;
use crate::observation::{Observation, Prediction};

/// The verdict on one observation (one row of one request).
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The request's `x-request-id`.
    pub request_id: Arc<str>,
    /// The exchange's serial ([`Observation::exchange`]).
    pub exchange: u64,
    /// The row within the request's batch.
    pub row: u32,
    /// The model.
    pub model: Arc<str>,
    /// The model version, when the protocol carries one.
    pub version: Option<Arc<str>>,
    /// When the request arrived.
    pub time: SystemTime,
    /// The model's answer, when it was decoded.
    pub prediction: Option<Prediction>,
    /// Why anomaly detectors flagged it (empty: nothing did).
    pub anomalies: Vec<FlagReason>,
    /// Validation problems of its inputs (observe mode).
    pub violations: Vec<ViolationReport>,
    /// The model's drift state as of the latest evaluation.
    pub drift: Arc<DriftSummary>,
}

/// One validation problem of one input.
#[derive(Debug, Clone, PartialEq)]
pub struct ViolationReport {
    /// The feature, by name (empty for an input the model does not
    /// declare).
    pub feature: String,
    /// `missing`, `extra`, `wrong_type`, `non_finite`, `out_of_range` or
    /// `unknown_category`.
    pub kind: &'static str,
}

/// A model's drift state, summarised at each evaluation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DriftSummary {
    /// Whether the latest evaluation ran the tests (enough samples).
    pub evaluated: bool,
    /// RFC 3339 time of the latest evaluation.
    pub evaluated_at: Option<String>,
    /// Share of features flagged as drifted.
    pub drifted_share: f64,
    /// The drifted features, by name.
    pub drifted_features: Vec<String>,
    /// Whether the predictions drifted.
    pub prediction_drifted: bool,
    /// The concept-drift detectors (events, last event, DDM's warning).
    pub concept: Vec<ConceptState>,
}

/// Everyone receiving verdicts, shared by the shards.
#[derive(Debug, Default)]
pub struct Subscribers {
    senders: ArcSwap<Vec<Sender<Verdict>>>,
    /// How many senders there are, read once per batch by every shard.
    active: AtomicUsize,
    dropped: AtomicU64,
}

/// `sidewatch_verdicts_dropped_total`, encoded at scrape time.
#[derive(Debug, Clone)]
pub struct VerdictMetrics(pub Arc<Subscribers>);

// === impl Verdict ===

impl Verdict {
    /// The verdict on `observation` of `model`: its anomaly reasons and
    /// validation violations (features by index into `names`), `extra`
    /// undeclared inputs, and the model's drift state.
    pub fn new(
        observation: &Observation,
        model: &Arc<str>,
        names: &[String],
        anomaly: &anomaly::Verdict,
        violations: &[(usize, Violation)],
        extra: usize,
        drift: &Arc<DriftSummary>,
    ) -> Verdict {
        let name = |f: usize| names.get(f).cloned().unwrap_or_default();
        let violations = violations
            .iter()
            .map(|&(f, v)| ViolationReport {
                feature: name(f),
                kind: v.as_str(),
            })
            // Inputs the model does not declare have no feature name.
            .chain((0..extra).map(|_| ViolationReport {
                feature: String::new(),
                kind: Violation::Extra.as_str(),
            }))
            .collect();
        Verdict {
            request_id: observation.request_id.clone(),
            exchange: observation.exchange,
            row: observation.row,
            model: model.clone(),
            version: observation.version.clone(),
            time: observation.time,
            prediction: observation.prediction.clone(),
            anomalies: flag_reasons(anomaly, names),
            violations,
            drift: drift.clone(),
        }
    }
}

/// An anomaly verdict's reasons, with features by name.
pub fn flag_reasons(verdict: &anomaly::Verdict, names: &[String]) -> Vec<FlagReason> {
    verdict
        .reasons
        .iter()
        .map(|r| FlagReason {
            detector: r.detector.label(),
            features: r
                .features
                .iter()
                .filter_map(|&f| names.get(f).cloned())
                .collect(),
            score: r.score,
            threshold: r.threshold,
        })
        .collect()
}

// === impl DriftSummary ===

impl DriftSummary {
    /// The summary of an evaluation.
    pub fn from_report(report: &ModelDrift) -> DriftSummary {
        DriftSummary {
            evaluated: report.evaluated,
            evaluated_at: report.evaluated_at.clone(),
            drifted_share: report.drifted_share,
            drifted_features: report
                .features
                .iter()
                .filter(|f| f.drifted)
                .map(|f| f.feature.clone())
                .collect(),
            prediction_drifted: report.prediction.drifted,
            concept: report.concept.clone(),
        }
    }
}

// === impl Subscribers ===

impl Subscribers {
    /// A new subscriber, whose channel holds up to `capacity` verdicts
    /// (at least 1); past that, verdicts are dropped and counted.
    pub fn subscribe(&self, capacity: usize) -> Receiver<Verdict> {
        let (sender, receiver) = crossbeam_channel::bounded(capacity.max(1));
        self.senders.rcu(|senders| {
            let mut senders = Vec::clone(senders);
            senders.push(sender.clone());
            senders
        });
        self.active.fetch_add(1, Ordering::Release);
        receiver
    }

    /// Whether anyone listens; shards build verdicts only then.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire) > 0
    }

    /// Verdicts dropped because a subscriber's channel was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Hands a verdict to every subscriber without waiting; forgets the
    /// ones that went away.
    pub fn publish(&self, verdict: Verdict) {
        let senders = self.senders.load();
        let mut gone = Vec::new();
        let mut verdict = Some(verdict);
        for (i, sender) in senders.iter().enumerate() {
            let copy = if i + 1 == senders.len() {
                verdict.take()
            } else {
                verdict.clone()
            };
            let Some(copy) = copy else { break };
            match sender.try_send(copy) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Disconnected(_)) => gone.push(sender.clone()),
            }
        }
        if !gone.is_empty() {
            // The closure may run again if another shard prunes at the
            // same time; the count of its last (successful) run is kept.
            let mut removed = 0;
            self.senders.rcu(|senders| {
                let left: Vec<_> = senders
                    .iter()
                    .filter(|s| !gone.iter().any(|g| g.same_channel(s)))
                    .cloned()
                    .collect();
                removed = senders.len() - left.len();
                left
            });
            self.active.fetch_sub(removed, Ordering::AcqRel);
        }
    }
}

// === impl VerdictMetrics ===

impl prometheus_client::collector::Collector for VerdictMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        super::stats::counter(
            &mut encoder,
            "sidewatch_verdicts_dropped",
            "Observation verdicts a subscriber (alerts, audit) could not take because its queue was full.",
            std::iter::once((Vec::new(), self.0.dropped())),
        )
    }
}
