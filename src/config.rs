//! Configuration: a YAML file and command-line overrides, validated into a
//! [`Config`] that the rest of the sidecar trusts without re-checking.
//!
//! Loading happens in two passes. Each top-level section is deserialized on
//! its own, so a typo in `limits` does not hide a bad unit in `mirror`; then
//! [`raw::RawConfig::validate`] parses addresses, durations and sizes and checks
//! ranges. Every problem from both passes is reported together, each with the
//! key path that caused it.

mod raw;
pub(crate) mod units;

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::uri::{Authority, Scheme};

/// Drift methods are named by the detectors that implement them.
pub use crate::detect::drift::Method as DriftMethod;
pub use raw::RawConfig;

/// A validated sidecar configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address the proxy listens on for client traffic.
    pub listen: SocketAddr,
    /// Address of the admin server (metrics, health, JSON API).
    pub admin: SocketAddr,
    /// The model server that requests are forwarded to.
    pub upstream: Upstream,
    /// Which protocol non-gRPC requests use towards the upstream.
    pub upstream_protocol: UpstreamProtocol,
    /// Path on the upstream that answers 2xx when the model server is ready.
    pub health_path: String,
    /// Proxy event-loop threads, each with its own connections and upstream pool.
    pub threads: usize,
    /// Limits that protect the proxy and the model server.
    pub limits: Limits,
    /// Graceful shutdown behaviour.
    pub shutdown: Shutdown,
    /// The tee and its mirror queue.
    pub mirror: Mirror,
    /// Models served behind this sidecar; their names bound metric labels.
    pub models: Vec<Model>,
    /// Windowed drift detection.
    pub drift: Drift,
    /// Per-request anomaly detection.
    pub anomaly: crate::detect::anomaly::AnomalyConfig,
    /// Ground-truth feedback joined to predictions (`POST /v1/feedback`).
    pub feedback: Feedback,
    /// Alert rules and sinks.
    pub alerts: crate::alert::AlertsConfig,
    /// The forensic audit log, when `audit:` is configured.
    pub audit: Option<crate::audit::AuditConfig>,
    /// OpenTelemetry export (off unless `telemetry.otlp_endpoint` is set).
    pub telemetry: crate::telemetry::otel::TelemetryConfig,
}

/// Where the model server is reached.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// `http` (TLS to the upstream arrives with the security issue).
    pub scheme: Scheme,
    /// Host and port of the model server.
    pub authority: Authority,
}

/// Protocol used for non-gRPC requests to the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 for ordinary requests and h2c for gRPC.
    Auto,
    /// HTTP/1.1 for ordinary requests (gRPC still needs h2c).
    Http1,
    /// HTTP/2 with prior knowledge for everything.
    H2c,
}

/// Request and connection limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body accepted, in bytes; larger ones get 413. For
    /// gRPC it caps each message, since streams may carry any number.
    pub max_body: u64,
    /// Longest wait for the upstream's response head before answering 504.
    pub request_timeout: Duration,
    /// Longest a client may take to send a request head before it is disconnected.
    pub header_timeout: Duration,
    /// Most client connections served at once; more are refused with 503.
    pub max_connections: usize,
}

/// Shutdown settings.
#[derive(Debug, Clone)]
pub struct Shutdown {
    /// How long in-flight requests may take to finish after SIGTERM.
    pub drain: Duration,
}

/// Settings of the tee and the mirror queue behind it.
#[derive(Debug, Clone)]
pub struct Mirror {
    /// Whether exchanges are copied at all; off leaves a bare proxy.
    pub enabled: bool,
    /// Capacity of the bounded queue, in exchanges.
    pub queue: usize,
    /// Bytes of each body copied into an exchange; the rest is only counted.
    pub max_payload: usize,
    /// Body bytes the queue may hold at once, whatever its count.
    pub max_queue_bytes: usize,
    /// Worker threads draining the queue.
    pub workers: usize,
}

/// A model served behind the sidecar.
#[derive(Debug, Clone)]
pub struct Model {
    /// Name as it appears in request paths and metric labels.
    pub name: String,
    /// Wire protocol; `None` detects it from the request path.
    pub protocol: Option<Protocol>,
    /// Feature names in tensor order.
    pub features: Vec<String>,
    /// Names of the categorical features.
    pub categorical: Vec<String>,
    /// Where the reference profile comes from; `None` leaves drift off.
    pub baseline: Option<BaselineSource>,
    /// Input validation mode.
    pub validate: Validate,
    /// Which response output is the prediction (default: the first).
    pub output: Option<String>,
    /// JSON pointers naming rows, features and predictions (`json` protocol).
    pub json: Option<JsonPointers>,
}

/// Where a model's baseline comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum BaselineSource {
    /// A file written by `sidewatch baseline build`.
    File(std::path::PathBuf),
    /// Learned from the first live observations, then frozen.
    Learn {
        /// How many observations to learn from.
        observations: u64,
        /// Where to persist it, so a restart reloads instead of relearning.
        save: Option<std::path::PathBuf>,
    },
}

/// What validation does with bad inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validate {
    /// No checks.
    Off,
    /// Count violations; never touch the request.
    Observe,
}

/// JSON pointers (RFC 6901) for the `json` protocol.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JsonPointers {
    /// The array of rows in the request; absent: the body is one row.
    pub rows: Option<String>,
    /// Feature name → pointer relative to a row.
    pub features: Vec<(String, String)>,
    /// The prediction, relative to a response row.
    pub prediction: Option<String>,
    /// The array of rows in the response; absent: the body is one row.
    pub prediction_rows: Option<String>,
}

/// Drift detection settings.
#[derive(Debug, Clone)]
pub struct Drift {
    /// Length of the sliding window compared with the baseline.
    pub window: Duration,
    /// How often the window advances and is evaluated.
    pub step: Duration,
    /// Fewest observations in a window before it is evaluated.
    pub min_samples: u64,
    /// Tests to run.
    pub methods: Vec<DriftMethod>,
    /// Significance level for p-value tests (after correction).
    pub alpha: f64,
    /// Multiple-testing correction across features.
    pub correction: Correction,
    /// Quantile bins per numeric feature when a baseline is learned.
    pub bins: usize,
    /// Raw values kept per feature per window for KS and Wasserstein.
    pub sample: usize,
    /// Drift of the numeric features taken together.
    pub multivariate: MultivariateSettings,
}

/// Multivariate drift settings (`drift.multivariate`): PCA reconstruction
/// error and the Mahalanobis shift of the window mean, per model with at
/// least two numeric features.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MultivariateSettings {
    /// Whether the detectors run (default true).
    pub enabled: bool,
    /// PCA keeps the fewest components explaining more than this share of
    /// the reference variance (default 0.65, NannyML's).
    pub variance: f64,
    /// Rows per reference chunk for the PCA band; `None`:
    /// `min(min_samples, baseline rows / 10)`.
    pub chunk: Option<usize>,
    /// Half-width of the PCA band in standard deviations of the reference
    /// chunks' mean errors (default 3).
    pub sigmas: f64,
    /// Significance of the mean-shift test (default `drift.alpha`).
    pub alpha: f64,
}

/// How ground-truth feedback is joined to the predictions it belongs to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Feedback {
    /// Whether predictions are kept for feedback at all (off saves the
    /// store's memory when no labels ever arrive).
    pub enabled: bool,
    /// How long a prediction waits for its feedback; later feedback gets 410.
    pub ttl: Duration,
    /// Predictions awaiting feedback per model; past it the oldest are evicted.
    pub capacity: usize,
    /// Joined feedbacks the rolling accuracy / MAE is computed over.
    pub window: usize,
    /// DDM's parameters on the error stream (see [`DEFAULT_DDM`]).
    pub ddm: crate::detect::concept::DdmParams,
}

/// DDM's default parameters for feedback, stricter than River's (30, 2, 3).
///
/// River's defaults raise false alarms on a steady error rate: in 200
/// simulated streams of 10,000 outcomes, 45% alarmed at a steady 10% error
/// rate (56% at 5%), most within the first hundred outcomes, where a lucky
/// start sets a low minimum. A warm-up of 300 and a drift level of 4σ
/// (warning at 3σ) brought that to 0.5% (2% at 5%), while a doubled error
/// rate was still caught in every stream, after a median of ~1,300
/// outcomes (10% → 50%: ~300).
pub const DEFAULT_DDM: crate::detect::concept::DdmParams = crate::detect::concept::DdmParams {
    warm_start: 300,
    warning_threshold: 3.0,
    drift_threshold: 4.0,
};

/// Multiple-testing correction across a model's features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Correction {
    /// Compare each p-value with alpha.
    None,
    /// Compare with alpha / number of tests (controls the family-wise error).
    Bonferroni,
    /// Benjamini–Hochberg step-up (controls the false discovery rate).
    BenjaminiHochberg,
}

/// Inference protocols sidewatch understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// KServe v2 / Open Inference Protocol, REST and gRPC.
    KserveV2,
    /// TensorFlow Serving / KServe v1 REST.
    Tfserving,
    /// OpenAI-compatible completions, chat and embeddings.
    Openai,
    /// Any JSON, with features named by JSON pointers.
    Json,
}

/// Values given on the command line that take precedence over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<String>,
    /// `--upstream`.
    pub upstream: Option<String>,
    /// `--admin`.
    pub admin: Option<String>,
}

/// One thing wrong with a configuration, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `limits.max_body`.
    pub path: String,
    /// What is wrong, in a sentence.
    pub message: String,
}

/// Every problem found in a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file was read but is not a valid configuration.
    #[error("{}", ProblemList(.0))]
    Invalid(Vec<Problem>),
}

struct ProblemList<'a>(&'a [Problem]);

// === impl Config ===

impl Config {
    /// Loads the file (if any), applies overrides and validates the result.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let text = match file {
            Some(path) => std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.display().to_string(),
                source,
            })?,
            None => String::new(),
        };
        Self::from_yaml(&text, overrides)
    }

    /// Parses and validates YAML text with overrides applied.
    pub fn from_yaml(text: &str, overrides: &Overrides) -> Result<Config, ConfigError> {
        let (mut raw, mut problems) = RawConfig::parse(text);
        raw.apply(overrides);
        match raw.validate() {
            Ok(config) if problems.is_empty() => Ok(config),
            Ok(_) => Err(ConfigError::Invalid(problems)),
            Err(more) => {
                problems.extend(more);
                Err(ConfigError::Invalid(problems))
            }
        }
    }

    /// The index of a configured model by name, for bounded metric labels.
    pub fn model_index(&self, name: &str) -> Option<usize> {
        self.models.iter().position(|m| m.name == name)
    }
}

// === impl Problem ===

impl Problem {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "{n} problem{} in config", if n == 1 { "" } else { "s" })?;
        for problem in self.0 {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

impl ConfigError {
    /// The individual problems, for callers that present them themselves.
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            ConfigError::Read { .. } => vec![Problem::new("", self.to_string())],
            ConfigError::Invalid(problems) => problems.clone(),
        }
    }
}
