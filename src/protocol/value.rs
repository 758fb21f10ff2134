//! Plain JSON values (tfserving, `json`) as feature values and predictions.
//!
//! A number is a number, a boolean is 0/1, a string is a category, `null`
//! and anything absent are missing; objects are not feature values
//! (missing). Arrays flatten into several values in order.

use std::sync::Arc;

use serde_json::Value;

use super::prediction;
use crate::observation::{FeatureValue, Prediction};

/// One JSON value as a feature value.
pub(crate) fn scalar(value: &Value) -> FeatureValue {
    match value {
        Value::Number(n) => FeatureValue::Number(n.as_f64().unwrap_or(f64::NAN)),
        Value::Bool(b) => FeatureValue::Number(f64::from(u8::from(*b))),
        Value::String(s) => FeatureValue::Category(Arc::from(s.as_str())),
        Value::Null | Value::Array(_) | Value::Object(_) => FeatureValue::Missing,
    }
}

/// The leaves of a (possibly nested) array, in order; a non-array is one
/// leaf. Depth is bounded by the JSON parser's recursion limit.
pub(crate) fn flatten(value: &Value, out: &mut Vec<FeatureValue>) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| flatten(item, out)),
        leaf => out.push(scalar(leaf)),
    }
}

/// Whether every leaf is a JSON integer or boolean (so a single one is a
/// class, see [`prediction`]).
fn all_integers(value: &Value) -> bool {
    match value {
        Value::Array(items) => items.iter().all(all_integers),
        Value::Number(n) => n.is_i64() || n.is_u64(),
        Value::Bool(_) => true,
        _ => false,
    }
}

/// The prediction one row's output value stands for (see [`prediction`]).
pub(crate) fn prediction(value: &Value) -> Option<Prediction> {
    let mut values = Vec::new();
    flatten(value, &mut values);
    prediction::from_values(&values, all_integers(value))
}

/// Escapes a name into a JSON pointer token (RFC 6901).
pub(crate) fn pointer_token(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_values_map_to_features_and_predictions() {
        let mut out = Vec::new();
        flatten(&json!([[1, true], ["a", null, {}]]), &mut out);
        assert_eq!(out.len(), 5);
        assert_eq!(out.get(2), Some(&FeatureValue::Category("a".into())));
        assert_eq!(prediction(&json!(2)).and_then(|p| p.class), Some(2));
        assert_eq!(prediction(&json!(2.0)).and_then(|p| p.value), Some(2.0));
        assert_eq!(
            prediction(&json!([[0.2, 0.8]])).and_then(|p| p.class),
            Some(1)
        );
        assert_eq!(prediction(&json!({"a": 1})), None);
        assert_eq!(pointer_token("a/b~c"), "a~1b~0c");
    }
}
