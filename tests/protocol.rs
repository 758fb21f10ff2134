//! Golden tests of `sidewatch::protocol`: every case under
//! `tests/fixtures/protocol/<protocol>/<case>/` (written by `generate.py`
//! there) is decoded and compared with its `expected.json`; gRPC bodies are
//! built here with the generated prost types; malformed inputs of every
//! kind must give the right error kind, and mangled bodies must never panic.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version};
use prost::Message;
use serde_json::{Value, json};
use sidewatch::config::Protocol;
use sidewatch::mirror::{
    BodyCopy, Exchange, HeaderCopy, RequestHead, ResponseHead, Stages, Timings,
};
use sidewatch::observation::{FeatureValue, Prediction};
use sidewatch::protocol::pb::{self, model_infer_request, model_infer_response};
use sidewatch::protocol::{
    Decoded, FeaturePointer, JsonSpec, MODEL_INFER_PATH, ModelSchema, decode,
};

const FIXTURES: &str = "tests/fixtures/protocol";
const REQUEST_ID: &str = "req-1";

/// When every fixture's request arrived.
fn received_at() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

// --- building exchanges ---

struct Spec {
    path: String,
    request_headers: HeaderMap,
    request: Bytes,
    status: Option<u16>,
    response_headers: HeaderMap,
    response: Bytes,
    trailers: Option<HeaderMap>,
    upstream_sent_ms: Option<u64>,
    first_body_byte_ms: Option<u64>,
}

impl Spec {
    fn new(path: &str, request: impl Into<Bytes>) -> Spec {
        Spec {
            path: path.to_owned(),
            request_headers: headers(&json!({"content-type": "application/json"})),
            request: request.into(),
            status: None,
            response_headers: headers(&json!({"content-type": "application/json"})),
            response: Bytes::new(),
            trailers: None,
            upstream_sent_ms: None,
            first_body_byte_ms: None,
        }
    }

    fn respond(mut self, status: u16, body: impl Into<Bytes>) -> Spec {
        self.status = Some(status);
        self.response = body.into();
        self
    }

    fn exchange(&self) -> Exchange {
        let received = Instant::now();
        let after = |ms: Option<u64>| ms.map(|ms| received + Duration::from_millis(ms));
        Exchange {
            request_id: REQUEST_ID.to_owned(),
            serial: 0,
            client: SocketAddr::from(([127, 0, 0, 1], 40000)),
            model: None,
            request: RequestHead {
                method: Method::POST,
                uri: self.path.parse::<Uri>().expect("a valid path"),
                version: Version::HTTP_11,
                headers: HeaderCopy::copy_from(&self.request_headers),
            },
            request_body: copy(self.request.clone()),
            response: self.status.map(|s| ResponseHead {
                status: StatusCode::from_u16(s).expect("a valid status"),
                headers: HeaderCopy::copy_from(&self.response_headers),
            }),
            response_body: copy(self.response.clone()),
            response_trailers: self.trailers.as_ref().map(HeaderCopy::copy_from),
            timings: Timings {
                received_at: received_at(),
                stages: Stages {
                    received,
                    upstream_sent: after(self.upstream_sent_ms),
                    first_byte: after(self.first_body_byte_ms),
                    first_body_byte: after(self.first_body_byte_ms),
                    done: after(self.first_body_byte_ms),
                },
            },
            proxy_error: None,
        }
    }
}

fn copy(bytes: Bytes) -> BodyCopy {
    BodyCopy {
        size: bytes.len() as u64,
        bytes,
        truncated: false,
        complete: true,
    }
}

fn headers(map: &Value) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in map.as_object().into_iter().flatten() {
        let name: HeaderName = name.parse().expect("a header name");
        let value = HeaderValue::from_str(value.as_str().expect("a string header"))
            .expect("a header value");
        headers.insert(name, value);
    }
    headers
}

fn schema_from(value: &Value) -> ModelSchema {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    };
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let protocol = value["protocol"].as_str().map(|p| match p {
        "kserve_v2" => Protocol::KserveV2,
        "tfserving" => Protocol::Tfserving,
        "openai" => Protocol::Openai,
        "json" => Protocol::Json,
        other => panic!("unknown protocol {other}"),
    });
    let json = value
        .get("json")
        .filter(|j| j.is_object())
        .map(|j| JsonSpec {
            rows: text(&j["rows"]),
            features: j["features"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| FeaturePointer {
                    name: text(&f["name"]).expect("a feature name"),
                    pointer: text(&f["pointer"]).expect("a pointer"),
                })
                .collect(),
            prediction: text(&j["prediction"]),
            response_rows: text(&j["response_rows"]),
        });
    ModelSchema {
        protocol,
        features: strings(&value["features"]),
        categorical: strings(&value["categorical"]),
        output: text(&value["output"]),
        json,
        ..ModelSchema::new(value["name"].as_str().expect("a model name"))
    }
}

// --- comparing results ---

fn protocol_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::KserveV2 => "kserve_v2",
        Protocol::Tfserving => "tfserving",
        Protocol::Openai => "openai",
        Protocol::Json => "json",
    }
}

fn feature_json(value: &FeatureValue) -> Value {
    match value {
        FeatureValue::Number(x) => json!(x),
        FeatureValue::Category(c) => json!(c.as_ref()),
        FeatureValue::Missing => Value::Null,
    }
}

fn prediction_json(p: &Prediction) -> Value {
    let mut out = serde_json::Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            out.insert(k.to_owned(), v);
        }
    };
    put("class", p.class.map(|x| json!(x)));
    put("score", p.score.map(|x| json!(x)));
    put("entropy", p.entropy.map(|x| json!(x)));
    put("value", p.value.map(|x| json!(x)));
    put("prompt_tokens", p.prompt_tokens.map(|x| json!(x)));
    put("completion_tokens", p.completion_tokens.map(|x| json!(x)));
    put(
        "finish_reason",
        p.finish_reason.as_deref().map(|x| json!(x)),
    );
    put(
        "time_to_first_token",
        p.time_to_first_token.map(|x| json!(x)),
    );
    Value::Object(out)
}

fn observed(decoded: &Decoded) -> Value {
    for o in &decoded.observations {
        assert_eq!(o.request_id.as_ref(), REQUEST_ID);
        assert_eq!(o.time, received_at());
    }
    json!({
        "protocol": protocol_name(decoded.protocol),
        "features": decoded.features,
        "extra_features": decoded.extra_features,
        "response_error": decoded.response_error.as_ref().map(|e| e.kind()),
        "observations": decoded.observations.iter().map(|o| json!({
            "row": o.row,
            "version": o.version.as_deref(),
            "features": o.features.iter().map(feature_json).collect::<Vec<_>>(),
            "prediction": o.prediction.as_ref().map(prediction_json),
        })).collect::<Vec<_>>(),
    })
}

/// Differences between `expected` and `actual`, numbers within 1e-9 (relative).
fn differences(at: &str, expected: &Value, actual: &Value, out: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Number(e), Value::Number(a)) => {
            let (e, a) = (
                e.as_f64().unwrap_or(f64::NAN),
                a.as_f64().unwrap_or(f64::NAN),
            );
            if (e - a).abs() > 1e-9 * e.abs().max(1.0) {
                out.push(format!("{at}: expected {e}, got {a}"));
            }
        }
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => {
            for (i, (e, a)) in e.iter().zip(a).enumerate() {
                differences(&format!("{at}[{i}]"), e, a, out);
            }
        }
        (Value::Object(e), Value::Object(a)) if e.keys().eq(a.keys()) => {
            for (k, e) in e {
                differences(&format!("{at}.{k}"), e, &a[k], out);
            }
        }
        (e, a) if e == a => {}
        (e, a) => out.push(format!("{at}: expected {e}, got {a}")),
    }
}

fn assert_matches(name: &str, expected: &Value, decoded: &Decoded) {
    let actual = observed(decoded);
    let mut out = Vec::new();
    differences("", expected, &actual, &mut out);
    assert!(
        out.is_empty(),
        "{name}:\n  {}\nactual: {actual:#}",
        out.join("\n  ")
    );
}

// --- golden fixtures ---

fn body_file(dir: &Path, stem: &str) -> Option<Bytes> {
    ["json", "bin", "sse"]
        .iter()
        .map(|ext| dir.join(format!("{stem}.{ext}")))
        .find(|p| p.exists())
        .map(|p| Bytes::from(std::fs::read(p).expect("a readable body")))
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn cases(protocol: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(Path::new(FIXTURES).join(protocol))
        .expect("a fixture directory")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no fixtures for {protocol}");
    dirs
}

fn fixture(dir: &Path) -> (Spec, ModelSchema) {
    let case = read_json(&dir.join("case.json"));
    let mut spec = Spec::new(
        case["path"].as_str().expect("a path"),
        body_file(dir, "request").expect("a request"),
    );
    spec.request_headers = headers(&case["request_headers"]);
    spec.response_headers = headers(&case["response_headers"]);
    spec.status = case["status"].as_u64().map(|s| s as u16);
    spec.response = body_file(dir, "response").unwrap_or_default();
    spec.upstream_sent_ms = case["timings_ms"]["upstream_sent"].as_u64();
    spec.first_body_byte_ms = case["timings_ms"]["first_body_byte"].as_u64();
    (spec, schema_from(&case["schema"]))
}

fn golden(protocol: &str) {
    for dir in cases(protocol) {
        let (spec, schema) = fixture(&dir);
        let name = dir.display().to_string();
        let decoded = decode(&spec.exchange(), &schema).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(decoded.observations.iter().all(|o| o.model == schema.name));
        assert_matches(&name, &read_json(&dir.join("expected.json")), &decoded);
    }
}

#[test]
fn kserve_v2_golden() {
    golden("kserve_v2");
}

#[test]
fn triton_binary_golden() {
    golden("triton_binary");
}

#[test]
fn tfserving_golden() {
    golden("tfserving");
}

#[test]
fn openai_golden() {
    golden("openai");
}

#[test]
fn json_golden() {
    golden("json");
}

// --- gRPC ---

fn frame(message: &impl Message) -> Bytes {
    frame_raw(&message.encode_to_vec())
}

fn frame_raw(body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(body.len() + 5);
    out.put_u8(0);
    out.put_u32(body.len() as u32);
    out.put_slice(body);
    out.freeze()
}

fn grpc(request: Bytes, response: Option<Bytes>, status: &'static str) -> Spec {
    let mut spec = Spec::new(MODEL_INFER_PATH, request);
    spec.request_headers = headers(&json!({"content-type": "application/grpc"}));
    spec.response_headers = headers(&json!({"content-type": "application/grpc"}));
    if let Some(body) = response {
        spec = spec.respond(200, body);
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static(status));
        spec.trailers = Some(trailers);
    }
    spec
}

fn input(
    name: &str,
    datatype: &str,
    shape: &[i64],
    contents: Option<pb::InferTensorContents>,
) -> model_infer_request::InferInputTensor {
    model_infer_request::InferInputTensor {
        name: name.to_owned(),
        datatype: datatype.to_owned(),
        shape: shape.to_vec(),
        parameters: Default::default(),
        contents,
    }
}

fn output(
    name: &str,
    datatype: &str,
    shape: &[i64],
    contents: Option<pb::InferTensorContents>,
) -> model_infer_response::InferOutputTensor {
    model_infer_response::InferOutputTensor {
        name: name.to_owned(),
        datatype: datatype.to_owned(),
        shape: shape.to_vec(),
        parameters: Default::default(),
        contents,
    }
}

fn le<T: Copy, const N: usize>(values: &[T], to: fn(T) -> [u8; N]) -> Bytes {
    values
        .iter()
        .flat_map(|v| to(*v))
        .collect::<Vec<u8>>()
        .into()
}

fn typed_request() -> pb::ModelInferRequest {
    pb::ModelInferRequest {
        model_name: "churn".to_owned(),
        model_version: "3".to_owned(),
        inputs: vec![
            input(
                "age",
                "INT64",
                &[2],
                Some(pb::InferTensorContents {
                    int64_contents: vec![31, 45],
                    ..Default::default()
                }),
            ),
            input(
                "score",
                "FP32",
                &[2, 1],
                Some(pb::InferTensorContents {
                    fp32_contents: vec![0.5, 1.5],
                    ..Default::default()
                }),
            ),
            input(
                "city",
                "BYTES",
                &[2],
                Some(pb::InferTensorContents {
                    bytes_contents: vec![Bytes::from_static(b"paris"), Bytes::from_static(b"lyon")],
                    ..Default::default()
                }),
            ),
            input(
                "vip",
                "BOOL",
                &[2],
                Some(pb::InferTensorContents {
                    bool_contents: vec![true, false],
                    ..Default::default()
                }),
            ),
            input(
                "n8",
                "INT8",
                &[2],
                Some(pb::InferTensorContents {
                    int_contents: vec![-3, 4],
                    ..Default::default()
                }),
            ),
            input(
                "u16",
                "UINT16",
                &[2],
                Some(pb::InferTensorContents {
                    uint_contents: vec![9, 65535],
                    ..Default::default()
                }),
            ),
            input(
                "u64",
                "UINT64",
                &[2],
                Some(pb::InferTensorContents {
                    uint64_contents: vec![1 << 40, 0],
                    ..Default::default()
                }),
            ),
            input(
                "f64",
                "FP64",
                &[2],
                Some(pb::InferTensorContents {
                    fp64_contents: vec![-0.25, 8.0],
                    ..Default::default()
                }),
            ),
        ],
        ..Default::default()
    }
}

#[test]
fn grpc_typed_contents() {
    let response = pb::ModelInferResponse {
        model_name: "churn".to_owned(),
        model_version: "4".to_owned(),
        outputs: vec![
            output(
                "label",
                "INT64",
                &[2],
                Some(pb::InferTensorContents {
                    int64_contents: vec![1, 0],
                    ..Default::default()
                }),
            ),
            output(
                "probs",
                "FP32",
                &[2, 2],
                Some(pb::InferTensorContents {
                    fp32_contents: vec![0.25, 0.75, 0.5, 0.5],
                    ..Default::default()
                }),
            ),
        ],
        ..Default::default()
    };
    let spec = grpc(frame(&typed_request()), Some(frame(&response)), "0");
    let schema = ModelSchema {
        features: [
            "age", "score", "city", "vip", "n8", "u16", "u64", "f64", "tenure",
        ]
        .map(String::from)
        .to_vec(),
        ..ModelSchema::new("churn")
    };
    let decoded = decode(&spec.exchange(), &schema).expect("a decodable exchange");
    assert_matches(
        "grpc typed",
        &json!({
            "protocol": "kserve_v2",
            "features": schema.features,
            "extra_features": [],
            "response_error": null,
            "observations": [
                {"row": 0, "version": "4", "features": [31, 0.5, "paris", 1, -3, 9, 1u64 << 40, -0.25, null], "prediction": {"class": 1}},
                {"row": 1, "version": "4", "features": [45, 1.5, "lyon", 0, 4, 65535, 0, 8.0, null], "prediction": {"class": 0}},
            ],
        }),
        &decoded,
    );
    assert_eq!(
        sidewatch::protocol::model_name(&spec.exchange()).as_deref(),
        Some("churn")
    );

    // The schema picks the second output; a failed call has no predictions.
    let with_output = ModelSchema {
        output: Some("probs".to_owned()),
        ..schema.clone()
    };
    let decoded = decode(&spec.exchange(), &with_output).expect("a decodable exchange");
    let first = decoded
        .observations
        .first()
        .and_then(|o| o.prediction.clone())
        .expect("a prediction");
    assert_eq!((first.class, first.score), (Some(1), Some(0.75)));
    let failed = grpc(frame(&typed_request()), Some(Bytes::new()), "13");
    let decoded = decode(&failed.exchange(), &schema).expect("the request decodes");
    assert!(decoded.observations.iter().all(|o| o.prediction.is_none()));
    assert_eq!(decoded.response_error, None);
}

/// FP16, BF16, INT32 and BYTES inputs in `raw_input_contents`.
fn raw_request() -> pb::ModelInferRequest {
    use half::{bf16, f16};
    pb::ModelInferRequest {
        model_name: "m".to_owned(),
        inputs: vec![
            input("h", "FP16", &[2, 2], None),
            input("b", "BF16", &[2], None),
            input("i", "INT32", &[2], None),
            input("s", "BYTES", &[2], None),
        ],
        raw_input_contents: vec![
            le(
                &[
                    f16::from_f32(0.5),
                    f16::from_f32(-2.0),
                    f16::from_f32(1.25),
                    f16::from_f32(3.0),
                ],
                f16::to_le_bytes,
            ),
            le(
                &[bf16::from_f32(1.5), bf16::from_f32(-4.0)],
                bf16::to_le_bytes,
            ),
            le(&[-7i32, 70000], i32::to_le_bytes),
            Bytes::from_static(b"\x01\x00\x00\x00a\x02\x00\x00\x00bc"),
        ],
        ..Default::default()
    }
}

/// FP32 logits in `raw_output_contents`.
fn raw_response() -> pb::ModelInferResponse {
    pb::ModelInferResponse {
        outputs: vec![output("logits", "FP32", &[2, 3], None)],
        raw_output_contents: vec![le(&[1.0f32, 2.0, 3.0, 0.0, 0.0, 0.0], f32::to_le_bytes)],
        ..Default::default()
    }
}

#[test]
fn grpc_raw_contents() {
    let spec = grpc(frame(&raw_request()), Some(frame(&raw_response())), "0");
    let decoded = decode(&spec.exchange(), &ModelSchema::new("m")).expect("a decodable exchange");
    let softmax = |x: [f64; 3]| {
        let e = x.map(f64::exp);
        let s: f64 = e.iter().sum();
        e.map(|v| v / s)
    };
    let prediction = |p: [f64; 3]| {
        let (class, score) = p
            .iter()
            .enumerate()
            .fold((0, f64::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
        let entropy: f64 = p.iter().map(|v| -v * v.ln()).sum();
        json!({"class": class, "score": score, "entropy": entropy})
    };
    assert_matches(
        "grpc raw",
        &json!({
            "protocol": "kserve_v2",
            "features": ["h_0", "h_1", "b", "i", "s"],
            "extra_features": [],
            "response_error": null,
            "observations": [
                {"row": 0, "version": null, "features": [0.5, -2.0, 1.5, -7, "a"], "prediction": prediction(softmax([1.0, 2.0, 3.0]))},
                {"row": 1, "version": null, "features": [1.25, 3.0, -4.0, 70000, "bc"], "prediction": prediction(softmax([0.0, 0.0, 0.0]))},
            ],
        }),
        &decoded,
    );
}

// --- malformed inputs ---

fn kind_of(spec: &Spec, schema: &ModelSchema) -> &'static str {
    match decode(&spec.exchange(), schema) {
        Ok(decoded) => panic!("{} decoded into {decoded:?}", spec.path),
        Err(e) => e.kind(),
    }
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

/// `malformed.json`: each case fails whole (`kind`) or decodes its request
/// and gives no predictions (`response_kind`, the response error or null).
#[test]
fn malformed_inputs_give_typed_errors() {
    let cases = read_json(&Path::new(FIXTURES).join("malformed.json"));
    for case in cases.as_array().expect("a list of cases") {
        let name = case["name"].as_str().expect("a case name");
        let body = match (case["body"].as_str(), case["body_hex"].as_str()) {
            (Some(text), _) => Bytes::from(text.to_owned()),
            (None, Some(h)) => Bytes::from(hex(h)),
            (None, None) => panic!("{name}: no body"),
        };
        let mut spec = Spec::new(case["path"].as_str().expect("a path"), body);
        if case["request_headers"].is_object() {
            spec.request_headers = headers(&case["request_headers"]);
        }
        if case["response_headers"].is_object() {
            spec.response_headers = headers(&case["response_headers"]);
        }
        if let Some(response) = case["response"].as_str() {
            let status = case["status"].as_u64().unwrap_or(200) as u16;
            spec = spec.respond(status, response.to_owned());
        }
        let schema = case
            .get("schema")
            .map_or_else(|| ModelSchema::new("m"), schema_from);
        let mut exchange = spec.exchange();
        let flag = |key: &str| case[key].as_bool().unwrap_or(false);
        exchange.request_body.truncated = flag("truncated");
        exchange.request_body.complete = !flag("incomplete");
        exchange.response_body.truncated = flag("response_truncated");
        for copy in [&mut exchange.request_body, &mut exchange.response_body] {
            if copy.truncated {
                copy.size = 1 << 20;
            }
        }
        let result = decode(&exchange, &schema);
        if let Some(kind) = case["kind"].as_str() {
            assert_eq!(result.map_err(|e| e.kind()).err(), Some(kind), "{name}");
            continue;
        }
        let decoded = result.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!decoded.observations.is_empty(), "{name}");
        assert!(
            decoded.observations.iter().all(|o| o.prediction.is_none()),
            "{name}"
        );
        let kind = decoded.response_error.map(|e| e.kind());
        assert_eq!(kind, case["response_kind"].as_str(), "{name}");
    }
}

#[test]
fn malformed_grpc_gives_typed_errors() {
    let schema = ModelSchema::new("m");
    let mut compressed = frame(&typed_request()).to_vec();
    if let Some(flag) = compressed.first_mut() {
        *flag = 1;
    }
    assert_eq!(
        kind_of(&grpc(compressed.into(), None, "0"), &schema),
        "compressed_grpc"
    );
    let garbage = Bytes::from_static(&[0, 0, 0, 0, 3, 0xff, 0xff, 0xff]);
    assert_eq!(
        kind_of(&grpc(garbage.clone(), None, "0"), &schema),
        "bad_protobuf"
    );
    let short = Bytes::from_static(&[0, 0, 0, 0, 9, 1]);
    assert_eq!(kind_of(&grpc(short, None, "0"), &schema), "bad_grpc_frame");
    assert_eq!(
        kind_of(&grpc(Bytes::new(), None, "0"), &schema),
        "empty_body"
    );
    let typed = pb::InferTensorContents {
        fp32_contents: vec![1.0],
        ..Default::default()
    };
    let fp16_typed = pb::ModelInferRequest {
        inputs: vec![input("h", "FP16", &[1], Some(typed))],
        ..Default::default()
    };
    assert_eq!(
        kind_of(&grpc(frame(&fp16_typed), None, "0"), &schema),
        "invalid_field"
    );
    let short_raw = pb::ModelInferRequest {
        inputs: vec![input("x", "FP32", &[4], None)],
        raw_input_contents: vec![le(&[1.0f32], f32::to_le_bytes)],
        ..Default::default()
    };
    assert_eq!(
        kind_of(&grpc(frame(&short_raw), None, "0"), &schema),
        "shape_mismatch"
    );
    let bad_response = grpc(frame(&typed_request()), Some(frame_raw(&[0xff, 0xff])), "0");
    let decoded = decode(&bad_response.exchange(), &schema).expect("the request decodes");
    assert_eq!(
        decoded.response_error.map(|e| e.kind()),
        Some("bad_protobuf")
    );
    let mut compressed_response = frame(&pb::ModelInferResponse::default()).to_vec();
    if let Some(flag) = compressed_response.first_mut() {
        *flag = 1;
    }
    let spec = grpc(
        frame(&typed_request()),
        Some(compressed_response.into()),
        "0",
    );
    let decoded = decode(&spec.exchange(), &schema).expect("the request decodes");
    assert_eq!(
        decoded.response_error.map(|e| e.kind()),
        Some("compressed_grpc")
    );
}

/// Every prefix and many byte flips of every fixture and gRPC body decode
/// or fail with an error, never a panic.
#[test]
fn mangled_bodies_never_panic() {
    let mut rng = fastrand::Rng::with_seed(7);
    let protocols = ["kserve_v2", "triton_binary", "tfserving", "openai", "json"];
    let mut specs: Vec<(Spec, ModelSchema)> = protocols
        .iter()
        .flat_map(|protocol| cases(protocol))
        .map(|dir| fixture(&dir))
        .collect();
    for request in [frame(&typed_request()), frame(&raw_request())] {
        let spec = grpc(request, Some(frame(&raw_response())), "0");
        specs.push((spec, ModelSchema::new("m")));
    }
    for (spec, schema) in &specs {
        let bodies = [spec.request.clone(), spec.response.clone()];
        for (which, body) in bodies.iter().enumerate() {
            let mut variants: Vec<Bytes> = (0..body.len())
                .step_by(3)
                .map(|n| body.slice(..n))
                .collect();
            for _ in 0..64 {
                let mut flipped = body.to_vec();
                if let Some(byte) = flipped.get_mut(rng.usize(..body.len().max(1))) {
                    *byte = rng.u8(..);
                }
                variants.push(flipped.into());
            }
            for variant in variants {
                let mut exchange = spec.exchange();
                let copy = if which == 0 {
                    &mut exchange.request_body
                } else {
                    &mut exchange.response_body
                };
                copy.size = variant.len() as u64;
                copy.bytes = variant;
                let _ = decode(&exchange, schema);
            }
        }
    }
}
