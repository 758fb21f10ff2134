//! Ground truth, joined to the predictions it belongs to.
//!
//! ```text
//! shard thread ── record(request id, row → predicted class | value) ──► JoinStore (per model)
//! POST /v1/feedback {request_id, label | value} ── take ──► Quality: rolling accuracy / MAE, DDM
//! ```
//!
//! Concurrency: the shard records every decoded prediction and the admin
//! handler (on the tokio runtime) takes them back out, so the join store of
//! each model sits behind a `std::sync::Mutex`. The shard locks it once per
//! batch, for a few hash-map inserts; a feedback request locks it once per
//! item, for one lookup. Neither holds it across an `.await` or any I/O, so
//! the lock is almost never contended and never blocks the shard for
//! longer than a lookup. Routing feedback through the shard's channel
//! instead would make every feedback call wait behind the observation
//! queue (and be dropped with it when the shard is behind) and would need
//! a reply channel per item. The feedback-side detectors (the rolling
//! windows and DDM) are fed only by feedback requests, so they sit behind a
//! second mutex that the shard never takes; what `/metrics` and `/v1/drift`
//! read from them is published in atomics.
//!
//! Request shape (documented in the README): one object
//! `{"request_id": "...", "row": 0, "label": 2}` (classifiers: a class index
//! as a number, its decimal string, or a boolean for 0/1) or
//! `{"request_id": "...", "value": 3.2}` (regressors); or a JSON array of
//! such objects, a batch. `row` (default 0) picks a row of a batched
//! request. A single object is answered with its own status: 200 joined,
//! 400 malformed, 404 `unknown_request_id`, 409 `duplicate_feedback` (the
//! first feedback for a prediction stands; a client retrying after a lost
//! answer may read 409 as success), 410 `feedback_expired` /
//! `feedback_evicted`, 422 a label for a regressor, a value for a
//! classifier, or a label that is not a class index. A batch is answered
//! 200 with one result per item, in order, and the counts per result.
//!
//! Feedback can only join a prediction the shard has already processed: a
//! client that posts feedback in the same instant it receives the answer
//! may get 404 and should retry.

mod item;
mod metrics;
mod quality;
mod store;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use serde_json::{Value, json};

pub use item::{Item, Outcome, Truth, parse_item};
pub use metrics::FeedbackMetrics;
pub use quality::{Quality, REGRESSION_ERROR_QUANTILE, Rolling, reference_size};
pub use store::{JoinStore, Key, Lookup, Predicted, Settled};

use super::shard::Clock;
use super::stats::ModelStats;
use crate::config::Feedback;
use crate::detect::concept::Verdict;
use crate::observation::Observation;

/// `result` labels of `sidewatch_feedback_total`, in counter order.
pub const RESULTS: [&str; 5] = ["joined", "unknown", "expired", "invalid", "duplicate"];
/// Largest `POST /v1/feedback` body, in bytes.
pub const MAX_BODY: usize = 1024 * 1024;
/// Longest request id accepted (the proxy's own are 36 characters).
pub const MAX_REQUEST_ID: usize = 256;
/// DDM's index in [`CONCEPT_DETECTORS`].
pub const DDM: usize = 2;

/// One model's feedback side: its join store, its quality detectors and
/// the values published from them.
#[derive(Debug)]
pub struct ModelFeedback {
    stats: Arc<ModelStats>,
    store: Mutex<JoinStore>,
    quality: Mutex<Quality>,
    /// Published for `/metrics` (f64 bits; NaN until the first feedback).
    accuracy: AtomicU64,
    mae: AtomicU64,
    /// Whether DDM's last update was in its warning zone.
    warning: AtomicBool,
    /// Milliseconds since the epoch of DDM's last drift, 0 before any.
    last_drift_ms: AtomicU64,
    /// Predictions awaiting feedback, published after each change.
    pending: AtomicU64,
    /// Items attributed to this model, by [`RESULTS`].
    results: [AtomicU64; RESULTS.len()],
}

/// DDM's state, for `/v1/drift` and verdicts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DdmState {
    /// Whether the last update was in the warning zone.
    pub warning: bool,
    /// When DDM last detected drift.
    pub last_drift: Option<SystemTime>,
}

/// Every model's feedback side: what `POST /v1/feedback` talks to.
pub struct FeedbackHub {
    models: Vec<Arc<ModelFeedback>>,
    /// Results of items that matched no model (`model="unknown"`).
    unattributed: [AtomicU64; RESULTS.len()],
    clock: Clock,
}

// === impl ModelFeedback ===

impl ModelFeedback {
    /// The feedback side of the model counted in `stats`.
    pub fn new(stats: Arc<ModelStats>, settings: &Feedback) -> ModelFeedback {
        ModelFeedback {
            stats,
            store: Mutex::new(JoinStore::new(settings.ttl, settings.capacity)),
            quality: Mutex::new(Quality::new(settings.window, settings.ddm)),
            accuracy: AtomicU64::new(f64::NAN.to_bits()),
            mae: AtomicU64::new(f64::NAN.to_bits()),
            warning: AtomicBool::new(false),
            last_drift_ms: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            results: Default::default(),
        }
    }

    /// The model's name.
    pub fn name(&self) -> &Arc<str> {
        &self.stats.name
    }

    /// Records the predictions of one decoded batch (the shard calls this
    /// once per batch). Rows without a class or value are not recorded.
    pub fn record(&self, observations: &[Observation]) {
        let mut latest = None::<SystemTime>;
        let mut store = None::<MutexGuard<'_, JoinStore>>;
        for observation in observations {
            let Some(predicted) = observation.prediction.as_ref().and_then(|p| {
                p.class
                    .map(Predicted::Class)
                    .or(p.value.map(Predicted::Value))
            }) else {
                continue;
            };
            let store = match &mut store {
                Some(store) => store,
                None => store.insert(lock(&self.store)),
            };
            store.record(
                &observation.request_id,
                observation.row,
                observation.time,
                predicted,
            );
            latest = latest.max(Some(observation.time));
        }
        if let (Some(mut store), Some(now)) = (store, latest) {
            store.expire(now);
            self.pending
                .store(store.pending() as u64, Ordering::Relaxed);
        }
    }

    /// Looks an item up; joins and scores it when it fits its prediction.
    fn take(&self, item: &Item, now: SystemTime) -> Option<Outcome> {
        let lookup = {
            let mut store = lock(&self.store);
            let lookup = store.take(&item.key, now, |predicted| {
                matches!(
                    (predicted, &item.truth),
                    (Predicted::Class(_), Truth::Class(_)) | (Predicted::Value(_), Truth::Value(_))
                )
            });
            self.pending
                .store(store.pending() as u64, Ordering::Relaxed);
            lookup
        };
        let model = self.name().clone();
        Some(match lookup {
            Lookup::Found(predicted, _) => self.score(predicted, &item.truth, now),
            Lookup::Refused(predicted) => Outcome::Mismatch {
                message: item::mismatch(&model, predicted, &item.truth),
                kind: match item.truth {
                    Truth::NotAClass(_) => "invalid_label",
                    _ => "feedback_kind_mismatch",
                },
                model,
            },
            Lookup::Settled(Settled::Joined) => Outcome::Duplicate(model),
            Lookup::Settled(Settled::Expired) => Outcome::Expired(model),
            Lookup::Settled(Settled::Evicted) => Outcome::Evicted(model),
            Lookup::Unknown => return None,
        })
    }

    /// Feeds a joined pair to the quality detectors.
    fn score(&self, predicted: Predicted, truth: &Truth, now: SystemTime) -> Outcome {
        let model = self.name().clone();
        let mut quality = lock(&self.quality);
        let (verdict, correct, absolute_error) = match (predicted, truth) {
            (Predicted::Class(class), Truth::Class(label)) => {
                let correct = class == *label;
                (Some(quality.classified(correct)), Some(correct), None)
            }
            (Predicted::Value(prediction), Truth::Value(value)) => {
                let error = (prediction - value).abs();
                (quality.regressed(error), None, Some(error))
            }
            // `take` only accepts matching kinds.
            _ => (None, None, None),
        };
        let publish = |cell: &AtomicU64, rolling: &Rolling| {
            if let Some(mean) = rolling.mean() {
                cell.store(mean.to_bits(), Ordering::Relaxed);
            }
        };
        publish(&self.accuracy, &quality.accuracy);
        publish(&self.mae, &quality.absolute_error);
        drop(quality);
        match verdict {
            Some(Verdict::Drift) => {
                self.warning.store(false, Ordering::Relaxed);
                self.last_drift_ms
                    .store(unix_ms(now).max(1), Ordering::Relaxed);
                self.stats.count_concept_drift(DDM);
                tracing::info!(model = %model, "DDM: the error rate on feedback rose (concept drift).");
            }
            Some(verdict) => self
                .warning
                .store(verdict == Verdict::Warning, Ordering::Relaxed),
            None => {}
        }
        Outcome::Joined {
            model,
            correct,
            absolute_error,
        }
    }

    /// DDM's current state.
    pub fn ddm(&self) -> DdmState {
        let ms = self.last_drift_ms.load(Ordering::Relaxed);
        DdmState {
            warning: self.warning.load(Ordering::Relaxed),
            last_drift: (ms > 0)
                .then(|| SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(ms)),
        }
    }

    /// Rolling accuracy over the window, once a classification was joined.
    pub fn accuracy(&self) -> Option<f64> {
        Some(f64::from_bits(self.accuracy.load(Ordering::Relaxed))).filter(|x| !x.is_nan())
    }

    /// Rolling mean absolute error, once a regression was joined.
    pub fn mae(&self) -> Option<f64> {
        Some(f64::from_bits(self.mae.load(Ordering::Relaxed))).filter(|x| !x.is_nan())
    }

    /// Feedback items attributed to this model, by result.
    pub fn results(&self, result: &str) -> u64 {
        count(&self.results, result)
    }

    /// The model's part of `GET /v1/feedback`, expiring as of `now` first.
    fn summary(&self, now: SystemTime) -> Value {
        let (pending, expired, evicted) = {
            let mut store = lock(&self.store);
            store.expire(now);
            self.pending
                .store(store.pending() as u64, Ordering::Relaxed);
            let (expired, evicted) = store.expired_evicted();
            (store.pending(), expired, evicted)
        };
        let quality = lock(&self.quality);
        let ddm = self.ddm();
        json!({
            "model": &*self.stats.name,
            "pending": pending,
            "expired": expired,
            "evicted": evicted,
            "results": results_json(&self.results),
            "accuracy": quality.accuracy.mean(),
            "accuracy_window": quality.accuracy.len(),
            "mae": quality.absolute_error.mean(),
            "mae_window": quality.absolute_error.len(),
            "ddm": {
                "state": if ddm.warning { "warning" } else { "stable" },
                "events": self.stats.concept_drifts(DDM),
                "last_event_at": ddm.last_drift.map(|t| humantime::format_rfc3339_millis(t).to_string()),
                "n": quality.ddm.n(),
                "error_rate": quality.ddm.error_rate(),
                "min_error_rate": quality.ddm.min_error_rate(),
                "regression_threshold": quality.regression_threshold(),
            },
        })
    }
}

// === impl FeedbackHub ===

impl std::fmt::Debug for FeedbackHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedbackHub")
            .field("models", &self.models)
            .finish_non_exhaustive()
    }
}

impl FeedbackHub {
    /// A hub over every model's feedback side, reading time from `clock`.
    pub fn new(models: Vec<Arc<ModelFeedback>>, clock: Clock) -> FeedbackHub {
        FeedbackHub {
            models,
            unattributed: Default::default(),
            clock,
        }
    }

    /// Joins one item, counting its result.
    pub fn submit(&self, item: &Item) -> Outcome {
        let now = (self.clock)();
        let mut settled = None;
        let mut outcome = None;
        for model in &self.models {
            match model.take(item, now) {
                // A pending prediction in another model wins over a
                // remembered one here (a reused request id).
                Some(o @ (Outcome::Expired(_) | Outcome::Evicted(_) | Outcome::Duplicate(_))) => {
                    settled.get_or_insert(o);
                }
                Some(o) => {
                    outcome = Some(o);
                    break;
                }
                None => {}
            }
        }
        let outcome = outcome.or(settled).unwrap_or(Outcome::Unknown);
        self.count(&outcome);
        outcome
    }

    fn count(&self, outcome: &Outcome) {
        let counters = outcome
            .model()
            .and_then(|m| self.models.iter().find(|f| f.name() == m))
            .map_or(&self.unattributed, |f| &f.results);
        if let Some(i) = RESULTS.iter().position(|r| *r == outcome.result()) {
            counters[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Answers a `POST /v1/feedback` body: the status and JSON body.
    pub fn answer(&self, body: &[u8]) -> (u16, Value) {
        let malformed = |message: String| {
            let outcome = Outcome::Malformed(message);
            self.count(&outcome);
            (outcome.status(), outcome.to_json(None))
        };
        let value: Value = match serde_json::from_slice(body) {
            Ok(value) => value,
            Err(error) => return malformed(format!("the body is not JSON: {error}")),
        };
        match value {
            Value::Array(items) => {
                let mut counts = [0u64; RESULTS.len()];
                let results: Vec<Value> = items
                    .iter()
                    .map(|raw| {
                        let (outcome, key) = match parse_item(raw) {
                            Ok(item) => (self.submit(&item), Some(item.key)),
                            Err(message) => {
                                let outcome = Outcome::Malformed(message);
                                self.count(&outcome);
                                (outcome, None)
                            }
                        };
                        if let Some(i) = RESULTS.iter().position(|r| *r == outcome.result()) {
                            counts[i] += 1;
                        }
                        let mut answer = outcome.to_json(key.as_ref());
                        answer["status"] = json!(outcome.status());
                        answer
                    })
                    .collect();
                let counts: serde_json::Map<String, Value> = RESULTS
                    .iter()
                    .zip(counts)
                    .map(|(r, n)| ((*r).to_owned(), json!(n)))
                    .collect();
                (200, json!({ "results": results, "counts": counts }))
            }
            Value::Object(_) => match parse_item(&value) {
                Ok(item) => {
                    let outcome = self.submit(&item);
                    (outcome.status(), outcome.to_json(Some(&item.key)))
                }
                Err(message) => malformed(message),
            },
            _ => malformed("the body must be one feedback object or an array of them".to_owned()),
        }
    }

    /// `GET /v1/feedback`: every model's join store, rolling quality and
    /// DDM state.
    pub fn summary(&self) -> Value {
        let now = (self.clock)();
        json!({
            "models": self.models.iter().map(|m| m.summary(now)).collect::<Vec<_>>(),
            "unattributed": results_json(&self.unattributed),
        })
    }

    /// A model's feedback side, by name.
    pub fn model(&self, name: &str) -> Option<&Arc<ModelFeedback>> {
        self.models.iter().find(|m| &**m.name() == name)
    }
}

fn results_json(counters: &[AtomicU64; RESULTS.len()]) -> Value {
    RESULTS
        .iter()
        .map(|r| ((*r).to_owned(), json!(count(counters, r))))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn count(counters: &[AtomicU64; RESULTS.len()], result: &str) -> u64 {
    RESULTS
        .iter()
        .position(|r| *r == result)
        .map_or(0, |i| counters[i].load(Ordering::Relaxed))
}

/// Locks a mutex, taking the data even if a panicking holder poisoned it:
/// the store is a cache of predictions, never left half-updated in a way
/// that matters more than losing feedback would.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests;
