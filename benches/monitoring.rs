//! The monitoring pipeline's cost, stage by stage and end to end, on one
//! core: decode → window → drift evaluation (all pure, synchronous code).
//!
//! | group | what one iteration is | throughput |
//! |---|---|---|
//! | `decode` | one KServe v2 exchange (JSON 1×16, JSON 64×16, gRPC raw 64×16) | rows |
//! | `window` | `observe` of one observation; `summary` of a full window | observations |
//! | `evaluate` | `evaluate` of a full window's summary (16×10, 100×50 with three method sets); `summary` + `evaluate` for 100×50 | — |
//! | `pipeline` | one 64×16 JSON exchange decoded and observed (by a bare window, and by the real shard with the default config: validation, metrics, concept-drift and default anomaly detectors, window); the shard alone on a pre-decoded 64-row batch; 1,024 exchanges plus one evaluation; one step's evaluation | observations |
//!
//! **Data.** Every row comes from one generator that
//! `scripts/bench.d/monitoring/whylogs_bench.py` reimplements with numpy, so
//! whylogs profiles the same numbers: value k of a seeded stream is
//! splitmix64(seed + (k + 1)·φ64), two of them make one normal by
//! Box–Muller, and column c has mean c/2 and std 1 + c/10. Traffic uses
//! seed 1 (102,400 × 16, the rows whylogs profiles), baselines seed 2. Requests carry FP32 tensors written as Python's
//! `json.dumps(array.astype(np.float32).tolist())` writes them (shortest
//! repr of the f32 widened to f64, ~19 characters a number); responses carry
//! `[B, 2]` FP32 probabilities, so observations have a class and a score.
//!
//! **Time.** Windows use the config defaults (5 min window, 30 s step, 2,000
//! samples per feature); the baseline the defaults of `BuildOptions` (10
//! bins, 5,000 samples per feature). The decode→observe pipeline runs a
//! simulated clock at the 200,000 obs/s target, so its window rolls a slice
//! every 6 million observations as it would at that rate, and one drift
//! evaluation per 30 s step then costs `pipeline/evaluate_step` once per 6
//! million observations (`scripts/bench.d/monitoring/run` adds that share
//! at the measured rate).
//! `pipeline/json_64x16/eval_every_65536` is the pessimistic case: a 30 s
//! step at ~2,200 obs/s (one evaluation of a full 10-slice window per 65,536
//! observations), measured directly.
//!
//! Run: `cargo bench --bench monitoring` (about 2 minutes), or with a
//! filter, e.g. `cargo bench --bench monitoring -- pipeline`. Each detector
//! alone: `cargo bench --bench detectors`.

mod common;

use std::fmt::Write as _;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime};

use bytes::{BufMut, Bytes, BytesMut};
use criterion::{
    BatchSize, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group,
    criterion_main, measurement::WallTime,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, Version};
use prost::Message;
use sidewatch::baseline::Baseline;
use sidewatch::config::{Config, Drift, DriftMethod, Protocol, Validate};
use sidewatch::mirror::{
    BodyCopy, Exchange, HeaderCopy, RequestHead, ResponseHead, Stages, Timings,
};
use sidewatch::monitor::ModelStats;
use sidewatch::monitor::evaluate::{Multivariate, evaluate};
use sidewatch::monitor::shard::{BaselineState, Batch, Shard};
use sidewatch::observation::Observation;
use sidewatch::protocol::pb::{self, model_infer_request, model_infer_response};
use sidewatch::protocol::{MODEL_INFER_PATH, ModelSchema, decode};
use sidewatch::window::{FeatureSpec, Window, WindowSpec};

use common::{dataset, names, observation, probabilities};

/// Rows of the traffic data set: 1,600 exchanges of 64.
const TRAFFIC_ROWS: usize = 102_400;
/// Observations that fill a window for the `summary` and `evaluate` cases,
/// spread evenly over its 5 minutes: 4,000 per slice, twice the sample cap.
const WINDOW_ROWS: usize = 40_000;
/// The traffic rate the pipeline's simulated clock assumes (the target).
const ASSUMED_RATE: u64 = 200_000;
/// Observations per evaluation in the pessimistic pipeline case.
const EVAL_EVERY: usize = 65_536;
/// A Unix time (ms) on a 30 s boundary, so a 5 min window is 10 slices.
const T0_MS: u64 = 56_666_667 * 30_000;

/// What a client sends: FP32, as Python's `json.dumps` writes a float32.
fn f32_value(x: f64) -> f64 {
    x as f32 as f64
}

fn config(yaml: &str) -> Config {
    Config::from_yaml(
        &format!("upstream: http://127.0.0.1:1\n{yaml}"),
        &Default::default(),
    )
    .expect("a valid config")
}

/// The configuration's defaults.
fn defaults() -> Config {
    config("")
}

/// Drift settings from a YAML `drift:` mapping.
fn drift(yaml: &str) -> Drift {
    config(&format!("drift: {yaml}\n")).drift
}

// === models: baseline, window, full windows ===

/// A baseline, its drift settings' window spec, and a full window.
struct Model {
    cols: usize,
    baseline: Baseline,
    /// Multivariate drift detectors fitted on the baseline (on by default).
    multivariate: Multivariate,
    spec: WindowSpec,
}

impl Model {
    fn new(cols: usize, bins: usize, settings: &Drift) -> Model {
        let baseline = common::baseline(cols, bins);
        let multivariate = Multivariate::fit(&baseline, settings);
        // As the shard builds it from a ready baseline.
        let spec = WindowSpec {
            length: settings.window,
            step: settings.step,
            sample_cap: settings.sample,
            features: baseline
                .features
                .iter()
                .map(|f| FeatureSpec::Numeric {
                    edges: f.numeric.as_ref().expect("numeric").edges.clone(),
                })
                .collect(),
            score_edges: baseline
                .prediction
                .as_ref()
                .and_then(|p| p.score.as_ref())
                .map(|s| s.edges.clone()),
            multivariate: multivariate.rows(),
        };
        Model {
            cols,
            baseline,
            multivariate,
            spec,
        }
    }

    fn window(&self) -> Window {
        Window::new(self.spec.clone(), 0x5eed)
    }

    /// A window whose 10 slices each saw twice the sample cap.
    fn full_window(&self) -> Window {
        let mut window = self.window();
        let data = dataset(3, WINDOW_ROWS, self.cols);
        let span_ms = self.spec.length.as_millis() as u64;
        for (i, row) in data.chunks(self.cols).enumerate() {
            let at = T0_MS + i as u64 * span_ms / WINDOW_ROWS as u64;
            window.observe(at, &observation(row, SystemTime::UNIX_EPOCH));
        }
        window.advance(T0_MS + span_ms - 1);
        window
    }
}

// === exchanges ===

fn headers(content_type: &'static str) -> HeaderCopy {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static(content_type));
    HeaderCopy::copy_from(&headers)
}

fn body(bytes: Bytes) -> BodyCopy {
    BodyCopy {
        size: bytes.len() as u64,
        bytes,
        truncated: false,
        complete: true,
    }
}

fn exchange(
    path: &str,
    content_type: &'static str,
    request: Bytes,
    response: Bytes,
    trailers: Option<HeaderMap>,
    received_at: SystemTime,
) -> Exchange {
    let received = Instant::now();
    Exchange {
        request_id: "bench-1".to_owned(),
        serial: 0,
        client: SocketAddr::from(([127, 0, 0, 1], 40000)),
        model: Some(Arc::from("bench")),
        request: RequestHead {
            method: Method::POST,
            uri: path.parse::<Uri>().expect("a valid path"),
            version: Version::HTTP_11,
            headers: headers(content_type),
        },
        request_body: body(request),
        response: Some(ResponseHead {
            status: StatusCode::OK,
            headers: headers(content_type),
        }),
        response_body: body(response),
        response_trailers: trailers.as_ref().map(HeaderCopy::copy_from),
        timings: Timings {
            received_at,
            stages: Stages {
                received,
                upstream_sent: Some(received),
                first_byte: Some(received),
                first_body_byte: Some(received),
                done: Some(received),
            },
        },
        proxy_error: None,
    }
}

fn json_numbers(out: &mut String, values: impl Iterator<Item = f64>) {
    for (i, x) in values.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write!(out, "{}", f32_value(x)).expect("writing to a String");
    }
}

/// A KServe v2 REST exchange for `rows` (row-major, `cols` wide).
fn kserve_json(rows: &[f64], cols: usize, received_at: SystemTime) -> Exchange {
    let batch = rows.len() / cols;
    let mut request = format!(
        r#"{{"id":"bench-1","inputs":[{{"name":"input","shape":[{batch},{cols}],"datatype":"FP32","data":["#
    );
    json_numbers(&mut request, rows.iter().copied());
    request.push_str("]}]}");
    let mut response = format!(
        r#"{{"model_name":"bench","model_version":"1","id":"bench-1","outputs":[{{"name":"probabilities","shape":[{batch},2],"datatype":"FP32","data":["#
    );
    json_numbers(&mut response, rows.chunks(cols).flat_map(probabilities));
    response.push_str("]}]}");
    exchange(
        "/v2/models/bench/infer",
        "application/json",
        Bytes::from(request),
        Bytes::from(response),
        None,
        received_at,
    )
}

fn frame(message: &impl Message) -> Bytes {
    let body = message.encode_to_vec();
    let mut out = BytesMut::with_capacity(body.len() + 5);
    out.put_u8(0);
    out.put_u32(body.len() as u32);
    out.put_slice(&body);
    out.freeze()
}

fn le_f32(values: impl Iterator<Item = f64>) -> Bytes {
    values
        .flat_map(|x| (x as f32).to_le_bytes())
        .collect::<Vec<u8>>()
        .into()
}

/// A KServe v2 gRPC exchange, tensors in `raw_*_contents`.
fn kserve_grpc(rows: &[f64], cols: usize) -> Exchange {
    let batch = (rows.len() / cols) as i64;
    let request = pb::ModelInferRequest {
        model_name: "bench".to_owned(),
        inputs: vec![model_infer_request::InferInputTensor {
            name: "input".to_owned(),
            datatype: "FP32".to_owned(),
            shape: vec![batch, cols as i64],
            parameters: Default::default(),
            contents: None,
        }],
        raw_input_contents: vec![le_f32(rows.iter().copied())],
        ..Default::default()
    };
    let response = pb::ModelInferResponse {
        model_name: "bench".to_owned(),
        model_version: "1".to_owned(),
        outputs: vec![model_infer_response::InferOutputTensor {
            name: "probabilities".to_owned(),
            datatype: "FP32".to_owned(),
            shape: vec![batch, 2],
            parameters: Default::default(),
            contents: None,
        }],
        raw_output_contents: vec![le_f32(rows.chunks(cols).flat_map(probabilities))],
        ..Default::default()
    };
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    exchange(
        MODEL_INFER_PATH,
        "application/grpc",
        frame(&request),
        frame(&response),
        Some(trailers),
        SystemTime::UNIX_EPOCH,
    )
}

fn schema(cols: usize) -> ModelSchema {
    ModelSchema {
        protocol: Some(Protocol::KserveV2),
        features: names(cols),
        ..ModelSchema::new("bench")
    }
}

/// The traffic data set as 64-row JSON exchanges, stamped as if they
/// arrived at [`ASSUMED_RATE`].
fn traffic(cols: usize) -> Vec<Exchange> {
    let data = dataset(1, TRAFFIC_ROWS, cols);
    let checksum: f64 = data.iter().map(|&x| f32_value(x)).sum();
    eprintln!("traffic data: {TRAFFIC_ROWS} x {cols}, sum of f32 values {checksum:.6}");
    data.chunks(64 * cols)
        .enumerate()
        .map(|(i, rows)| {
            let ms = T0_MS + (i * 64) as u64 * 1000 / ASSUMED_RATE;
            kserve_json(
                rows,
                cols,
                SystemTime::UNIX_EPOCH + Duration::from_millis(ms),
            )
        })
        .collect()
}

// === groups ===

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
}

fn decode_group(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    configure(&mut group);
    let schema = schema(16);
    let data = dataset(1, 64, 16);
    let cases = [
        (
            "kserve_json",
            1,
            kserve_json(&data[..16], 16, SystemTime::UNIX_EPOCH),
        ),
        (
            "kserve_json",
            64,
            kserve_json(&data, 16, SystemTime::UNIX_EPOCH),
        ),
        ("kserve_grpc_raw", 64, kserve_grpc(&data, 16)),
    ];
    for (name, rows, exchange) in &cases {
        let decoded = decode(exchange, &schema).expect("decodes");
        assert_eq!(decoded.observations.len(), *rows);
        assert!(decoded.observations.iter().all(|o| o.prediction.is_some()));
        group.throughput(Throughput::Elements(*rows as u64));
        group.bench_function(BenchmarkId::new(*name, format!("{rows}x16")), |b| {
            b.iter(|| decode(black_box(exchange), &schema).expect("decodes"))
        });
    }
    group.finish();
}

fn window_group(c: &mut Criterion) {
    let settings = drift("{}");
    let small = Model::new(16, 10, &settings);
    let large = Model::new(100, 50, &settings);
    let mut group = c.benchmark_group("window");
    configure(&mut group);

    // Summaries first: no throughput, as their cost does not scale with
    // the observations in the window.
    group.sample_size(30);
    for (name, model) in [("16x10", &small), ("100x50", &large)] {
        let full = model.full_window();
        group.bench_function(BenchmarkId::new("summary", name), |b| {
            b.iter(|| black_box(&full).summary())
        });
    }

    let data = dataset(1, 4096, 16);
    let observations: Vec<Observation> = data
        .chunks(16)
        .map(|row| observation(row, SystemTime::UNIX_EPOCH))
        .collect();
    let mut window = small.window();
    let mut n = 0u64;
    group.sample_size(100).throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("observe", "16x10"), |b| {
        b.iter(|| {
            let o = &observations[n as usize % observations.len()];
            window.observe(T0_MS + n * 1000 / ASSUMED_RATE, black_box(o));
            n += 1;
        })
    });
    group.finish();
}

fn evaluate_group(c: &mut Criterion) {
    let all = drift("{}");
    let binned = drift("{ methods: [psi, js, hellinger] }");
    let binned_wasserstein = drift("{ methods: [psi, js, hellinger, wasserstein] }");
    let small = Model::new(16, 10, &all);
    let large = Model::new(100, 50, &all);
    let small_summary = small.full_window().summary();
    let large_window = large.full_window();
    let large_summary = large_window.summary();
    let mut group = c.benchmark_group("evaluate");
    configure(&mut group);
    group.sample_size(30);
    let cases = [
        ("16x10", "all", &small, &small_summary, &all),
        (
            "100x50",
            "psi_js_hellinger",
            &large,
            &large_summary,
            &binned,
        ),
        (
            "100x50",
            "binned_wasserstein",
            &large,
            &large_summary,
            &binned_wasserstein,
        ),
        ("100x50", "all", &large, &large_summary, &all),
    ];
    for (size, methods, model, summary, settings) in cases {
        let (baseline, multivariate) = (&model.baseline, &model.multivariate);
        // Every method ran on every feature, and same-distribution data did
        // not drift (chi-square applies to categories only).
        let report = evaluate(baseline, summary, settings, multivariate, String::new());
        let numeric_methods = settings
            .methods
            .iter()
            .filter(|m| **m != DriftMethod::ChiSquare)
            .count();
        assert_eq!(report.features.len(), baseline.features.len());
        assert!(
            report
                .features
                .iter()
                .all(|f| f.methods.len() == numeric_methods)
        );
        assert!(report.drifted_share < 0.05, "{report:?}");
        group.bench_function(BenchmarkId::new(size, methods), |b| {
            b.iter(|| {
                evaluate(
                    baseline,
                    black_box(summary),
                    settings,
                    multivariate,
                    String::new(),
                )
            })
        });
    }
    // What the shard does every step: merge the window, then evaluate.
    for (methods, settings) in [("psi_js_hellinger", &binned), ("all", &all)] {
        group.bench_function(BenchmarkId::new("100x50_with_summary", methods), |b| {
            b.iter(|| {
                let summary = black_box(&large_window).summary();
                evaluate(
                    &large.baseline,
                    &summary,
                    settings,
                    &large.multivariate,
                    String::new(),
                )
            })
        });
    }
    group.finish();
}

fn pipeline_group(c: &mut Criterion) {
    let settings = drift("{}");
    let model = Model::new(16, 10, &settings);
    let schema = schema(16);
    let exchanges = traffic(16);
    let mut group = c.benchmark_group("pipeline");
    configure(&mut group);

    // One step's evaluation of a full window, as the shard runs it.
    let full = model.full_window();
    group.sample_size(30);
    group.bench_function(BenchmarkId::new("evaluate_step", "16x10"), |b| {
        b.iter(|| {
            evaluate(
                &model.baseline,
                &black_box(&full).summary(),
                &settings,
                &model.multivariate,
                String::new(),
            )
        })
    });

    // Decode, then observe each row into the window on a clock at the
    // assumed rate.
    let mut window = model.window();
    let mut seen = 0u64;
    let mut next = 0usize;
    group.sample_size(100).throughput(Throughput::Elements(64));
    group.bench_function(BenchmarkId::new("json_64x16", "decode_observe"), |b| {
        b.iter(|| {
            let exchange = &exchanges[next % exchanges.len()];
            next += 1;
            let decoded = decode(black_box(exchange), &schema).expect("decodes");
            for o in &decoded.observations {
                window.observe(T0_MS + seen * 1000 / ASSUMED_RATE, o);
                seen += 1;
            }
        })
    });

    // The same through the real shard: observe-mode validation, per-bin
    // metric counters, prediction counters, concept-drift detectors on the
    // score, the default anomaly detectors, and the window.
    let stats = Arc::new(ModelStats::new(Arc::from("bench"), "kserve_v2"));
    let mut shard = Shard::new(
        stats,
        names(16),
        Arc::new(AtomicBool::new(true)),
        Vec::new(),
        Validate::Observe,
        settings.clone(),
        defaults().anomaly,
        BaselineState::Ready(Arc::new(model.baseline.clone())),
        Arc::new(SystemTime::now),
    );
    group.bench_function(BenchmarkId::new("json_64x16", "decode_shard"), |b| {
        b.iter(|| {
            let exchange = &exchanges[next % exchanges.len()];
            next += 1;
            let decoded = decode(black_box(exchange), &schema).expect("decodes");
            shard.observe(Batch {
                observations: decoded.observations,
                extra: decoded.extra_features.len(),
                names: None,
            });
        })
    });

    // The shard alone, on batches decoded beforehand (criterion times only
    // `observe`; building each batch is setup): what the detectors and the
    // window cost without the decode.
    let decoded: Vec<Vec<Observation>> = exchanges
        .iter()
        .map(|exchange| decode(exchange, &schema).expect("decodes").observations)
        .collect();
    group.bench_function(BenchmarkId::new("64x16", "shard"), |b| {
        b.iter_batched(
            || {
                let observations = decoded[next % decoded.len()].clone();
                next += 1;
                Batch {
                    observations,
                    extra: 0,
                    names: None,
                }
            },
            |batch| shard.observe(batch),
            BatchSize::SmallInput,
        )
    });

    // Pessimistic amortisation: a 30 s step every 65,536 observations
    // (~2,200 obs/s), so each evaluation sees a full 10-slice window.
    let per_block = EVAL_EVERY / 64;
    let step_ms = settings.step.as_millis() as u64;
    let mut window = model.window();
    let mut blocks = 0u64;
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(6))
        .throughput(Throughput::Elements(EVAL_EVERY as u64));
    group.bench_function(BenchmarkId::new("json_64x16", "eval_every_65536"), |b| {
        b.iter(|| {
            let start = T0_MS + blocks * step_ms;
            for i in 0..per_block {
                let exchange = &exchanges[next % exchanges.len()];
                next += 1;
                let decoded = decode(black_box(exchange), &schema).expect("decodes");
                let at = start + (i * 64) as u64 * step_ms / EVAL_EVERY as u64;
                for o in &decoded.observations {
                    window.observe(at, o);
                }
            }
            blocks += 1;
            window.advance(start + step_ms);
            evaluate(
                &model.baseline,
                &window.summary(),
                &settings,
                &model.multivariate,
                String::new(),
            )
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    decode_group,
    window_group,
    evaluate_group,
    pipeline_group
);
criterion_main!(benches);
