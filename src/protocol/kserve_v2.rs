//! KServe v2 / Open Inference Protocol over REST.
//!
//! `POST /v2/models/{m}[/versions/{v}]/infer` with a JSON document
//! `{"id", "parameters", "inputs": [{"name", "shape", "datatype", "data",
//! "parameters"}], "outputs": [{"name"}]}`; `data` is flat or nested,
//! row-major, of any protocol datatype. Bodies with the Triton binary
//! extension ([`triton_binary`](super::triton_binary)) are decoded too.
//! The response `{"model_name", "model_version", "id", "outputs": [...]}`
//! gives the predictions (see [`tensor`](super::tensor) for rows and
//! output selection); the version is the response's `model_version`, else
//! the path's.

use serde::Deserialize;
use serde_json::Value;

use super::error::{DecodeError, Part};
use super::tensor::{self, Datatype, Tensor};
use super::triton_binary::{self, BinaryData};
use super::{Answer, ModelSchema, Parts, body, raw};
use crate::mirror::Exchange;

/// What a `/v2/models/...` path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Route<'a> {
    /// The model's name.
    pub model: &'a str,
    /// The version, when the path has one.
    pub version: Option<&'a str>,
    /// Whether it is the `infer` endpoint.
    pub infer: bool,
}

#[derive(Deserialize)]
struct InferRequest {
    #[serde(default)]
    inputs: Option<Vec<JsonTensor>>,
}

#[derive(Deserialize)]
struct InferResponse {
    #[serde(default)]
    model_version: Option<Value>,
    #[serde(default)]
    outputs: Option<Vec<JsonTensor>>,
}

#[derive(Deserialize)]
struct JsonTensor {
    name: String,
    #[serde(default)]
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    parameters: Option<TensorParameters>,
}

#[derive(Deserialize)]
struct TensorParameters {
    #[serde(default)]
    binary_data_size: Option<u64>,
}

/// Parses a `/v2/models/{m}[/versions/{v}][/...]` path.
pub(crate) fn route(path: &str) -> Option<Route<'_>> {
    let rest = path.strip_prefix("/v2/models/")?;
    let segments: Vec<&str> = rest.split('/').collect();
    let (model, version, tail) = match segments.as_slice() {
        [model, "versions", version, tail @ ..] => (*model, Some(*version), tail),
        [model, tail @ ..] => (*model, None, tail),
        [] => return None,
    };
    if model.is_empty() || version.is_some_and(str::is_empty) {
        return None;
    }
    Some(Route {
        model,
        version,
        infer: tail == ["infer"],
    })
}

/// Decodes an infer exchange.
pub(crate) fn decode(exchange: &Exchange, schema: &ModelSchema) -> Result<Parts, DecodeError> {
    let path = exchange.request.uri.path();
    let route = route(path)
        .filter(|r| r.infer)
        .ok_or_else(|| DecodeError::NotInference {
            path: path.to_owned(),
        })?;
    let body = body::request(exchange)?;
    let (json, mut binary) = triton_binary::split(&exchange.request.headers, body, Part::Request)?;
    let request: InferRequest = body::json(Part::Request, json)?;
    let inputs = request.inputs.ok_or_else(|| DecodeError::MissingField {
        part: Part::Request,
        field: "inputs".to_owned(),
    })?;
    let tensors = inputs
        .into_iter()
        .map(|t| t.decode(&mut binary, Part::Request))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Parts {
        table: tensor::inputs_table(tensors, schema)?,
        version: route.version.map(str::to_owned),
        answer: response(exchange, schema),
    })
}

fn response(exchange: &Exchange, schema: &ModelSchema) -> Result<Option<Answer>, DecodeError> {
    let (Some(body), Some(head)) = (body::response(exchange)?, &exchange.response) else {
        return Ok(None);
    };
    let (json, mut binary) = triton_binary::split(&head.headers, body, Part::Response)?;
    let response: InferResponse = body::json(Part::Response, json)?;
    let outputs = response.outputs.ok_or_else(|| DecodeError::MissingField {
        part: Part::Response,
        field: "outputs".to_owned(),
    })?;
    let chosen = tensor::output_index(outputs.iter().map(|o| o.name.as_str()), schema)?;
    // Binary data follows the order of the outputs: skip what comes before.
    for (i, output) in outputs.into_iter().enumerate() {
        if i == chosen {
            let tensor = output.decode(&mut binary, Part::Response)?;
            return Ok(Some(Answer {
                predictions: tensor.predictions(),
                version: response.model_version.as_ref().and_then(version_text),
            }));
        }
        if let Some(size) = output.binary_size() {
            binary.take(&output.name, size)?;
        }
    }
    Err(DecodeError::MissingOutput {
        detail: "no outputs".to_owned(),
    })
}

/// A version as text; some servers send a number.
pub(crate) fn version_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

// === impl JsonTensor ===

impl JsonTensor {
    fn binary_size(&self) -> Option<u64> {
        self.parameters.as_ref().and_then(|p| p.binary_data_size)
    }

    fn decode(self, binary: &mut BinaryData<'_>, part: Part) -> Result<Tensor, DecodeError> {
        let datatype = Datatype::parse(&self.name, &self.datatype)?;
        let values = match (self.binary_size(), &self.data) {
            (Some(size), _) => {
                let count = tensor::element_count(&self.name, &self.shape)?;
                let bytes = binary.take(&self.name, size)?;
                raw::decode(&self.name, datatype, count, bytes, part)?
            }
            (None, Some(data)) => tensor::json_values(&self.name, datatype, data)?,
            (None, None) => {
                let detail = format!("no data for tensor `{}`", self.name);
                return Err(match part {
                    Part::Request => DecodeError::MissingInput { detail },
                    Part::Response => DecodeError::MissingOutput { detail },
                });
            }
        };
        Tensor::new(self.name, datatype, &self.shape, values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_name_model_version_and_endpoint() {
        let infer = route("/v2/models/iris/versions/3/infer");
        assert_eq!(
            infer,
            Some(Route {
                model: "iris",
                version: Some("3"),
                infer: true
            })
        );
        assert_eq!(
            route("/v2/models/iris/infer").map(|r| (r.version, r.infer)),
            Some((None, true))
        );
        assert_eq!(route("/v2/models/iris").map(|r| r.infer), Some(false));
        assert_eq!(route("/v2/models/iris/ready").map(|r| r.infer), Some(false));
        assert_eq!(route("/v2/models/"), None);
        assert_eq!(route("/v2/health/ready"), None);
    }
}
