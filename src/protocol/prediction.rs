//! Turning one row of a model's output into a [`Prediction`].
//!
//! The rules, the same for every protocol:
//!
//! - **several values** (an output of shape `[B, C]`, `C > 1`): when every
//!   value lies in `[0, 1]` and they sum to 1 within [`SUM_TOLERANCE`] they
//!   are class probabilities; otherwise they are logits and go through a
//!   softmax first. Either way `class` is the argmax, `score` the top
//!   probability and `entropy` the Shannon entropy (nats). Non-numeric or
//!   non-finite values give no prediction. (Logits that happen to look like
//!   a distribution are read as one: the two cannot be told apart.)
//! - **one integer or boolean** (`[B]` or `[B, 1]` of an integer type, or a
//!   JSON integer): the predicted `class`. A negative or huge integer is
//!   kept as `value` instead.
//! - **one float**: both `value` (a regression output) and `score` (a
//!   binary classifier's probability or any scalar score), so regressors and
//!   binary classifiers feed the same score-based detectors.
//! - **one string**: a `class` when it is a non-negative integer, else no
//!   prediction (label strings have no index to report).

use crate::observation::{FeatureValue, Prediction};

/// How far from 1 a row of probabilities may sum (FP16 outputs round).
pub(crate) const SUM_TOLERANCE: f64 = 1e-2;

/// The prediction one output row stands for; `integer` says the values are
/// of an integer (or boolean) type.
pub(crate) fn from_values(values: &[FeatureValue], integer: bool) -> Option<Prediction> {
    match values {
        [] => None,
        [FeatureValue::Number(x)] => Some(scalar(*x, integer)),
        [FeatureValue::Category(label)] => {
            label.trim().parse::<u32>().ok().map(|class| Prediction {
                class: Some(class),
                ..Prediction::default()
            })
        }
        [FeatureValue::Missing] => None,
        _ => {
            let numbers: Option<Vec<f64>> = values
                .iter()
                .map(|v| v.as_number().filter(|x| x.is_finite()))
                .collect();
            numbers.map(|xs| from_scores(&xs))
        }
    }
}

/// Probabilities as they are, anything else through a softmax.
pub(crate) fn from_scores(scores: &[f64]) -> Prediction {
    if is_distribution(scores) {
        Prediction::from_probabilities(scores)
    } else {
        Prediction::from_probabilities(&softmax(scores))
    }
}

fn scalar(x: f64, integer: bool) -> Prediction {
    if integer && x >= 0.0 && x <= f64::from(u32::MAX) && x.fract() == 0.0 {
        Prediction {
            class: Some(x as u32),
            ..Prediction::default()
        }
    } else if integer {
        Prediction {
            value: Some(x),
            ..Prediction::default()
        }
    } else {
        Prediction {
            score: Some(x),
            value: Some(x),
            ..Prediction::default()
        }
    }
}

fn is_distribution(xs: &[f64]) -> bool {
    xs.iter().all(|x| (0.0..=1.0).contains(x))
        && (xs.iter().sum::<f64>() - 1.0).abs() <= SUM_TOLERANCE
}

/// A numerically stable softmax.
pub(crate) fn softmax(xs: &[f64]) -> Vec<f64> {
    let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = xs.iter().map(|x| (x - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use FeatureValue::{Category, Number};

    #[test]
    fn probabilities_are_kept_and_logits_softmaxed() {
        let p = from_values(&[Number(0.1), Number(0.7), Number(0.2)], false);
        assert_eq!(p.as_ref().and_then(|p| p.class), Some(1));
        assert_eq!(p.and_then(|p| p.score), Some(0.7));
        let l = from_values(&[Number(2.0), Number(0.0), Number(-1.0)], false);
        let expected = 1.0 / (1.0 + (-2.0f64).exp() + (-3.0f64).exp());
        assert_eq!(l.as_ref().and_then(|p| p.class), Some(0));
        assert!((l.and_then(|p| p.score).unwrap_or(0.0) - expected).abs() < 1e-12);
    }

    #[test]
    fn scalars_follow_their_type() {
        assert_eq!(
            from_values(&[Number(2.0)], true).and_then(|p| p.class),
            Some(2)
        );
        assert_eq!(
            from_values(&[Number(-2.0)], true).and_then(|p| p.value),
            Some(-2.0)
        );
        let f = from_values(&[Number(0.25)], false);
        assert_eq!(f.as_ref().and_then(|p| p.value), Some(0.25));
        assert_eq!(f.and_then(|p| p.score), Some(0.25));
        assert_eq!(
            from_values(&[Category("4".into())], false).and_then(|p| p.class),
            Some(4)
        );
        assert_eq!(from_values(&[Category("cat".into())], false), None);
        assert_eq!(from_values(&[Number(f64::NAN), Number(1.0)], false), None);
        assert_eq!(from_values(&[], false), None);
    }

    #[test]
    fn softmax_survives_large_logits() {
        let p = softmax(&[1000.0, 1000.0]);
        assert_eq!(p, [0.5, 0.5]);
    }
}
