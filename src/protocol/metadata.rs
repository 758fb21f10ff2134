//! KServe v2 model metadata (`GET /v2/models/{m}[/versions/{v}]`), so the
//! pipeline can learn a model's feature names at start-up.

use serde::Deserialize;

use super::body;
use super::error::{DecodeError, Part};
use super::table::column_name;

/// A model's metadata document.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ModelMetadata {
    /// The model's name.
    pub name: String,
    /// The versions the server has.
    #[serde(default)]
    pub versions: Vec<String>,
    /// The model's platform (framework), if given.
    #[serde(default)]
    pub platform: Option<String>,
    /// The model's inputs.
    #[serde(default)]
    pub inputs: Vec<TensorMetadata>,
    /// The model's outputs.
    #[serde(default)]
    pub outputs: Vec<TensorMetadata>,
}

/// One input or output tensor's description.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TensorMetadata {
    /// The tensor's name.
    pub name: String,
    /// Its datatype (`FP32`, `INT64`, `BYTES`, ...).
    pub datatype: String,
    /// Its shape; `-1` marks a variable dimension (usually the batch).
    #[serde(default)]
    pub shape: Vec<i64>,
}

/// Parses a metadata response body.
pub fn parse_model_metadata(body: &[u8]) -> Result<ModelMetadata, DecodeError> {
    body::json(Part::Response, body)
}

// === impl ModelMetadata ===

impl ModelMetadata {
    /// The feature names the decoders would give this model's inputs when
    /// no features are configured (the first dimension is the batch):
    ///
    /// - one input of width `F` (`[-1, F]`): `input_0..input_{F-1}`; empty
    ///   when `F` is variable (the names are then learned from traffic);
    /// - several inputs: each input's name when its width is 1,
    ///   `{name}_0..{name}_{W-1}` for width `W`, its name when variable.
    pub fn feature_names(&self) -> Vec<String> {
        match self.inputs.as_slice() {
            [] => Vec::new(),
            [single] => match width(&single.shape) {
                Some(w) => (0..w).map(|j| column_name("input", j)).collect(),
                None => Vec::new(),
            },
            several => several
                .iter()
                .flat_map(|t| match width(&t.shape) {
                    Some(w) if w > 1 => (0..w).map(|j| column_name(&t.name, j)).collect(),
                    _ => vec![t.name.clone()],
                })
                .collect(),
        }
    }
}

/// Values per batch row, when every dimension after the first is known.
/// Capped so a hostile document cannot make us build millions of names.
fn width(shape: &[i64]) -> Option<usize> {
    const MAX_WIDTH: u64 = 1 << 16;
    let rest = shape.get(1..).unwrap_or_default();
    let width = rest.iter().try_fold(1u64, |w, &d| {
        u64::try_from(d).ok().and_then(|d| w.checked_mul(d))
    })?;
    (width <= MAX_WIDTH)
        .then(|| usize::try_from(width).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_parses_and_names_features() {
        let body = br#"{"name":"iris","versions":["1"],"platform":"sklearn",
            "inputs":[{"name":"input","datatype":"FP32","shape":[-1,4]}],
            "outputs":[{"name":"probabilities","datatype":"FP32","shape":[-1,3]}]}"#;
        let meta = parse_model_metadata(body).expect("valid metadata");
        assert_eq!(
            meta.feature_names(),
            ["input_0", "input_1", "input_2", "input_3"]
        );
        let several = br#"{"name":"m","inputs":[{"name":"a","datatype":"FP32","shape":[-1,1]},
            {"name":"b","datatype":"BYTES","shape":[-1]},{"name":"c","datatype":"FP32","shape":[-1,2]}]}"#;
        let meta = parse_model_metadata(several).expect("valid metadata");
        assert_eq!(meta.feature_names(), ["a", "b", "c_0", "c_1"]);
        assert_eq!(
            parse_model_metadata(b"{").map_err(|e| e.kind()),
            Err("malformed_json")
        );
        assert_eq!(
            parse_model_metadata(b"{}").map_err(|e| e.kind()),
            Err("invalid_field")
        );
    }
}
