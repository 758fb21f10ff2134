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

mod quality;
mod store;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use prometheus_client::encoding::DescriptorEncoder;
use serde_json::{Value, json};

pub use quality::{Quality, REGRESSION_ERROR_QUANTILE, Rolling, reference_size};
pub use store::{JoinStore, Key, Lookup, Predicted, Settled};

use super::shard::Clock;
use super::stats::{CONCEPT_DETECTORS, ModelStats};
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

/// The ground truth a feedback item gives.
#[derive(Debug, Clone, PartialEq)]
pub enum Truth {
    /// A class index, for classifiers.
    Class(u32),
    /// A label that names no class index (e.g. `"setosa"`); kept to say so.
    NotAClass(String),
    /// A regression target.
    Value(f64),
}

/// One parsed feedback item.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The prediction it is for.
    pub key: Key,
    /// What the answer should have been.
    pub truth: Truth,
}

/// What became of one feedback item.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Joined to its prediction.
    Joined {
        /// The model that made the prediction.
        model: Arc<str>,
        /// Classifiers: whether the predicted class was the label.
        correct: Option<bool>,
        /// Regressors: `|prediction − value|`.
        absolute_error: Option<f64>,
    },
    /// No model knows the id (never seen, not yet processed, or forgotten).
    Unknown,
    /// The prediction waited longer than `feedback.ttl`.
    Expired(Arc<str>),
    /// The prediction was evicted from a full store.
    Evicted(Arc<str>),
    /// Feedback was already joined to this prediction.
    Duplicate(Arc<str>),
    /// The item is not a feedback object.
    Malformed(String),
    /// The item does not fit the prediction (label vs value, bad label).
    Mismatch {
        /// The model that made the prediction.
        model: Arc<str>,
        /// Stable error kind.
        kind: &'static str,
        /// What is wrong, in a sentence.
        message: String,
    },
}

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
    pending: AtomicU64,
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

/// The feedback metrics, encoded at scrape time.
#[derive(Debug, Clone)]
pub struct FeedbackMetrics(pub Arc<FeedbackHub>);

// === impl Outcome ===

impl Outcome {
    /// The `result` label.
    pub fn result(&self) -> &'static str {
        match self {
            Outcome::Joined { .. } => "joined",
            Outcome::Unknown => "unknown",
            Outcome::Expired(_) | Outcome::Evicted(_) => "expired",
            Outcome::Malformed(_) | Outcome::Mismatch { .. } => "invalid",
            Outcome::Duplicate(_) => "duplicate",
        }
    }

    /// The HTTP status a single-item request answers with.
    pub fn status(&self) -> u16 {
        match self {
            Outcome::Joined { .. } => 200,
            Outcome::Malformed(_) => 400,
            Outcome::Unknown => 404,
            Outcome::Duplicate(_) => 409,
            Outcome::Expired(_) | Outcome::Evicted(_) => 410,
            Outcome::Mismatch { .. } => 422,
        }
    }

    /// The model it was attributed to, if any.
    pub fn model(&self) -> Option<&Arc<str>> {
        match self {
            Outcome::Joined { model, .. }
            | Outcome::Expired(model)
            | Outcome::Evicted(model)
            | Outcome::Duplicate(model)
            | Outcome::Mismatch { model, .. } => Some(model),
            Outcome::Unknown | Outcome::Malformed(_) => None,
        }
    }

    /// The item's JSON answer: the join, or the error shape of DESIGN §12
    /// (`error`, `kind`) with the result and the item's key.
    pub fn to_json(&self, key: Option<&Key>) -> Value {
        let mut body = match self {
            Outcome::Joined {
                model,
                correct,
                absolute_error,
            } => {
                let mut body = json!({ "model": &**model });
                if let Some(correct) = correct {
                    body["correct"] = json!(correct);
                }
                if let Some(error) = absolute_error {
                    body["absolute_error"] = json!(error);
                }
                body
            }
            _ => {
                let (kind, error) = self.error();
                let mut body = json!({ "error": error, "kind": kind });
                if let Some(model) = self.model() {
                    body["model"] = json!(&**model);
                }
                body
            }
        };
        body["result"] = json!(self.result());
        if let Some(key) = key {
            body["request_id"] = json!(&*key.request_id);
            body["row"] = json!(key.row);
        }
        body
    }

    fn error(&self) -> (&'static str, String) {
        match self {
            Outcome::Joined { .. } => ("", String::new()),
            Outcome::Unknown => (
                "unknown_request_id",
                "no prediction with this request id and row is awaiting feedback (never seen, not processed yet, or forgotten)".into(),
            ),
            Outcome::Expired(_) => (
                "feedback_expired",
                "the prediction waited longer than feedback.ttl and was dropped".into(),
            ),
            Outcome::Evicted(_) => (
                "feedback_evicted",
                "the prediction was dropped to keep within feedback.capacity before feedback arrived".into(),
            ),
            Outcome::Duplicate(_) => (
                "duplicate_feedback",
                "feedback for this prediction was already joined; the first one stands".into(),
            ),
            Outcome::Malformed(message) => ("malformed_feedback", message.clone()),
            Outcome::Mismatch { kind, message, .. } => (kind, message.clone()),
        }
    }
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
            let key = Key {
                request_id: observation.request_id.clone(),
                row: observation.row,
            };
            store.record(key, observation.time, predicted);
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
                message: mismatch(&model, predicted, &item.truth),
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

/// Parses one feedback object.
pub fn parse_item(value: &Value) -> Result<Item, String> {
    let Value::Object(fields) = value else {
        return Err("each feedback item must be an object {request_id, label | value}".into());
    };
    if let Some(other) = fields
        .keys()
        .find(|k| !matches!(k.as_str(), "request_id" | "row" | "label" | "value"))
    {
        return Err(format!(
            "unknown field {other:?}; expected request_id, row, label or value"
        ));
    }
    let request_id = match fields.get("request_id") {
        Some(Value::String(id)) if !id.is_empty() && id.len() <= MAX_REQUEST_ID => id,
        Some(Value::String(_)) => {
            return Err(format!(
                "request_id must be 1 to {MAX_REQUEST_ID} characters"
            ));
        }
        Some(_) => return Err("request_id must be a string".into()),
        None => return Err("request_id is required".into()),
    };
    let row = match fields.get("row") {
        None => 0,
        Some(row) => row
            .as_u64()
            .and_then(|r| u32::try_from(r).ok())
            .ok_or("row must be a non-negative integer")?,
    };
    let truth = match (fields.get("label"), fields.get("value")) {
        (Some(_), Some(_)) => return Err("give either label or value, not both".into()),
        (None, None) => {
            return Err("label (classifiers) or value (regressors) is required".into());
        }
        (Some(label), None) => parse_label(label)?,
        (None, Some(value)) => match value.as_f64() {
            Some(x) if x.is_finite() => Truth::Value(x),
            _ => return Err("value must be a finite number".into()),
        },
    };
    Ok(Item {
        key: Key {
            request_id: Arc::from(request_id.as_str()),
            row,
        },
        truth,
    })
}

fn parse_label(label: &Value) -> Result<Truth, String> {
    let class = |text: String| match text.trim().parse::<u32>() {
        Ok(class) => Truth::Class(class),
        Err(_) => Truth::NotAClass(text),
    };
    match label {
        Value::Bool(b) => Ok(Truth::Class(u32::from(*b))),
        Value::Number(n) => Ok(match n.as_u64().and_then(|x| u32::try_from(x).ok()) {
            Some(class) => Truth::Class(class),
            None => Truth::NotAClass(n.to_string()),
        }),
        Value::String(text) => Ok(class(text.clone())),
        _ => Err("label must be a string, a number or a boolean".into()),
    }
}

fn mismatch(model: &str, predicted: Predicted, truth: &Truth) -> String {
    match (predicted, truth) {
        (Predicted::Class(_), Truth::NotAClass(label)) => format!(
            "label {label:?} is not a class index; model {model} predicts classes by index (0, 1, …)"
        ),
        (Predicted::Class(_), _) => {
            format!("model {model} is a classifier: send a label (its class index), not a value")
        }
        (Predicted::Value(_), _) => {
            format!("model {model} predicts a number: send a value, not a label")
        }
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
        super::stats::counter(
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
        super::stats::gauge(
            &mut encoder,
            "sidewatch_feedback_accuracy",
            "Share of correct predictions over the last feedback.window joined labels.",
            hub.models
                .iter()
                .filter_map(|f| Some((vec![m(f)], f.accuracy()?))),
        )?;
        super::stats::gauge(
            &mut encoder,
            "sidewatch_feedback_mae",
            "Mean absolute error over the last feedback.window joined regression values.",
            hub.models
                .iter()
                .filter_map(|f| Some((vec![m(f)], f.mae()?))),
        )?;
        super::stats::gauge(
            &mut encoder,
            "sidewatch_feedback_pending",
            "Predictions awaiting ground-truth feedback.",
            hub.models
                .iter()
                .map(|f| (vec![m(f)], f.pending.load(Ordering::Relaxed) as f64)),
        )?;
        super::stats::gauge(
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

#[cfg(test)]
mod tests;
