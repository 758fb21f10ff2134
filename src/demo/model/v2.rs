//! The Open Inference Protocol (KServe v2) documents of the demo model:
//! its metadata, parsing an infer request into rows, and the response.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::iris;

/// The model's name in paths and documents.
pub const MODEL_NAME: &str = "iris";
/// The only version served.
pub const MODEL_VERSION: &str = "1";

const INPUT: &str = "input";
const PROBABILITIES: &str = "probabilities";
const PREDICTED_CLASS: &str = "predicted_class";
const FEATURE_COUNT: usize = iris::FEATURES.len();
/// Bounds the work one request can ask for.
const MAX_ROWS: usize = 4096;

/// A valid infer request.
#[derive(Debug, Clone, PartialEq)]
pub struct InferRequest {
    /// Echoed back so clients can match responses.
    pub id: Option<String>,
    /// One row of measurements per batch element.
    pub rows: Vec<[f64; FEATURE_COUNT]>,
    /// Whether each output was asked for: probabilities, predicted class.
    pub wanted: [bool; 2],
}

/// Why a request was refused, as a sentence for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(String);

// Unknown fields such as `parameters` are allowed, as the protocol says.
#[derive(Deserialize)]
struct RawRequest {
    id: Option<String>,
    inputs: Vec<RawInput>,
    outputs: Option<Vec<RawOutput>>,
}

#[derive(Deserialize)]
struct RawInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    data: Value,
}

#[derive(Deserialize)]
struct RawOutput {
    name: String,
}

#[derive(Serialize)]
struct InferResponse<'a> {
    model_name: &'static str,
    model_version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<Tensor>,
}

#[derive(Serialize)]
struct Tensor {
    name: &'static str,
    shape: Vec<usize>,
    datatype: &'static str,
    data: TensorData,
}

// Typed vectors so that FP32 values print as short f32 decimals, not as
// their f64 widening (0.97, not 0.9700000286102295).
#[derive(Serialize)]
#[serde(untagged)]
enum TensorData {
    Fp32(Vec<f32>),
    Int64(Vec<i64>),
}

/// The model metadata document (`GET /v2/models/iris`).
pub fn metadata() -> Value {
    json!({
        "name": MODEL_NAME,
        "versions": [MODEL_VERSION],
        "platform": "sidewatch_demo",
        "inputs": [{ "name": INPUT, "datatype": "FP32", "shape": [-1, FEATURE_COUNT] }],
        "outputs": [
            { "name": PROBABILITIES, "datatype": "FP32", "shape": [-1, iris::CLASSES.len()] },
            { "name": PREDICTED_CLASS, "datatype": "INT64", "shape": [-1] },
        ],
    })
}

/// Parses and checks an infer request body.
pub fn parse_request(body: &[u8]) -> Result<InferRequest, BadRequest> {
    let raw: RawRequest = serde_json::from_slice(body)
        .map_err(|e| BadRequest(format!("The body is not a valid infer request: {e}.")))?;
    let input = match raw.inputs.as_slice() {
        [input] if input.name == INPUT => input,
        [input] => {
            return Err(BadRequest(format!(
                "Unknown input {:?}; the model takes one input named {INPUT:?}.",
                input.name
            )));
        }
        inputs => {
            return Err(BadRequest(format!(
                "Expected one input named {INPUT:?}, got {}.",
                inputs.len()
            )));
        }
    };
    if input.datatype != "FP32" {
        return Err(BadRequest(format!(
            "Input {INPUT:?} has datatype {:?}; the model takes FP32.",
            input.datatype
        )));
    }
    let batch = match input.shape.as_slice() {
        [b, f] if *f == FEATURE_COUNT as i64 && (1..=MAX_ROWS as i64).contains(b) => *b as usize,
        _ => {
            return Err(BadRequest(format!(
                "Input {INPUT:?} has shape {:?}; expected [B, {FEATURE_COUNT}] with 1 <= B <= {MAX_ROWS}.",
                input.shape
            )));
        }
    };
    let mut values = Vec::with_capacity(batch * FEATURE_COUNT);
    flatten(&input.data, &mut values)?;
    if values.len() != batch * FEATURE_COUNT {
        return Err(BadRequest(format!(
            "Input {INPUT:?} has {} values; shape {:?} needs {}.",
            values.len(),
            input.shape,
            batch * FEATURE_COUNT
        )));
    }
    let rows = values
        .chunks_exact(FEATURE_COUNT)
        .map(|c| [c[0], c[1], c[2], c[3]])
        .collect();
    Ok(InferRequest {
        id: raw.id,
        rows,
        wanted: wanted_outputs(raw.outputs.as_deref())?,
    })
}

/// Runs the model and writes the response body.
pub fn response_body(request: &InferRequest) -> Result<Vec<u8>, serde_json::Error> {
    let batch = request.rows.len();
    let mut probabilities = Vec::with_capacity(batch * iris::CLASSES.len());
    let mut classes = Vec::with_capacity(batch);
    for row in &request.rows {
        let p = iris::probabilities(row);
        probabilities.extend(p.map(|x| x as f32));
        classes.push(iris::argmax(&p) as i64);
    }
    let mut outputs = Vec::with_capacity(2);
    if request.wanted[0] {
        outputs.push(Tensor {
            name: PROBABILITIES,
            shape: vec![batch, iris::CLASSES.len()],
            datatype: "FP32",
            data: TensorData::Fp32(probabilities),
        });
    }
    if request.wanted[1] {
        outputs.push(Tensor {
            name: PREDICTED_CLASS,
            shape: vec![batch],
            datatype: "INT64",
            data: TensorData::Int64(classes),
        });
    }
    serde_json::to_vec(&InferResponse {
        model_name: MODEL_NAME,
        model_version: MODEL_VERSION,
        id: request.id.as_deref(),
        outputs,
    })
}

/// The class probabilities a client reads for `row` once both directions
/// went over the wire: the request's FP32 input, and the response's FP32
/// output written as its shortest decimal. A baseline built from these
/// matches what the monitoring later decodes to the last bit.
pub fn served_probabilities(row: &[f64; FEATURE_COUNT]) -> [f64; 3] {
    let input = row.map(|x| f64::from(x as f32));
    iris::probabilities(&input).map(|p| {
        let single = p as f32;
        // Display prints the shortest decimal that reads back as `single`,
        // as serde_json does; parsing it as f64 is what a decoder does.
        single
            .to_string()
            .parse()
            .unwrap_or_else(|_| f64::from(single))
    })
}

/// Row-major values of flat or nested `data`. serde_json caps nesting
/// while parsing, so the recursion is bounded.
fn flatten(value: &Value, out: &mut Vec<f64>) -> Result<(), BadRequest> {
    match value {
        Value::Array(items) => items.iter().try_for_each(|item| flatten(item, out)),
        Value::Number(n) => {
            let single = n.as_f64().map(|x| x as f32).filter(|x| x.is_finite());
            match single {
                Some(x) => {
                    out.push(f64::from(x));
                    Ok(())
                }
                None => Err(BadRequest(format!("{n} is not representable as FP32."))),
            }
        }
        other => {
            let found = match other {
                Value::Null => "null",
                Value::Bool(_) => "a boolean",
                Value::String(_) => "a string",
                _ => "an object",
            };
            Err(BadRequest(format!(
                "Input {INPUT:?} must hold numbers, found {found}."
            )))
        }
    }
}

/// Which outputs to return; all of them when the request names none.
fn wanted_outputs(requested: Option<&[RawOutput]>) -> Result<[bool; 2], BadRequest> {
    let Some(requested) = requested.filter(|r| !r.is_empty()) else {
        return Ok([true, true]);
    };
    let mut wanted = [false, false];
    for output in requested {
        match output.name.as_str() {
            PROBABILITIES => wanted[0] = true,
            PREDICTED_CLASS => wanted[1] = true,
            other => {
                return Err(BadRequest(format!(
                    "Unknown output {other:?}; the model has {PROBABILITIES:?} and {PREDICTED_CLASS:?}."
                )));
            }
        }
    }
    Ok(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(shape: &str, data: &str) -> Result<InferRequest, BadRequest> {
        let body = format!(
            r#"{{"id":"r1","inputs":[{{"name":"input","shape":{shape},"datatype":"FP32","data":{data}}}]}}"#
        );
        parse_request(body.as_bytes())
    }

    #[test]
    fn flat_and_nested_data_give_the_same_rows() {
        let flat = request("[2,4]", "[5.1,3.5,1.4,0.2,6.3,3.3,6.0,2.5]");
        let nested = request("[2,4]", "[[5.1,3.5,1.4,0.2],[6.3,3.3,6.0,2.5]]");
        let flat = flat.expect("flat data parses");
        assert_eq!(Ok(flat.clone()), nested);
        assert_eq!(flat.id.as_deref(), Some("r1"));
        assert_eq!(flat.rows.len(), 2);
        assert_eq!(flat.rows[1][2], f64::from(6.0f32));
        assert_eq!(flat.wanted, [true, true]);
    }

    #[test]
    fn wrong_shapes_and_counts_are_refused() {
        for (shape, data) in [
            ("[1,3]", "[1,2,3]"),
            ("[4]", "[1,2,3,4]"),
            ("[0,4]", "[]"),
            ("[-1,4]", "[1,2,3,4]"),
            ("[2,4]", "[1,2,3,4]"),
            ("[1,4]", "[1,2,3,4,5]"),
            ("[1,4]", r#"[1,2,"3",4]"#),
            ("[1,4]", "[1,2,3,1e300]"),
        ] {
            let result = request(shape, data);
            assert!(result.is_err(), "shape {shape} data {data} gave {result:?}");
        }
    }

    #[test]
    fn malformed_bodies_are_refused_with_a_sentence() {
        for body in [
            "",
            "not json",
            "{}",
            r#"{"inputs":[]}"#,
            r#"{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}"#,
            r#"{"inputs":[{"name":"input","shape":[1,4],"datatype":"INT64","data":[1,2,3,4]}]}"#,
            r#"{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}],"outputs":[{"name":"logits"}]}"#,
        ] {
            let error = parse_request(body.as_bytes()).expect_err(body);
            assert!(error.to_string().ends_with('.'), "{error}");
        }
    }

    #[test]
    fn the_response_follows_the_protocol() {
        let parsed = request("[2,4]", "[[5.1,3.5,1.4,0.2],[6.3,3.3,6.0,2.5]]").expect("valid");
        let body = response_body(&parsed).expect("serializes");
        let doc: Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(doc["model_name"], "iris");
        assert_eq!(doc["model_version"], "1");
        assert_eq!(doc["id"], "r1");
        assert_eq!(doc["outputs"][0]["name"], PROBABILITIES);
        assert_eq!(doc["outputs"][0]["shape"], json!([2, 3]));
        assert_eq!(doc["outputs"][0]["datatype"], "FP32");
        let p = doc["outputs"][0]["data"].as_array().expect("array");
        let first: f64 = p[..3].iter().filter_map(Value::as_f64).sum();
        assert!((first - 1.0).abs() < 1e-5, "{p:?}");
        assert_eq!(doc["outputs"][1]["name"], PREDICTED_CLASS);
        assert_eq!(doc["outputs"][1]["shape"], json!([2]));
        assert_eq!(doc["outputs"][1]["data"], json!([0, 2]));
    }

    #[test]
    fn served_probabilities_are_what_the_response_carries() {
        let row = [5.9, 3.0, 4.2, 1.5];
        let parsed = request("[1,4]", "[5.9,3.0,4.2,1.5]").expect("valid");
        let doc: Value =
            serde_json::from_slice(&response_body(&parsed).expect("serializes")).expect("JSON");
        let wire: Vec<f64> = doc["outputs"][0]["data"]
            .as_array()
            .expect("array")
            .iter()
            .filter_map(Value::as_f64)
            .collect();
        assert_eq!(wire, served_probabilities(&row));
    }

    #[test]
    fn only_requested_outputs_are_returned() {
        let body = r#"{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}],"outputs":[{"name":"predicted_class"}]}"#;
        let parsed = parse_request(body.as_bytes()).expect("valid");
        let doc: Value =
            serde_json::from_slice(&response_body(&parsed).expect("serializes")).expect("JSON");
        assert_eq!(doc["outputs"].as_array().map(Vec::len), Some(1));
        assert_eq!(doc["outputs"][0]["name"], PREDICTED_CLASS);
        assert!(doc.get("id").is_none());
    }
}
