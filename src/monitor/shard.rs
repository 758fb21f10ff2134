//! A model's shard: the one thread that owns the model's window, baseline
//! and detectors (single writer, no locks on the update path but the
//! feedback join store's, taken once per batch: see `feedback.rs`).
//! Decoded batches arrive on a bounded channel; every `drift.step` the
//! shard evaluates its window and publishes the report.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::baseline::bin_index;
use crate::baseline::{Baseline, BaselineBuilder, BuildOptions, FeatureKind, LineageInputs};
use crate::config::{Drift, Validate};
use crate::detect::anomaly::{self, AnomalyConfig, AnomalyDetectors, Detector};
use crate::detect::concept::{Adwin, PageHinkley, Verdict};
use crate::observation::{FeatureValue, Observation};
use crate::window::{FeatureSpec, Window, WindowSpec};

use super::evaluate::{Multivariate, evaluate};
use super::feedback::{DDM, ModelFeedback};
use super::report::{ConceptState, FlaggedObservation, ModelDrift};
use super::stats::RECENT_ANOMALIES;
use super::stats::{FeatureLayout, ModelStats};
use super::validate::{self, Violation};
use super::verdict::{DriftSummary, Subscribers, flag_reasons};

/// The time source; tests pass a fake one.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// What the decoders send a shard.
#[derive(Debug)]
pub struct Batch {
    /// Observations of one exchange.
    pub observations: Vec<Observation>,
    /// Inputs the request carried that the model does not declare.
    pub extra: usize,
    /// The feature names the decoder used, sent until the shard has frozen
    /// its names (models configured without `features`).
    pub names: Option<Vec<String>>,
}

/// Where the shard's baseline stands.
pub enum BaselineState {
    /// No baseline configured: counters only.
    Missing,
    /// Learning is configured but the feature names are not known yet: they
    /// come from the first decoded request.
    AwaitingNames {
        /// Observations to learn from.
        target: u64,
        /// Where to persist the frozen baseline.
        save: Option<PathBuf>,
        /// Quantile bins per numeric feature.
        bins: usize,
    },
    /// Learning from the first live observations.
    Learning {
        /// Accumulates the profile.
        builder: Box<BaselineBuilder>,
        /// Observations to learn from.
        target: u64,
        /// Where to persist the frozen baseline.
        save: Option<PathBuf>,
    },
    /// Frozen and in use.
    Ready(Arc<Baseline>),
}

/// The shard's state, owned by its thread.
pub struct Shard {
    stats: Arc<ModelStats>,
    names: Vec<String>,
    /// Raised once `names` is final, so decoders stop sending theirs.
    names_frozen: Arc<std::sync::atomic::AtomicBool>,
    /// Configured categorical feature names, applied when names freeze late.
    categorical_names: Vec<String>,
    categorical: Vec<bool>,
    validate: Validate,
    settings: Drift,
    baseline: BaselineState,
    window: Option<Window>,
    /// Change detectors on the prediction scores (River's defaults).
    page_hinkley: PageHinkley,
    adwin: Adwin,
    /// When each concept detector last fired.
    concept_last: [Option<SystemTime>; 2],
    anomaly_config: AnomalyConfig,
    /// Per-request anomaly detectors, once a baseline is ready.
    anomaly: Option<AnomalyDetectors>,
    /// Multivariate drift detectors, fitted when the baseline is installed.
    multivariate: Multivariate,
    /// Reused for every observation's anomaly check.
    verdict: anomaly::Verdict,
    /// The latest flagged observations, newest last.
    recent: std::collections::VecDeque<FlaggedObservation>,
    /// Where predictions wait for their ground truth, when feedback is on.
    feedback: Option<Arc<ModelFeedback>>,
    /// Who receives a verdict per observation, if anyone.
    subscribers: Option<Arc<Subscribers>>,
    /// The drift state handed on with verdicts, as of the last evaluation.
    drift_summary: Arc<DriftSummary>,
    /// The current observation's violations, while someone subscribes.
    violations: Vec<(usize, Violation)>,
    clock: Clock,
}

impl Shard {
    /// A shard for a model with known feature names.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        stats: Arc<ModelStats>,
        names: Vec<String>,
        names_frozen: Arc<std::sync::atomic::AtomicBool>,
        categorical_names: Vec<String>,
        validate: Validate,
        settings: Drift,
        anomaly_config: AnomalyConfig,
        baseline: BaselineState,
        clock: Clock,
    ) -> Self {
        let categorical = names
            .iter()
            .map(|n| categorical_names.contains(n))
            .collect();
        names_frozen.store(!names.is_empty(), std::sync::atomic::Ordering::Release);
        let mut shard = Shard {
            stats,
            names,
            names_frozen,
            categorical_names,
            categorical,
            validate,
            settings,
            baseline: BaselineState::Missing,
            window: None,
            page_hinkley: PageHinkley::default(),
            adwin: Adwin::default(),
            concept_last: [None; 2],
            anomaly_config,
            anomaly: None,
            multivariate: Multivariate::Off,
            verdict: anomaly::Verdict::new(),
            recent: std::collections::VecDeque::with_capacity(RECENT_ANOMALIES),
            feedback: None,
            subscribers: None,
            drift_summary: Arc::default(),
            violations: Vec::new(),
            clock,
        };
        shard.install(baseline);
        // Verdicts before the first evaluation still list the detectors.
        shard.drift_summary = Arc::new(DriftSummary {
            concept: shard.concept_states(),
            ..DriftSummary::default()
        });
        shard
    }

    /// Records each decoded prediction in `feedback`'s join store.
    pub fn with_feedback(mut self, feedback: Arc<ModelFeedback>) -> Self {
        self.feedback = Some(feedback);
        self.drift_summary = Arc::new(DriftSummary {
            concept: self.concept_states(),
            ..DriftSummary::default()
        });
        self
    }

    /// Hands a [`Verdict`](super::Verdict) per observation to
    /// `subscribers` while any listen.
    pub fn with_subscribers(mut self, subscribers: Arc<Subscribers>) -> Self {
        self.subscribers = Some(subscribers);
        self
    }

    /// Runs until every sender is gone, evaluating every `drift.step`.
    pub fn run(mut self, batches: Receiver<Batch>) {
        let step = self.settings.step;
        let mut next = (self.clock)() + step;
        loop {
            let now = (self.clock)();
            let wait = next.duration_since(now).unwrap_or(Duration::ZERO);
            match batches.recv_timeout(wait.min(Duration::from_millis(100))) {
                Ok(batch) => self.observe(batch),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let now = (self.clock)();
            if now >= next {
                self.evaluate(now);
                next = now + step;
            }
        }
        self.evaluate((self.clock)());
    }

    /// Takes one decoded exchange.
    pub fn observe(&mut self, batch: Batch) {
        if self.names.is_empty()
            && let Some(names) = batch.names.filter(|n| !n.is_empty())
        {
            self.freeze_names(names);
        }
        // Before the count: a client that saw the observation counted may
        // post its feedback at once.
        if let Some(feedback) = &self.feedback {
            feedback.record(&batch.observations);
        }
        self.stats
            .count_observations(batch.observations.len() as u64);
        let subscribed = self.subscribers.as_ref().is_some_and(|s| s.is_active());
        let layout = self.stats.layout();
        if batch.extra > 0
            && self.validate == Validate::Observe
            && let Some(layout) = &layout
        {
            // Extra inputs belong to no feature; they are counted on the first.
            for _ in 0..batch.extra {
                layout.count_violation(0, Violation::Extra);
            }
        }
        let mut flagged = false;
        for observation in &batch.observations {
            if let Some(class) = observation.prediction.as_ref().and_then(|p| p.class) {
                self.stats.count_prediction(class);
            }
            if let Some(score) = observation.prediction.as_ref().and_then(|p| p.score) {
                let verdicts = [self.page_hinkley.update(score), self.adwin.update(score)];
                for (i, verdict) in verdicts.into_iter().enumerate() {
                    if verdict == Verdict::Drift {
                        self.stats.count_concept_drift(i);
                        self.concept_last[i] = Some(observation.time);
                    }
                }
            }
            let baseline = match &self.baseline {
                BaselineState::Ready(b) => Some(&**b),
                _ => None,
            };
            self.violations.clear();
            if self.validate == Validate::Observe
                && let Some(layout) = &layout
            {
                let violations = &mut self.violations;
                validate::check(observation, baseline, &self.categorical, |f, v| {
                    layout.count_violation(f, v);
                    if subscribed {
                        violations.push((f, v));
                    }
                });
            }
            self.verdict.clear();
            match &mut self.baseline {
                BaselineState::Learning {
                    builder, target, ..
                } => {
                    builder.add_row(&observation.features, observation.prediction.as_ref());
                    if builder.len() as u64 >= *target {
                        self.freeze();
                    }
                }
                BaselineState::Ready(baseline) => {
                    if let Some(detectors) = &mut self.anomaly {
                        detectors.check(observation, &mut self.verdict);
                        for detector in Detector::ALL {
                            if let Some(score) = self.verdict.score(detector) {
                                self.stats.scores.observe(detector, score);
                            }
                        }
                        if self.verdict.is_anomalous() {
                            flagged = true;
                            for reason in &self.verdict.reasons {
                                self.stats.count_anomaly(reason.detector.label());
                            }
                            if self.recent.len() == RECENT_ANOMALIES {
                                self.recent.pop_front();
                            }
                            self.recent.push_back(FlaggedObservation {
                                request_id: observation.request_id.to_string(),
                                row: observation.row,
                                time: rfc3339(observation.time),
                                reasons: flag_reasons(&self.verdict, &self.names),
                            });
                        }
                    }
                    if let (Some(window), Some(layout)) = (&mut self.window, &layout) {
                        window.observe(unix_ms(observation.time), observation);
                        for (i, (value, profile)) in observation
                            .features
                            .iter()
                            .zip(&baseline.features)
                            .enumerate()
                        {
                            if let (FeatureValue::Number(x), Some(numeric)) =
                                (value, &profile.numeric)
                                && let Some(bin) = bin_index(&numeric.edges, *x)
                                && x.is_finite()
                            {
                                layout.count_bin(i, bin);
                            }
                        }
                    }
                }
                BaselineState::Missing | BaselineState::AwaitingNames { .. } => {}
            }
            if subscribed {
                self.hand_on(observation, batch.extra);
            }
        }
        if flagged {
            self.stats
                .publish_anomalies(self.recent.iter().cloned().collect());
        }
    }

    /// Evaluates the window as of `now` and publishes the report.
    pub fn evaluate(&mut self, now: SystemTime) {
        let mut report = match (&self.baseline, &mut self.window) {
            (BaselineState::Ready(baseline), Some(window)) => {
                window.advance(unix_ms(now));
                evaluate(
                    baseline,
                    &window.summary(),
                    &self.settings,
                    &self.multivariate,
                    rfc3339(now),
                )
            }
            (
                BaselineState::Learning {
                    builder, target, ..
                },
                _,
            ) => ModelDrift {
                model: self.stats.name.to_string(),
                baseline: "learning",
                note: Some(format!(
                    "learning the baseline: {} of {target} observations",
                    builder.len()
                )),
                ..ModelDrift::default()
            },
            _ => ModelDrift {
                model: self.stats.name.to_string(),
                baseline: "missing",
                note: Some("no baseline configured for this model".into()),
                ..ModelDrift::default()
            },
        };
        report.concept = self.concept_states();
        self.drift_summary = Arc::new(DriftSummary::from_report(&report));
        self.stats.publish(report);
    }

    /// Every concept detector's events so far.
    fn concept_states(&self) -> Vec<ConceptState> {
        let ddm = self.feedback.as_ref().map(|f| f.ddm());
        super::stats::CONCEPT_DETECTORS
            .iter()
            .enumerate()
            .map(|(i, detector)| ConceptState {
                detector,
                events: self.stats.concept_drifts(i),
                last_event_at: match self.concept_last.get(i) {
                    Some(last) => last.map(rfc3339),
                    None => ddm.and_then(|d| d.last_drift).map(rfc3339),
                },
                warning: (i == DDM).then(|| ddm.is_some_and(|d| d.warning)),
            })
            .collect()
    }

    /// Builds the current observation's verdict and hands it to the
    /// subscribers (only called while someone subscribes).
    fn hand_on(&self, observation: &Observation, extra: usize) {
        if let Some(subscribers) = &self.subscribers {
            let extra = if self.validate == Validate::Observe {
                extra
            } else {
                0
            };
            subscribers.publish(super::Verdict::new(
                observation,
                &self.stats.name,
                &self.names,
                &self.verdict,
                &self.violations,
                extra,
                &self.drift_summary,
            ));
        }
    }

    fn freeze_names(&mut self, names: Vec<String>) {
        tracing::info!(model = %self.stats.name, features = ?names, "Feature names taken from the first request.");
        self.categorical = names
            .iter()
            .map(|n| self.categorical_names.contains(n))
            .collect();
        self.names = names;
        self.names_frozen
            .store(true, std::sync::atomic::Ordering::Release);
        let baseline = match std::mem::replace(&mut self.baseline, BaselineState::Missing) {
            BaselineState::AwaitingNames { target, save, bins } => learning(
                &self.stats.name,
                &self.names,
                &self.categorical,
                target,
                save,
                bins,
            ),
            other => other,
        };
        self.install(baseline);
    }

    fn freeze(&mut self) {
        let BaselineState::Learning { builder, save, .. } =
            std::mem::replace(&mut self.baseline, BaselineState::Missing)
        else {
            return;
        };
        let rows = builder.len();
        let lineage = LineageInputs::live(rows as u64, (self.clock)());
        match builder.finish(lineage) {
            Ok(baseline) => {
                if let Some(path) = &save
                    && let Err(error) = baseline.save(path)
                {
                    tracing::warn!(model = %self.stats.name, %error, "Could not save the learned baseline; it is used but will be relearned after a restart.");
                }
                tracing::info!(model = %self.stats.name, rows, "Baseline learned and frozen.");
                self.install(BaselineState::Ready(Arc::new(baseline)));
            }
            Err(error) => {
                tracing::warn!(model = %self.stats.name, %error, "Could not learn a baseline; drift stays off for this model.");
            }
        }
    }

    fn install(&mut self, baseline: BaselineState) {
        let ratios = match &baseline {
            BaselineState::Ready(b) => b
                .features
                .iter()
                .map(|f| {
                    f.numeric
                        .as_ref()
                        .map(|n| n.proportions.clone())
                        .unwrap_or_default()
                })
                .collect(),
            _ => vec![Vec::new(); self.names.len()],
        };
        if self.names.is_empty() {
            self.baseline = baseline;
            return;
        }
        let layout = FeatureLayout::new(self.names.clone(), ratios);
        if let Some(old) = self.stats.layout() {
            layout.carry_violations(&old);
        }
        self.stats.set_layout(layout);
        if let BaselineState::Ready(b) = &baseline {
            self.anomaly = match AnomalyDetectors::from_baseline(b, &self.anomaly_config) {
                Ok(detectors) => Some(detectors),
                Err(error) => {
                    tracing::warn!(model = %self.stats.name, %error, "Anomaly detection is off for this model.");
                    None
                }
            };
            self.multivariate = Multivariate::fit(b, &self.settings);
            if let Multivariate::Unavailable(reason) = &self.multivariate {
                tracing::warn!(model = %self.stats.name, %reason, "Multivariate drift is off for this model.");
            }
            let spec = WindowSpec {
                length: self.settings.window,
                step: self.settings.step,
                sample_cap: self.settings.sample,
                features: b
                    .features
                    .iter()
                    .map(|f| match (&f.kind, &f.numeric) {
                        (FeatureKind::Numeric, Some(n)) => FeatureSpec::Numeric {
                            edges: n.edges.clone(),
                        },
                        _ => FeatureSpec::Categorical,
                    })
                    .collect(),
                score_edges: b
                    .prediction
                    .as_ref()
                    .and_then(|p| p.score.as_ref())
                    .map(|s| s.edges.clone()),
                multivariate: self.multivariate.rows(),
            };
            self.window = Some(Window::new(spec, 0x5eed));
        }
        self.baseline = baseline;
    }
}

/// Builds the learning state for a model.
pub fn learning(
    model: &str,
    names: &[String],
    categorical: &[bool],
    target: u64,
    save: Option<PathBuf>,
    bins: usize,
) -> BaselineState {
    let features = names
        .iter()
        .zip(categorical)
        .map(|(n, c)| {
            (
                n.clone(),
                if *c {
                    FeatureKind::Categorical
                } else {
                    FeatureKind::Numeric
                },
            )
        })
        .collect();
    let options = BuildOptions {
        bins,
        ..BuildOptions::default()
    };
    BaselineState::Learning {
        builder: Box::new(BaselineBuilder::new(model.to_owned(), features, options)),
        target,
        save,
    }
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::config::{Config, Overrides};
    use crate::observation::Prediction;

    fn scored(score: f64, at: SystemTime) -> Observation {
        Observation {
            model: Arc::from("m"),
            version: None,
            time: at,
            request_id: Arc::from("r"),
            exchange: 0,
            row: 0,
            features: vec![FeatureValue::Number(1.0)],
            prediction: Some(Prediction {
                score: Some(score),
                ..Prediction::default()
            }),
        }
    }

    #[test]
    fn a_drop_in_prediction_scores_is_a_concept_drift_event() {
        let settings = Config::from_yaml("upstream: http://127.0.0.1:1\n", &Overrides::default())
            .expect("valid")
            .drift;
        let stats = Arc::new(ModelStats::new(Arc::from("m"), "kserve_v2"));
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let clock: Clock = Arc::new(move || start);
        let mut shard = Shard::new(
            stats.clone(),
            vec!["x".into()],
            Arc::new(AtomicBool::new(false)),
            Vec::new(),
            Validate::Observe,
            settings,
            AnomalyConfig::default(),
            BaselineState::Missing,
            clock,
        );
        let mut rng = fastrand::Rng::with_seed(4);
        let mut feed = |mean: f64, n: usize, shard: &mut Shard| {
            for _ in 0..n {
                let score = mean + (rng.f64() - 0.5) * 0.05;
                shard.observe(Batch {
                    observations: vec![scored(score, start)],
                    extra: 0,
                    names: None,
                });
            }
        };
        feed(0.9, 3000, &mut shard);
        assert_eq!(
            stats.concept_drifts(0) + stats.concept_drifts(1),
            0,
            "stable scores"
        );
        feed(0.6, 3000, &mut shard);
        assert!(stats.concept_drifts(0) >= 1, "Page-Hinkley saw the drop");
        assert!(stats.concept_drifts(1) >= 1, "ADWIN saw the drop");
        shard.evaluate(start);
        let report = stats.report();
        let names: Vec<&str> = report.concept.iter().map(|c| c.detector).collect();
        assert_eq!(names, ["page_hinkley", "adwin", "ddm"]);
        assert!(
            report.concept[..2]
                .iter()
                .all(|c| c.events >= 1 && c.last_event_at.is_some() && c.warning.is_none())
        );
        // No feedback: DDM has nothing to say, but says it.
        assert_eq!(report.concept[2].events, 0);
        assert_eq!(report.concept[2].warning, Some(false));
    }
}
