//! A feedback item as posted, and what became of it: parsing, the
//! per-item answer and its HTTP status.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{Key, MAX_REQUEST_ID, Predicted};

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

pub(super) fn mismatch(model: &str, predicted: Predicted, truth: &Truth) -> String {
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
