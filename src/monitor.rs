//! The monitoring pipeline behind the mirror: decode each exchange into
//! observations, hand them to the model's shard, and expose what the shards
//! publish (metrics, `/v1/drift`).
//!
//! ```text
//! mirror worker ──decode──► Batch ──bounded channel──► shard thread (one per model)
//!                                                        window + baseline + drift + anomaly
//!                                                        ├─► ModelStats (atomics, arc-swap)
//!                                                        ├─► feedback join store ◄── POST /v1/feedback
//!                                                        └─► Verdict per observation ──► subscribers
//! ```
//!
//! Everything here fails open: an exchange that does not decode is counted
//! in `decode_errors_total`, a full shard channel drops the batch and
//! counts it, and the proxy never notices either.

pub mod evaluate;
pub mod feedback;
pub mod report;
pub mod scores;
pub mod shard;
pub mod stats;
pub mod validate;
pub mod verdict;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::{Sender, TrySendError};

use crate::baseline::{Baseline, BaselineError};
use crate::config::{BaselineSource, Config};
use crate::mirror::{Consumer, Exchange};
use crate::protocol::{self, ModelSchema};

pub use feedback::{FeedbackHub, FeedbackMetrics, ModelFeedback};
pub use report::{AnomalyReports, DriftReports};
pub use shard::Clock;
use shard::{BaselineState, Batch, Shard};
pub use stats::{ModelStats, MonitorMetrics};
pub use verdict::{DriftSummary, Subscribers, Verdict, VerdictMetrics, ViolationReport};

/// Decoded batches a shard may have waiting before new ones are dropped.
const SHARD_QUEUE: usize = 4096;

/// Why monitoring could not start.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// A baseline file could not be used.
    #[error("model {model}: {source}")]
    Baseline {
        /// The model.
        model: String,
        /// What was wrong with its baseline.
        source: BaselineError,
    },
    /// A shard thread could not be started.
    #[error("cannot start the monitoring thread for model {model}: {source}")]
    Thread {
        /// The model.
        model: String,
        /// The OS error.
        source: std::io::Error,
    },
}

#[derive(Debug)]
struct Route {
    schema: ModelSchema,
    stats: Arc<ModelStats>,
    shard: Sender<Batch>,
    /// Whether the shard knows its feature names (else batches carry them).
    names_frozen: Arc<AtomicBool>,
}

/// Feeds mirrored exchanges to the shards; one per mirror worker.
#[derive(Clone)]
pub struct MonitorConsumer {
    routes: Arc<Vec<Route>>,
}

/// What the admin server reads: every model's counters and latest report,
/// the feedback join, and the verdict subscriptions.
#[derive(Debug, Clone)]
pub struct MonitorView {
    stats: Arc<Vec<Arc<ModelStats>>>,
    /// `None` when `feedback.enabled` is false.
    feedback: Option<Arc<FeedbackHub>>,
    subscribers: Arc<Subscribers>,
}

impl MonitorView {
    /// The metrics collector.
    pub fn metrics(&self) -> MonitorMetrics {
        MonitorMetrics(self.stats.clone())
    }

    /// Every monitoring collector: models, feedback and verdicts.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus_client::collector::Collector>> {
        let mut collectors: Vec<Box<dyn prometheus_client::collector::Collector>> = vec![
            Box::new(self.metrics()),
            Box::new(VerdictMetrics(self.subscribers.clone())),
        ];
        if let Some(feedback) = &self.feedback {
            collectors.push(Box::new(FeedbackMetrics(feedback.clone())));
        }
        collectors
    }

    /// Where `POST /v1/feedback` goes; `None` when feedback is off.
    pub fn feedback(&self) -> Option<&Arc<FeedbackHub>> {
        self.feedback.as_ref()
    }

    /// Receives a [`Verdict`] for every observation from now on, on a
    /// channel of `capacity` verdicts; when it is full, further verdicts
    /// are dropped (and counted) rather than waited for. Dropping the
    /// receiver unsubscribes.
    pub fn subscribe(&self, capacity: usize) -> crossbeam_channel::Receiver<Verdict> {
        self.subscribers.subscribe(capacity)
    }

    /// Verdicts dropped because a subscriber was full.
    pub fn verdicts_dropped(&self) -> u64 {
        self.subscribers.dropped()
    }

    /// Every model's latest drift evaluation.
    pub fn reports(&self) -> DriftReports {
        DriftReports {
            models: self.stats.iter().map(|s| (*s.report()).clone()).collect(),
        }
    }

    /// Every model's latest flagged observations.
    pub fn anomalies(&self) -> AnomalyReports {
        AnomalyReports {
            models: self
                .stats
                .iter()
                .map(|s| report::ModelAnomalies {
                    model: s.name.to_string(),
                    anomalies: (*s.recent_anomalies()).clone(),
                })
                .collect(),
        }
    }

    /// A model's counters, by name.
    pub fn model(&self, name: &str) -> Option<&Arc<ModelStats>> {
        self.stats.iter().find(|s| &*s.name == name)
    }
}

/// The running pipeline: its metrics, reports and threads.
#[derive(Debug)]
pub struct Monitor {
    routes: Option<Arc<Vec<Route>>>,
    view: MonitorView,
    threads: Vec<JoinHandle<()>>,
}

impl Monitor {
    /// Loads baselines and starts a shard per configured model.
    pub fn start(config: &Config, clock: Clock) -> Result<Monitor, MonitorError> {
        let mut routes = Vec::new();
        let mut threads = Vec::new();
        let mut feedback = Vec::new();
        let subscribers = Arc::new(Subscribers::default());
        for model in &config.models {
            let mut names = model.features.clone();
            let baseline = match &model.baseline {
                None => BaselineState::Missing,
                Some(BaselineSource::File(path)) => {
                    let baseline = load_checked(&model.name, path, &names)?;
                    // A model configured without features takes the baseline's.
                    if names.is_empty() {
                        names = baseline.features.iter().map(|f| f.name.clone()).collect();
                    }
                    BaselineState::Ready(Arc::new(baseline))
                }
                Some(BaselineSource::Learn { observations, save }) => match save {
                    // A baseline saved by an earlier run is reloaded, not relearned.
                    Some(path) if path.exists() => {
                        let baseline = load_checked(&model.name, path, &names)?;
                        if names.is_empty() {
                            names = baseline.features.iter().map(|f| f.name.clone()).collect();
                        }
                        BaselineState::Ready(Arc::new(baseline))
                    }
                    _ if names.is_empty() => BaselineState::AwaitingNames {
                        target: *observations,
                        save: save.clone(),
                        bins: config.drift.bins,
                    },
                    _ => {
                        let categorical: Vec<bool> = names
                            .iter()
                            .map(|f| model.categorical.contains(f))
                            .collect();
                        shard::learning(
                            &model.name,
                            &names,
                            &categorical,
                            *observations,
                            save.clone(),
                            config.drift.bins,
                        )
                    }
                },
            };
            let label = model.protocol.map_or("unknown", protocol_label);
            let stats = Arc::new(ModelStats::new(Arc::from(model.name.as_str()), label));
            let names_frozen = Arc::new(AtomicBool::new(false));
            let mut schema = ModelSchema::from_model(model);
            schema.features = names.clone();
            let shard = Shard::new(
                stats.clone(),
                names,
                names_frozen.clone(),
                model.categorical.clone(),
                model.validate,
                config.drift.clone(),
                config.anomaly,
                baseline,
                clock.clone(),
            )
            .with_subscribers(subscribers.clone());
            let shard = if config.feedback.enabled {
                let store = Arc::new(ModelFeedback::new(stats.clone(), &config.feedback));
                feedback.push(store.clone());
                shard.with_feedback(store)
            } else {
                shard
            };
            let (sender, receiver) = crossbeam_channel::bounded(SHARD_QUEUE);
            let thread = std::thread::Builder::new()
                .name(format!("sidewatch-shard-{}", model.name))
                .spawn(move || shard.run(receiver))
                .map_err(|source| MonitorError::Thread {
                    model: model.name.clone(),
                    source,
                })?;
            threads.push(thread);
            routes.push(Route {
                schema,
                stats,
                shard: sender,
                names_frozen,
            });
        }
        let stats = Arc::new(routes.iter().map(|r| r.stats.clone()).collect());
        let feedback = config
            .feedback
            .enabled
            .then(|| Arc::new(FeedbackHub::new(feedback, clock)));
        Ok(Monitor {
            routes: Some(Arc::new(routes)),
            view: MonitorView {
                stats,
                feedback,
                subscribers,
            },
            threads,
        })
    }

    /// A consumer for one mirror worker.
    pub fn consumer(&self) -> Box<dyn Consumer> {
        match &self.routes {
            Some(routes) => Box::new(MonitorConsumer {
                routes: routes.clone(),
            }),
            None => Box::new(crate::mirror::Discard),
        }
    }

    /// The pipeline's entry for one mirror worker, when models are
    /// configured, for callers that need [`MonitorConsumer::observe`]'s row
    /// count (the audit feed).
    pub fn observer(&self) -> Option<MonitorConsumer> {
        self.routes.as_ref().map(|routes| MonitorConsumer {
            routes: routes.clone(),
        })
    }

    /// The read side, for the admin server.
    pub fn view(&self) -> MonitorView {
        self.view.clone()
    }

    /// Receives a [`Verdict`] per observation (see [`MonitorView::subscribe`]).
    pub fn subscribe(&self, capacity: usize) -> crossbeam_channel::Receiver<Verdict> {
        self.view.subscribe(capacity)
    }

    /// Stops the shards once the consumers are gone and waits for them.
    pub fn finish(mut self) {
        self.routes = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Loads every configured baseline file and checks it against its model,
/// as start-up would; for `sidewatch config check`.
pub fn check_baselines(config: &Config) -> Vec<MonitorError> {
    config
        .models
        .iter()
        .filter_map(|model| match &model.baseline {
            Some(BaselineSource::File(path)) => {
                load_checked(&model.name, path, &model.features).err()
            }
            Some(BaselineSource::Learn {
                save: Some(path), ..
            }) if path.exists() => load_checked(&model.name, path, &model.features).err(),
            _ => None,
        })
        .collect()
}

fn load_checked(
    model: &str,
    path: &std::path::Path,
    features: &[String],
) -> Result<Baseline, MonitorError> {
    let wrap = |source| MonitorError::Baseline {
        model: model.to_owned(),
        source,
    };
    let baseline = Baseline::load(path).map_err(wrap)?;
    if !features.is_empty() {
        baseline.check_features(features).map_err(wrap)?;
    }
    Ok(baseline)
}

impl Consumer for MonitorConsumer {
    fn consume(&mut self, exchange: Exchange) {
        self.observe(&exchange);
    }

    fn wants(&self, model: Option<&str>) -> bool {
        // A path that matched no model may still be a gRPC call naming one
        // in its message.
        match model {
            Some(model) => self.routes.iter().any(|r| *r.stats.name == *model),
            None => !self.routes.is_empty(),
        }
    }
}

impl MonitorConsumer {
    /// Decodes `exchange` and hands its rows to the model's shard; returns
    /// how many rows the shard accepted, which is how many verdicts it
    /// will publish for this request id.
    pub fn observe(&self, exchange: &Exchange) -> usize {
        let Some(route) = self.route(exchange) else {
            return 0;
        };
        match protocol::decode(exchange, &route.schema) {
            Ok(decoded) => {
                let names =
                    (!route.names_frozen.load(Ordering::Acquire)).then_some(decoded.features);
                let rows = decoded.observations.len();
                let batch = Batch {
                    observations: decoded.observations,
                    extra: decoded.extra_features.len(),
                    names,
                };
                match route.shard.try_send(batch) {
                    Ok(()) => rows,
                    Err(TrySendError::Full(_)) => {
                        route.stats.count_shard_drop();
                        0
                    }
                    Err(TrySendError::Disconnected(_)) => 0,
                }
            }
            // Health checks, metadata calls and the like are not inferences.
            Err(error) if error.kind() == "not_inference" => 0,
            Err(error) => {
                let protocol = route
                    .schema
                    .protocol
                    .or_else(|| {
                        let content_type = exchange
                            .request
                            .headers
                            .get_str(http::header::CONTENT_TYPE.as_str());
                        protocol::detect(exchange.request.uri.path(), content_type)
                    })
                    .map_or("unknown", protocol_label);
                route.stats.count_decode_error(protocol);
                tracing::debug!(model = %route.stats.name, %error, kind = error.kind(), "Decode failed.");
                0
            }
        }
    }
}

fn protocol_label(protocol: crate::config::Protocol) -> &'static str {
    use crate::config::Protocol;
    match protocol {
        Protocol::KserveV2 => "kserve_v2",
        Protocol::Tfserving => "tfserving",
        Protocol::Openai => "openai",
        Protocol::Json => "json",
    }
}

impl MonitorConsumer {
    fn route(&self, exchange: &Exchange) -> Option<&Route> {
        // With no model configured nothing can match: skip reading the path.
        if self.routes.is_empty() {
            return None;
        }
        if let Some(model) = &exchange.model {
            return self.routes.iter().find(|r| *r.stats.name == **model);
        }
        // gRPC carries the model in the message, not the path.
        let name = protocol::model_name(exchange)?;
        self.routes.iter().find(|r| *r.stats.name == *name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;

    fn monitor(models: &str) -> Monitor {
        let yaml = format!("upstream: http://127.0.0.1:1\nmodels: {models}\n");
        let config = Config::from_yaml(&yaml, &Overrides::default()).expect("a valid config");
        Monitor::start(&config, Arc::new(std::time::SystemTime::now)).expect("the monitor starts")
    }

    #[test]
    fn the_consumer_wants_the_exchanges_a_configured_model_may_claim() {
        let none = monitor("[]");
        let consumer = none.consumer();
        assert!(!consumer.wants(None));
        assert!(!consumer.wants(Some("m")));
        none.finish();

        let one = monitor("[{ name: m, features: [a] }]");
        let consumer = one.consumer();
        assert!(consumer.wants(Some("m")));
        assert!(!consumer.wants(Some("other")));
        // No path match: a gRPC call may still name `m` in its message.
        assert!(consumer.wants(None));
        drop(consumer);
        one.finish();
    }
}
