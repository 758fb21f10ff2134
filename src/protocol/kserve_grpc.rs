//! KServe v2 / Open Inference Protocol over gRPC:
//! `/inference.GRPCInferenceService/ModelInfer`.
//!
//! Bodies are gRPC-framed (a 1-byte compressed flag and a 4-byte big-endian
//! length before each message); the first message is decoded (`ModelInfer`
//! is unary). Compressed messages are reported, not inflated. Tensors carry
//! typed `contents` or, in the order of the tensors, `raw_*_contents`
//! (little-endian; FP16/BF16 only this way). The version is the response's
//! `model_version`, else the request's. A response whose `grpc-status`
//! (trailers, or headers of a trailers-only response) is not `0` has no
//! predictions.

use bytes::{Buf, Bytes};
use prost::Message;

use super::error::{DecodeError, Part};
use super::tensor::{self, Datatype, Tensor};
use super::{Answer, ModelSchema, Parts, body, raw};
use crate::mirror::Exchange;
use crate::observation::FeatureValue;

/// Types generated from `proto/kserve/grpc_predict_v2.proto`: messages,
/// client and server of `inference.GRPCInferenceService`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("inference");
}

/// The path of the `ModelInfer` method.
pub const MODEL_INFER_PATH: &str = "/inference.GRPCInferenceService/ModelInfer";

/// The gRPC frame prefix: compressed flag and big-endian length.
const PREFIX: usize = 5;

/// The first message of a gRPC-framed body; `None` for an empty body.
pub(crate) fn first_message(body: &Bytes, part: Part) -> Result<Option<Bytes>, DecodeError> {
    if body.is_empty() {
        return Ok(None);
    }
    let bad = |detail: String| DecodeError::BadGrpcFrame { part, detail };
    let Some((prefix, rest)) = body.split_first_chunk::<PREFIX>() else {
        return Err(bad(format!(
            "{} bytes, too few for a frame prefix",
            body.len()
        )));
    };
    let [flag, length @ ..] = *prefix;
    match flag {
        0 => {}
        1 => return Err(DecodeError::CompressedGrpc { part }),
        other => return Err(bad(format!("unknown frame flag {other}"))),
    }
    let length = usize::try_from(u32::from_be_bytes(length)).unwrap_or(usize::MAX);
    if length > rest.len() {
        return Err(bad(format!(
            "a message of {length} bytes with {} bytes left",
            rest.len()
        )));
    }
    Ok(Some(body.slice(PREFIX..PREFIX + length)))
}

/// Decodes a `ModelInfer` exchange.
pub(crate) fn decode(exchange: &Exchange, schema: &ModelSchema) -> Result<Parts, DecodeError> {
    let path = exchange.request.uri.path();
    if path != MODEL_INFER_PATH {
        return Err(DecodeError::NotInference {
            path: path.to_owned(),
        });
    }
    let message =
        first_message(body::request(exchange)?, Part::Request)?.ok_or(DecodeError::EmptyBody {
            part: Part::Request,
        })?;
    let request = pb::ModelInferRequest::decode(message).map_err(|e| protobuf(Part::Request, e))?;
    let mut tensors = Vec::with_capacity(request.inputs.len());
    for (i, input) in request.inputs.into_iter().enumerate() {
        let contents = Contents::pick(request.raw_input_contents.get(i), input.contents.as_ref());
        let (datatype, values) =
            contents.values(&input.name, &input.datatype, &input.shape, Part::Request)?;
        tensors.push(Tensor::new(input.name, datatype, &input.shape, values)?);
    }
    Ok(Parts {
        table: tensor::inputs_table(tensors, schema)?,
        version: Some(request.model_version),
        answer: response(exchange, schema),
    })
}

fn response(exchange: &Exchange, schema: &ModelSchema) -> Result<Option<Answer>, DecodeError> {
    if !status_ok(exchange) {
        return Ok(None);
    }
    let Some(body) = body::response(exchange)? else {
        return Ok(None);
    };
    let Some(message) = first_message(body, Part::Response)? else {
        return Ok(None);
    };
    let response =
        pb::ModelInferResponse::decode(message).map_err(|e| protobuf(Part::Response, e))?;
    let chosen = tensor::output_index(response.outputs.iter().map(|o| o.name.as_str()), schema)?;
    let output = response
        .outputs
        .get(chosen)
        .ok_or_else(|| DecodeError::MissingOutput {
            detail: "no outputs".to_owned(),
        })?;
    let contents = Contents::pick(
        response.raw_output_contents.get(chosen),
        output.contents.as_ref(),
    );
    let (datatype, values) = contents.values(
        &output.name,
        &output.datatype,
        &output.shape,
        Part::Response,
    )?;
    let tensor = Tensor::new(output.name.clone(), datatype, &output.shape, values)?;
    Ok(Some(Answer {
        predictions: tensor.predictions(),
        version: Some(response.model_version),
    }))
}

/// Whether the call succeeded, as far as its `grpc-status` says (absent
/// counts as success: the body then speaks for itself).
fn status_ok(exchange: &Exchange) -> bool {
    let status = exchange
        .response_trailers
        .as_ref()
        .and_then(|t| t.get("grpc-status"))
        .or_else(|| {
            exchange
                .response
                .as_ref()
                .and_then(|r| r.headers.get("grpc-status"))
        });
    status.is_none_or(|s| s == b"0")
}

fn protobuf(part: Part, error: prost::DecodeError) -> DecodeError {
    DecodeError::BadProtobuf {
        part,
        detail: error.to_string(),
    }
}

/// Where one tensor's data is.
enum Contents<'a> {
    Raw(&'a Bytes),
    Typed(Option<&'a pb::InferTensorContents>),
}

// === impl Contents ===

impl<'a> Contents<'a> {
    fn pick(raw: Option<&'a Bytes>, typed: Option<&'a pb::InferTensorContents>) -> Contents<'a> {
        match raw {
            Some(raw) => Contents::Raw(raw),
            None => Contents::Typed(typed),
        }
    }

    fn values(
        &self,
        name: &str,
        datatype_name: &str,
        shape: &[i64],
        part: Part,
    ) -> Result<(Datatype, Vec<FeatureValue>), DecodeError> {
        let datatype = Datatype::parse(name, datatype_name)?;
        let count = tensor::element_count(name, shape)?;
        let typed = match self {
            Contents::Raw(bytes) => {
                return Ok((
                    datatype,
                    raw::decode(name, datatype, count, bytes.chunk(), part)?,
                ));
            }
            Contents::Typed(None) => return Ok((datatype, Vec::new())),
            Contents::Typed(Some(typed)) => typed,
        };
        let numbers = |xs: Vec<f64>| xs.into_iter().map(FeatureValue::Number).collect();
        let values = match datatype {
            Datatype::Bool => numbers(
                typed
                    .bool_contents
                    .iter()
                    .map(|&b| f64::from(u8::from(b)))
                    .collect(),
            ),
            Datatype::Int8 | Datatype::Int16 | Datatype::Int32 => {
                numbers(typed.int_contents.iter().map(|&x| f64::from(x)).collect())
            }
            Datatype::Int64 => numbers(typed.int64_contents.iter().map(|&x| x as f64).collect()),
            Datatype::Uint8 | Datatype::Uint16 | Datatype::Uint32 => {
                numbers(typed.uint_contents.iter().map(|&x| f64::from(x)).collect())
            }
            Datatype::Uint64 => numbers(typed.uint64_contents.iter().map(|&x| x as f64).collect()),
            Datatype::Fp32 => numbers(typed.fp32_contents.iter().map(|&x| f64::from(x)).collect()),
            Datatype::Fp64 => typed
                .fp64_contents
                .iter()
                .map(|&x| FeatureValue::Number(x))
                .collect(),
            Datatype::Bytes => typed
                .bytes_contents
                .iter()
                .map(|b| FeatureValue::Category(String::from_utf8_lossy(b).into()))
                .collect(),
            Datatype::Fp16 | Datatype::Bf16 => {
                return Err(DecodeError::InvalidField {
                    part,
                    field: format!("{name}.contents"),
                    detail: format!("{datatype_name} has no typed contents; it must be sent raw"),
                });
            }
        };
        Ok((datatype, values))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_checked() {
        let kind = |bytes: &[u8]| {
            first_message(&Bytes::copy_from_slice(bytes), Part::Request).map_err(|e| e.kind())
        };
        assert_eq!(kind(&[]), Ok(None));
        assert_eq!(
            kind(&[0, 0, 0, 0, 2, 8, 1]),
            Ok(Some(Bytes::from_static(&[8, 1])))
        );
        assert_eq!(kind(&[0, 0, 0, 0, 3, 8, 1]), Err("bad_grpc_frame"));
        assert_eq!(kind(&[1, 0, 0, 0, 0]), Err("compressed_grpc"));
        assert_eq!(kind(&[2, 0, 0, 0, 0]), Err("bad_grpc_frame"));
        assert_eq!(kind(&[0, 0]), Err("bad_grpc_frame"));
        assert_eq!(kind(&[0, 255, 255, 255, 255]), Err("bad_grpc_frame"));
    }
}
