//! Protocol decoders: a copied [`Exchange`] in, [`Observation`]s out.
//!
//! Pure and synchronous (no I/O, no clock): the times come from the
//! exchange. A [`Decoder`] per wire protocol sits behind one enum;
//! [`decode`] picks one from the [`ModelSchema`] (or the path) and runs it.
//!
//! | decoder | routes | file |
//! |---|---|---|
//! | [`Decoder::KserveV2`] | `POST /v2/models/{m}[/versions/{v}]/infer`, JSON or Triton binary | `kserve_v2.rs`, `triton_binary.rs` |
//! | [`Decoder::KserveGrpc`] | `/inference.GRPCInferenceService/ModelInfer` | `kserve_grpc.rs` |
//! | [`Decoder::Tfserving`] | `POST /v1/models/{m}[/versions/{v}]:predict` | `tfserving.rs` |
//! | [`Decoder::Openai`] | `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings` | `openai.rs` |
//! | [`Decoder::Json`] | any, with JSON pointers from a [`JsonSpec`] | `json.rs` |
//!
//! **Rows and features.** Each row of a batch is one observation, its
//! features in the order of the schema's features. What a decoder finds is
//! either *named* (several 1-D tensors, objects, columns) and matched by
//! name, or *positional* (one `[B, F]` tensor, lists) and matched by
//! position. A configured feature that is absent is
//! [`FeatureValue::Missing`](crate::observation::FeatureValue::Missing);
//! what the schema lacks is reported in [`Decoded::extra_features`]. With
//! no features configured the names found are used (positional ones as
//! `input_0..input_{F-1}`, `dim_0..` for embeddings) and returned in
//! [`Decoded::features`] so the pipeline can freeze them. Numbers in
//! categorical features become category labels.
//!
//! **Predictions** follow one rule set for every protocol: several values
//! per row are probabilities (or logits, softmaxed), one integer is a class,
//! one float is a score and value. The output used is the schema's
//! [`ModelSchema::output`], else the first.
//!
//! **The response is optional.** The request alone gives the rows; when the
//! exchange has no response, a non-2xx status (or a non-zero `grpc-status`)
//! or an empty body, observations have `prediction: None` and there is no
//! error. When a 2xx response cannot be decoded (or its row count differs
//! from the request's) observations also have no prediction and the reason
//! is in [`Decoded::response_error`]. A request that cannot be decoded fails
//! the whole exchange, as does a copy cut short by `mirror.max_payload`
//! (`truncated_body`) or by a hang-up (`incomplete_body`). No input, however
//! malformed, makes a decoder panic or allocate from a declared size.

mod body;
mod error;
mod json;
mod kserve_grpc;
mod kserve_v2;
mod metadata;
mod openai;
mod prediction;
mod raw;
mod table;
mod tensor;
mod tfserving;
mod triton_binary;
mod value;

use std::sync::Arc;

use prost::Message;

pub use crate::config::Protocol;
pub use error::{DecodeError, Part};
pub use kserve_grpc::{MODEL_INFER_PATH, pb};
pub use metadata::{ModelMetadata, TensorMetadata, parse_model_metadata};
pub use openai::FEATURES as OPENAI_FEATURES;
pub use tfserving::PREFERRED_OUTPUTS;

use crate::config::Model;
use crate::mirror::Exchange;
use crate::observation::{Observation, Prediction};
use table::Table;

/// What the decoders need to know about one model, built from its config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSchema {
    /// The configured model name; every observation carries it.
    pub name: Arc<str>,
    /// The wire protocol; `None` detects it per exchange from the path.
    pub protocol: Option<Protocol>,
    /// Feature names in the order observations hold them; empty until
    /// known (the decoders then name features themselves, see the module
    /// docs, and the pipeline may freeze what [`Decoded::features`] says).
    pub features: Vec<String>,
    /// Which of the features are categorical: numbers there become labels.
    pub categorical: Vec<String>,
    /// The output tensor (or named output) to predict from; `None` takes
    /// the first, for models that return several (e.g. `probabilities` and
    /// `predicted_class`).
    pub output: Option<String>,
    /// Where features and predictions are for the `json` protocol; `None`
    /// uses [`JsonSpec::default`].
    pub json: Option<JsonSpec>,
}

/// JSON pointers (RFC 6901) for the `json` protocol (see `json.rs`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JsonSpec {
    /// The array of rows in the request; `None`: the whole body is one row.
    pub rows: Option<String>,
    /// Pointers relative to a row for features not at `/<name>`; when the
    /// schema has no features these also name them, in this order.
    pub features: Vec<FeaturePointer>,
    /// The prediction, relative to a response row (or to the whole
    /// response without `response_rows`); `None`: no predictions.
    pub prediction: Option<String>,
    /// The array of per-row answers in the response, if it has one.
    pub response_rows: Option<String>,
}

/// Where one feature is in a JSON row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeaturePointer {
    /// The feature's name.
    pub name: String,
    /// Its JSON pointer relative to the row (`""` is the row itself).
    pub pointer: String,
}

/// What one exchange decoded into.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The protocol that decoded it.
    pub protocol: Protocol,
    /// One observation per row, features in the order of [`Decoded::features`].
    pub observations: Vec<Observation>,
    /// The feature names used: the schema's, or the ones found when it has none.
    pub features: Vec<String>,
    /// Names found in the request that the schema does not configure.
    pub extra_features: Vec<String>,
    /// Why a 2xx response could not give predictions, if it could not.
    pub response_error: Option<DecodeError>,
}

/// A decoder per wire protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoder {
    /// KServe v2 REST, including the Triton binary tensor extension.
    KserveV2,
    /// KServe v2 gRPC `ModelInfer`.
    KserveGrpc,
    /// TensorFlow Serving / KServe v1 REST.
    Tfserving,
    /// OpenAI-compatible completions, chat and embeddings.
    Openai,
    /// Any JSON, with the schema's [`JsonSpec`].
    Json,
}

/// What a decoder found, before it is bound to the schema.
#[derive(Debug)]
pub(crate) struct Parts {
    /// The request's rows.
    pub table: Table,
    /// The version the request named (path or message).
    pub version: Option<String>,
    /// The response's answer: `Ok(None)` when there is nothing to decode.
    pub answer: Result<Option<Answer>, DecodeError>,
}

/// A decoded response.
#[derive(Debug)]
pub(crate) struct Answer {
    /// One per row.
    pub predictions: Vec<Option<Prediction>>,
    /// The version that answered, if the response says.
    pub version: Option<String>,
}

/// The protocol a request path implies: `/v2/models/...` and (for a
/// gRPC or absent content type) `/inference.GRPCInferenceService/ModelInfer`
/// are KServe v2, `/v1/models/{m}[/versions/{v}]:predict` is tfserving,
/// paths ending in `/v1/chat/completions`, `/v1/completions` or
/// `/v1/embeddings` are OpenAI. Other gRPC calls and other paths: `None`
/// (the `json` protocol is only ever configured).
pub fn detect(path: &str, content_type: Option<&str>) -> Option<Protocol> {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    if path == MODEL_INFER_PATH {
        return content_type
            .is_none_or(is_grpc)
            .then_some(Protocol::KserveV2);
    }
    if content_type.is_some_and(is_grpc) {
        None
    } else if path.starts_with("/v2/models/") {
        Some(Protocol::KserveV2)
    } else if tfserving::route(path).is_some() {
        Some(Protocol::Tfserving)
    } else if openai::endpoint(path).is_some() {
        Some(Protocol::Openai)
    } else {
        None
    }
}

/// Decodes one exchange for a model (see the module docs for the rules).
pub fn decode(exchange: &Exchange, schema: &ModelSchema) -> Result<Decoded, DecodeError> {
    Decoder::select(exchange, schema)?.decode(exchange, schema)
}

/// The model an exchange addresses, from the path (KServe v2, tfserving),
/// the `ModelInfer` message, or the OpenAI request's `model`; for routing
/// an exchange to its schema when the path alone does not say (gRPC).
pub fn model_name(exchange: &Exchange) -> Option<String> {
    let path = exchange.request.uri.path();
    if let Some(route) = kserve_v2::route(path) {
        return Some(route.model.to_owned());
    }
    if let Some(route) = tfserving::route(path) {
        return Some(route.model.to_owned());
    }
    let body = body::request(exchange).ok()?;
    if path == MODEL_INFER_PATH {
        let message = kserve_grpc::first_message(body, Part::Request).ok()??;
        let request = pb::ModelInferRequest::decode(message).ok()?;
        return Some(request.model_name).filter(|m| !m.is_empty());
    }
    if openai::endpoint(path).is_some() {
        let request: serde_json::Value = body::json(Part::Request, body).ok()?;
        return request.get("model")?.as_str().map(str::to_owned);
    }
    None
}

fn is_grpc(content_type: &str) -> bool {
    content_type.starts_with("application/grpc")
}

// === impl ModelSchema ===

impl ModelSchema {
    /// A schema with just a name: protocol detected, features learned.
    pub fn new(name: &str) -> ModelSchema {
        ModelSchema {
            name: Arc::from(name),
            protocol: None,
            features: Vec::new(),
            categorical: Vec::new(),
            output: None,
            json: None,
        }
    }

    /// The schema a configured model implies.
    pub fn from_model(model: &Model) -> ModelSchema {
        ModelSchema {
            protocol: model.protocol,
            features: model.features.clone(),
            categorical: model.categorical.clone(),
            output: model.output.clone(),
            json: model.json.as_ref().map(|json| JsonSpec {
                rows: json.rows.clone(),
                features: json
                    .features
                    .iter()
                    .map(|(name, pointer)| FeaturePointer {
                        name: name.clone(),
                        pointer: pointer.clone(),
                    })
                    .collect(),
                prediction: json.prediction.clone(),
                response_rows: json.prediction_rows.clone(),
            }),
            ..ModelSchema::new(&model.name)
        }
    }
}

// === impl Decoder ===

impl Decoder {
    /// The decoder for an exchange: the schema's protocol, else the one the
    /// path implies; KServe v2 is gRPC for the `ModelInfer` path or a gRPC
    /// content type.
    pub fn select(exchange: &Exchange, schema: &ModelSchema) -> Result<Decoder, DecodeError> {
        let path = exchange.request.uri.path();
        let content_type = body::content_type(&exchange.request.headers);
        let protocol = schema
            .protocol
            .or_else(|| detect(path, content_type))
            .ok_or_else(|| DecodeError::UnknownProtocol {
                path: path.to_owned(),
            })?;
        Ok(match protocol {
            Protocol::KserveV2 if path == MODEL_INFER_PATH || content_type.is_some_and(is_grpc) => {
                Decoder::KserveGrpc
            }
            Protocol::KserveV2 => Decoder::KserveV2,
            Protocol::Tfserving => Decoder::Tfserving,
            Protocol::Openai => Decoder::Openai,
            Protocol::Json => Decoder::Json,
        })
    }

    /// The configured protocol this decoder speaks.
    pub fn protocol(self) -> Protocol {
        match self {
            Decoder::KserveV2 | Decoder::KserveGrpc => Protocol::KserveV2,
            Decoder::Tfserving => Protocol::Tfserving,
            Decoder::Openai => Protocol::Openai,
            Decoder::Json => Protocol::Json,
        }
    }

    /// Decodes an exchange into observations for the schema's model.
    pub fn decode(self, exchange: &Exchange, schema: &ModelSchema) -> Result<Decoded, DecodeError> {
        let parts = match self {
            Decoder::KserveV2 => kserve_v2::decode(exchange, schema),
            Decoder::KserveGrpc => kserve_grpc::decode(exchange, schema),
            Decoder::Tfserving => tfserving::decode(exchange, schema),
            Decoder::Openai => openai::decode(exchange),
            Decoder::Json => json::decode(exchange, schema),
        }?;
        Ok(parts.finish(exchange, schema, self.protocol()))
    }
}

// === impl Parts ===

impl Parts {
    /// Binds the rows to the schema and pairs them with the predictions.
    fn finish(self, exchange: &Exchange, schema: &ModelSchema, protocol: Protocol) -> Decoded {
        let bound = self.table.bind(schema);
        let rows = bound.rows.len();
        let (mut predictions, answered_version, response_error) = match self.answer {
            Ok(Some(answer)) if answer.predictions.len() == rows => {
                (answer.predictions, answer.version, None)
            }
            Ok(Some(answer)) => {
                let error = DecodeError::BatchMismatch {
                    what: "the response".to_owned(),
                    expected: rows,
                    found: answer.predictions.len(),
                };
                (Vec::new(), answer.version, Some(error))
            }
            Ok(None) => (Vec::new(), None, None),
            Err(error) => (Vec::new(), None, Some(error)),
        };
        let version: Option<Arc<str>> = answered_version
            .filter(|v| !v.is_empty())
            .or(self.version.filter(|v| !v.is_empty()))
            .map(Arc::from);
        let request_id: Arc<str> = Arc::from(exchange.request_id.as_str());
        let observations = bound
            .rows
            .into_iter()
            .enumerate()
            .map(|(i, features)| Observation {
                model: schema.name.clone(),
                version: version.clone(),
                time: exchange.timings.received_at,
                request_id: request_id.clone(),
                exchange: exchange.serial,
                row: u32::try_from(i).unwrap_or(u32::MAX),
                features,
                prediction: predictions.get_mut(i).and_then(Option::take),
            })
            .collect();
        Decoded {
            protocol,
            observations,
            features: bound.features,
            extra_features: bound.extra,
            response_error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_detect_protocols() {
        let grpc = Some("application/grpc+proto");
        assert_eq!(
            detect("/v2/models/iris/infer", None),
            Some(Protocol::KserveV2)
        );
        assert_eq!(
            detect(
                "/v2/models/iris/versions/1/infer?x=1",
                Some("application/json")
            ),
            Some(Protocol::KserveV2)
        );
        assert_eq!(detect(MODEL_INFER_PATH, grpc), Some(Protocol::KserveV2));
        assert_eq!(detect(MODEL_INFER_PATH, Some("text/plain")), None);
        assert_eq!(
            detect("/inference.GRPCInferenceService/ModelMetadata", grpc),
            None
        );
        assert_eq!(
            detect("/v1/models/m:predict", None),
            Some(Protocol::Tfserving)
        );
        assert_eq!(
            detect("/v1/models/m/versions/2:predict", None),
            Some(Protocol::Tfserving)
        );
        assert_eq!(
            detect("/v1/chat/completions", Some("application/json")),
            Some(Protocol::Openai)
        );
        assert_eq!(detect("/v1/completions", None), Some(Protocol::Openai));
        assert_eq!(detect("/v1/embeddings", None), Some(Protocol::Openai));
        assert_eq!(detect("/predict", None), None);
        assert_eq!(detect("/v2/health/ready", None), None);
    }
}
