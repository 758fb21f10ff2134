//! The unit of monitoring: one row of one request, with the model's answer.
//!
//! Decoders turn an [`Exchange`](crate::Exchange) into observations (one per
//! row of a batch); windows, baselines and detectors consume them. Pure
//! data: no I/O, no clock.

use std::sync::Arc;
use std::time::SystemTime;

/// One row a model was asked about, and what it answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The configured model name.
    pub model: Arc<str>,
    /// Model version, when the protocol carries one.
    pub version: Option<Arc<str>>,
    /// When the request arrived.
    pub time: SystemTime,
    /// The request id (shared by every row of a batch).
    pub request_id: Arc<str>,
    /// The mirrored exchange it came from ([`Exchange::serial`](crate::Exchange)),
    /// unique where request ids, which clients choose, need not be.
    pub exchange: u64,
    /// Row index within the request's batch.
    pub row: u32,
    /// Feature values in the order of the model's configured features.
    pub features: Vec<FeatureValue>,
    /// The model's answer for this row, if the response was decoded.
    pub prediction: Option<Prediction>,
}

/// One feature's value in one observation.
#[derive(Debug, Clone, PartialEq)]
pub enum FeatureValue {
    /// A number (NaN and ±Inf are kept so validation can flag them).
    Number(f64),
    /// A category label.
    Category(Arc<str>),
    /// Absent from the request.
    Missing,
}

/// A model's answer for one row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prediction {
    /// Predicted class index (argmax of probabilities, or the returned label index).
    pub class: Option<u32>,
    /// Confidence of the predicted class (max probability) or a scalar score.
    pub score: Option<f64>,
    /// Shannon entropy (nats) of the class probabilities.
    pub entropy: Option<f64>,
    /// A regression output or other scalar.
    pub value: Option<f64>,
    /// Generative models: prompt tokens used.
    pub prompt_tokens: Option<u32>,
    /// Generative models: completion tokens produced.
    pub completion_tokens: Option<u32>,
    /// Generative models: why generation stopped (`stop`, `length`, …).
    pub finish_reason: Option<Arc<str>>,
    /// Streaming responses: seconds from sending upstream to the first token.
    pub time_to_first_token: Option<f64>,
}

impl Prediction {
    /// Fills `class`, `score` and `entropy` from class probabilities.
    pub fn from_probabilities(probabilities: &[f64]) -> Prediction {
        let mut best: Option<(usize, f64)> = None;
        let mut entropy = 0.0;
        for (i, &p) in probabilities.iter().enumerate() {
            if best.is_none_or(|(_, b)| p > b) {
                best = Some((i, p));
            }
            if p > 0.0 {
                entropy -= p * p.ln();
            }
        }
        Prediction {
            class: best.map(|(i, _)| i as u32),
            score: best.map(|(_, p)| p),
            entropy: best.map(|_| entropy),
            ..Prediction::default()
        }
    }
}

impl FeatureValue {
    /// The numeric value, if this is a number.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            FeatureValue::Number(x) => Some(*x),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_give_class_score_and_entropy() {
        let p = Prediction::from_probabilities(&[0.2, 0.7, 0.1]);
        assert_eq!(p.class, Some(1));
        assert_eq!(p.score, Some(0.7));
        let expected = -(0.2f64 * 0.2f64.ln() + 0.7 * 0.7f64.ln() + 0.1 * 0.1f64.ln());
        assert!((p.entropy.unwrap_or_default() - expected).abs() < 1e-12);
        assert_eq!(Prediction::from_probabilities(&[]).class, None);
    }
}
