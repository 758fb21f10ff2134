//! The configuration as written: serde structs that accept what YAML gives
//! and a validation pass that turns them into [`Config`].

use std::net::SocketAddr;

use http::Uri;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::DEFAULT_DDM;
use super::units::{Scalar, parse_duration, parse_size};
use super::{
    BaselineSource, Config, Correction, Drift, DriftMethod, Feedback, JsonPointers, Limits, Mirror,
    Model, MultivariateSettings, Overrides, Problem, Protocol, Shutdown, Upstream,
    UpstreamProtocol, Validate,
};
use crate::detect::anomaly::{AnomalyConfig, ConfidenceConfig, HstConfig};
use crate::detect::concept::DdmParams;

const SECTIONS: &[&str] = &[
    "listen",
    "admin",
    "upstream",
    "upstream_protocol",
    "health_path",
    "threads",
    "limits",
    "shutdown",
    "mirror",
    "models",
    "drift",
    "anomaly",
    "feedback",
    "alerts",
    "audit",
    "telemetry",
];

/// The configuration file as written, before validation.
#[derive(Debug, Default)]
pub struct RawConfig {
    listen: Option<String>,
    admin: Option<String>,
    upstream: Option<String>,
    upstream_protocol: Option<String>,
    health_path: Option<String>,
    threads: Option<Scalar>,
    limits: RawLimits,
    shutdown: RawShutdown,
    mirror: RawMirror,
    models: Vec<RawModel>,
    drift: RawDrift,
    anomaly: RawAnomaly,
    feedback: RawFeedback,
    alerts: crate::alert::RawAlerts,
    audit: Option<crate::audit::RawAudit>,
    telemetry: crate::telemetry::otel::RawTelemetry,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_body: Option<Scalar>,
    request_timeout: Option<Scalar>,
    header_timeout: Option<Scalar>,
    max_connections: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShutdown {
    drain: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMirror {
    enabled: Option<bool>,
    queue: Option<u64>,
    max_payload: Option<Scalar>,
    max_queue_bytes: Option<Scalar>,
    workers: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    name: String,
    protocol: Option<String>,
    #[serde(default)]
    features: Vec<String>,
    #[serde(default)]
    categorical: Vec<String>,
    baseline: Option<RawBaseline>,
    validate: Option<String>,
    output: Option<String>,
    json: Option<RawJson>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawBaseline {
    File(String),
    Learn(RawLearn),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLearn {
    learn: u64,
    save: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJson {
    rows: Option<String>,
    #[serde(default)]
    features: std::collections::BTreeMap<String, String>,
    prediction: Option<String>,
    prediction_rows: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnomaly {
    zscore: Option<f64>,
    mahalanobis_p: Option<f64>,
    #[serde(default)]
    hst: RawHst,
    min_confidence: Option<f64>,
    max_entropy: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHst {
    trees: Option<usize>,
    height: Option<usize>,
    window: Option<usize>,
    threshold: Option<f64>,
    seed: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFeedback {
    enabled: Option<bool>,
    ttl: Option<Scalar>,
    capacity: Option<u64>,
    window: Option<u64>,
    #[serde(default)]
    ddm: RawDdm,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDdm {
    warm_start: Option<u64>,
    warning_threshold: Option<f64>,
    drift_threshold: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDrift {
    window: Option<Scalar>,
    step: Option<Scalar>,
    min_samples: Option<u64>,
    methods: Option<Vec<String>>,
    alpha: Option<f64>,
    correction: Option<String>,
    bins: Option<u64>,
    sample: Option<u64>,
    #[serde(default)]
    multivariate: RawMultivariate,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMultivariate {
    enabled: Option<bool>,
    variance: Option<f64>,
    chunk: Option<u64>,
    sigmas: Option<f64>,
    alpha: Option<f64>,
}

/// Collects problems during validation so that all of them are reported.
struct Checker {
    problems: Vec<Problem>,
}

// === impl RawConfig ===

impl RawConfig {
    /// Parses YAML section by section; returns what parsed and what did not.
    pub fn parse(text: &str) -> (RawConfig, Vec<Problem>) {
        let mut raw = RawConfig::default();
        let mut problems = Vec::new();
        let document: serde_norway::Value = match serde_norway::from_str(text) {
            Ok(value) => value,
            Err(e) => {
                problems.push(Problem::new("", format!("not valid YAML: {e}")));
                return (raw, problems);
            }
        };
        let mapping = match document {
            serde_norway::Value::Null => return (raw, problems),
            serde_norway::Value::Mapping(mapping) => mapping,
            _ => {
                problems.push(Problem::new("", "the config must be a mapping of keys"));
                return (raw, problems);
            }
        };
        for (key, value) in mapping {
            let Some(key) = key.as_str().map(str::to_owned) else {
                problems.push(Problem::new("", format!("key {key:?} is not a string")));
                continue;
            };
            let mut take = |problems: &mut Vec<Problem>| -> bool {
                match key.as_str() {
                    "listen" => section(&key, value.clone(), problems).map(|v| raw.listen = v),
                    "admin" => section(&key, value.clone(), problems).map(|v| raw.admin = v),
                    "upstream" => section(&key, value.clone(), problems).map(|v| raw.upstream = v),
                    "upstream_protocol" => {
                        section(&key, value.clone(), problems).map(|v| raw.upstream_protocol = v)
                    }
                    "health_path" => {
                        section(&key, value.clone(), problems).map(|v| raw.health_path = v)
                    }
                    "threads" => section(&key, value.clone(), problems).map(|v| raw.threads = v),
                    "limits" => section(&key, value.clone(), problems).map(|v| raw.limits = v),
                    "shutdown" => section(&key, value.clone(), problems).map(|v| raw.shutdown = v),
                    "mirror" => section(&key, value.clone(), problems).map(|v| raw.mirror = v),
                    "models" => section(&key, value.clone(), problems).map(|v| raw.models = v),
                    "drift" => section(&key, value.clone(), problems).map(|v| raw.drift = v),
                    "anomaly" => section(&key, value.clone(), problems).map(|v| raw.anomaly = v),
                    "feedback" => section(&key, value.clone(), problems).map(|v| raw.feedback = v),
                    "alerts" => section(&key, value.clone(), problems).map(|v| raw.alerts = v),
                    "audit" => section(&key, value.clone(), problems).map(|v| raw.audit = Some(v)),
                    "telemetry" => {
                        section(&key, value.clone(), problems).map(|v| raw.telemetry = v)
                    }
                    _ => return false,
                };
                true
            };
            if !take(&mut problems) {
                problems.push(Problem::new(
                    key.clone(),
                    format!("unknown key; expected one of {}", SECTIONS.join(", ")),
                ));
            }
        }
        (raw, problems)
    }

    /// Lets command-line flags take precedence over the file.
    pub fn apply(&mut self, overrides: &Overrides) {
        if let Some(listen) = &overrides.listen {
            self.listen = Some(listen.clone());
        }
        if let Some(upstream) = &overrides.upstream {
            self.upstream = Some(upstream.clone());
        }
        if let Some(admin) = &overrides.admin {
            self.admin = Some(admin.clone());
        }
    }

    /// Checks every value and builds the validated config, or lists every problem.
    pub fn validate(self) -> Result<Config, Vec<Problem>> {
        let mut check = Checker {
            problems: Vec::new(),
        };
        let listen = check.address("listen", self.listen.as_deref().unwrap_or("0.0.0.0:8000"));
        let admin = check.address("admin", self.admin.as_deref().unwrap_or("0.0.0.0:9464"));
        let upstream = check.upstream(self.upstream.as_deref());
        let upstream_protocol = match self.upstream_protocol.as_deref().unwrap_or("auto") {
            "auto" => UpstreamProtocol::Auto,
            "http1" => UpstreamProtocol::Http1,
            "h2c" => UpstreamProtocol::H2c,
            other => {
                check.fail(
                    "upstream_protocol",
                    format!("{other:?} is not one of auto, http1, h2c"),
                );
                UpstreamProtocol::Auto
            }
        };
        let health_path = self
            .health_path
            .unwrap_or_else(|| "/v2/health/ready".to_owned());
        if !health_path.starts_with('/') || health_path.parse::<Uri>().is_err() {
            check.fail(
                "health_path",
                format!("{health_path:?} is not an absolute path like /v2/health/ready"),
            );
        }

        let threads = check.threads(self.threads.as_ref());
        let limits = Limits {
            max_body: check.size("limits.max_body", &self.limits.max_body, "16MiB", 1),
            request_timeout: check.duration(
                "limits.request_timeout",
                &self.limits.request_timeout,
                "30s",
            ),
            header_timeout: check.duration(
                "limits.header_timeout",
                &self.limits.header_timeout,
                "10s",
            ),
            max_connections: check.count(
                "limits.max_connections",
                self.limits.max_connections,
                10_000,
                1..=1_000_000,
            ),
        };
        let shutdown = Shutdown {
            drain: check.duration("shutdown.drain", &self.shutdown.drain, "20s"),
        };
        let max_payload =
            check.size("mirror.max_payload", &self.mirror.max_payload, "1MiB", 0) as usize;
        let mirror = Mirror {
            enabled: self.mirror.enabled.unwrap_or(true),
            queue: check.count("mirror.queue", self.mirror.queue, 8192, 1..=10_000_000),
            max_payload,
            max_queue_bytes: check.queue_bytes(&self.mirror.max_queue_bytes, max_payload as u64)
                as usize,
            workers: check.count("mirror.workers", self.mirror.workers, 1, 1..=64),
        };
        let models = self
            .models
            .into_iter()
            .enumerate()
            .map(|(i, model)| check.model(i, model))
            .collect::<Vec<_>>();
        check.unique_models(&models);
        let drift = check.drift(self.drift);
        let anomaly = check.anomaly(self.anomaly);
        let feedback = check.feedback(self.feedback);
        let alerts = self.alerts.validate(&mut check.problems);
        let audit = self.audit.and_then(|a| a.validate(&mut check.problems));
        if audit.is_some() && !mirror.enabled {
            // The audit log is fed by the tee; without it nothing would be
            // written and a forensic gap would look like quiet traffic.
            check.fail(
                "audit",
                "needs the tee: remove `mirror.enabled: false` or the audit section".to_owned(),
            );
        }
        let telemetry = self.telemetry.validate(&mut check.problems);

        match (listen, admin, upstream) {
            (Some(listen), Some(admin), Some(upstream)) if check.problems.is_empty() => {
                Ok(Config {
                    listen,
                    admin,
                    upstream,
                    upstream_protocol,
                    health_path,
                    threads,
                    limits,
                    shutdown,
                    mirror,
                    models,
                    drift,
                    anomaly,
                    feedback,
                    alerts,
                    audit,
                    telemetry,
                })
            }
            _ => Err(check.problems),
        }
    }
}

fn section<T: DeserializeOwned>(
    key: &str,
    value: serde_norway::Value,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    match serde_path_to_error::deserialize(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let inner = e.path().to_string();
            let path = match inner.as_str() {
                "." | "" => key.to_owned(),
                index if index.starts_with('[') => format!("{key}{index}"),
                field => format!("{key}.{field}"),
            };
            problems.push(Problem::new(path, e.into_inner().to_string()));
            None
        }
    }
}

// === impl Checker ===

impl Checker {
    fn fail(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem::new(path, message));
    }

    fn address(&mut self, path: &str, text: &str) -> Option<SocketAddr> {
        // `:8000` is shorthand for every interface, as in many servers' flags.
        let full = if text.starts_with(':') {
            format!("0.0.0.0{text}")
        } else {
            text.to_owned()
        };
        match full.parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.fail(
                    path,
                    format!("{text:?} is not an address like 0.0.0.0:8000 or 127.0.0.1:9464"),
                );
                None
            }
        }
    }

    fn upstream(&mut self, text: Option<&str>) -> Option<Upstream> {
        let Some(text) = text else {
            self.fail(
                "upstream",
                "required: the model server's URL, e.g. http://127.0.0.1:8080 (or --upstream)",
            );
            return None;
        };
        let uri: Uri = match text.parse() {
            Ok(uri) => uri,
            Err(e) => {
                self.fail("upstream", format!("{text:?} is not a URL: {e}"));
                return None;
            }
        };
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            self.fail(
                "upstream",
                format!("{text:?} needs a scheme and host, e.g. http://127.0.0.1:8080"),
            );
            return None;
        };
        if scheme.as_str() != "http" {
            self.fail(
                "upstream",
                format!("scheme {scheme} is not supported; use http:// (the model server is on localhost)"),
            );
            return None;
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            self.fail(
                "upstream",
                format!("{text:?} must not have a path; requests keep their own path"),
            );
            return None;
        }
        // The authority becomes the Host of requests without one: a
        // password there would be sent to the model server in every
        // request and printed in logs.
        if authority.as_str().contains('@') {
            self.fail(
                "upstream",
                "must not carry user:password@; the model server gets the client's own authentication headers",
            );
            return None;
        }
        Some(Upstream {
            scheme: scheme.clone(),
            authority: authority.clone(),
        })
    }

    fn duration(
        &mut self,
        path: &str,
        value: &Option<Scalar>,
        default: &str,
    ) -> std::time::Duration {
        let text = value.as_ref().map_or(default, |s| s.0.as_str());
        match parse_duration(text) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                self.fail(path, "must be greater than zero");
                std::time::Duration::from_secs(1)
            }
            Err(message) => {
                self.fail(path, message);
                std::time::Duration::from_secs(1)
            }
        }
    }

    fn size(&mut self, path: &str, value: &Option<Scalar>, default: &str, min: u64) -> u64 {
        let text = value.as_ref().map_or(default, |s| s.0.as_str());
        match parse_size(text) {
            Ok(n) if n >= min => n,
            Ok(n) => {
                self.fail(path, format!("{n} bytes is below the minimum of {min}"));
                min
            }
            Err(message) => {
                self.fail(path, message);
                min
            }
        }
    }

    /// `mirror.max_queue_bytes`: room for at least one exchange with both
    /// bodies at `max_payload`; unset, 64 MiB or that much if larger (so a
    /// large `max_payload` alone is never refused over a key not written).
    fn queue_bytes(&mut self, value: &Option<Scalar>, max_payload: u64) -> u64 {
        let one_exchange = max_payload.saturating_mul(2);
        match value {
            None => one_exchange.max(64 << 20),
            Some(_) => self.size("mirror.max_queue_bytes", value, "64MiB", one_exchange),
        }
    }

    /// `auto` (one per CPU) or a count of proxy event-loop threads.
    fn threads(&mut self, value: Option<&Scalar>) -> usize {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        match value.map(|v| v.0.as_str()) {
            None | Some("auto") => cpus,
            Some(text) => match text.parse::<usize>() {
                Ok(n @ 1..=1024) => n,
                _ => {
                    self.fail(
                        "threads",
                        format!("{text:?} is not auto or a thread count in 1..=1024"),
                    );
                    1
                }
            },
        }
    }

    fn count(
        &mut self,
        path: &str,
        value: Option<u64>,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> usize {
        let n = value.unwrap_or(default);
        if !range.contains(&n) {
            self.fail(
                path,
                format!("{n} is outside {}..={}", range.start(), range.end()),
            );
        }
        n as usize
    }

    fn model(&mut self, index: usize, raw: RawModel) -> Model {
        let path = format!("models[{index}]");
        let valid_name = !raw.name.is_empty()
            && raw.name.len() <= 128
            && raw
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid_name {
            self.fail(
                format!("{path}.name"),
                format!(
                    "{:?} must be 1-128 characters of letters, digits, '-', '_' or '.'",
                    raw.name
                ),
            );
        }
        let protocol = match raw.protocol.as_deref() {
            None | Some("auto") => None,
            Some("kserve_v2") => Some(Protocol::KserveV2),
            Some("tfserving") => Some(Protocol::Tfserving),
            Some("openai") => Some(Protocol::Openai),
            Some("json") => Some(Protocol::Json),
            Some(other) => {
                self.fail(
                    format!("{path}.protocol"),
                    format!("{other:?} is not one of kserve_v2, tfserving, openai, json"),
                );
                None
            }
        };
        for name in &raw.categorical {
            if !raw.features.contains(name) {
                self.fail(
                    format!("{path}.categorical"),
                    format!("{name:?} is not listed in features"),
                );
            }
        }
        let baseline = match raw.baseline {
            None => None,
            Some(RawBaseline::File(path)) => Some(BaselineSource::File(path.into())),
            Some(RawBaseline::Learn(learn)) => {
                if learn.learn < 2 {
                    self.fail(
                        format!("{path}.baseline.learn"),
                        "must be at least 2 observations",
                    );
                }
                Some(BaselineSource::Learn {
                    observations: learn.learn,
                    save: learn.save.map(Into::into),
                })
            }
        };
        let validate = match raw.validate.as_deref().unwrap_or("observe") {
            "off" => Validate::Off,
            "observe" => Validate::Observe,
            "enforce" => {
                self.fail(
                    format!("{path}.validate"),
                    "enforce (inline rejection) is not available in this release; use observe",
                );
                Validate::Observe
            }
            other => {
                self.fail(
                    format!("{path}.validate"),
                    format!("{other:?} is not one of off, observe"),
                );
                Validate::Observe
            }
        };
        let json = raw.json.map(|json| {
            for (feature, pointer) in json
                .features
                .iter()
                .map(|(f, p)| (f.as_str(), Some(p)))
                .chain([
                    ("rows", json.rows.as_ref()),
                    ("prediction", json.prediction.as_ref()),
                    ("prediction_rows", json.prediction_rows.as_ref()),
                ])
            {
                if let Some(pointer) = pointer
                    && !(pointer.is_empty() || pointer.starts_with('/'))
                {
                    self.fail(
                        format!("{path}.json"),
                        format!(
                            "{feature}: {pointer:?} is not a JSON pointer (it must start with /)"
                        ),
                    );
                }
            }
            JsonPointers {
                rows: json.rows,
                features: json.features.into_iter().collect(),
                prediction: json.prediction,
                prediction_rows: json.prediction_rows,
            }
        });
        if protocol == Some(Protocol::Json) && json.is_none() {
            self.fail(
                format!("{path}.json"),
                "protocol json needs json pointers: { rows, features: {name: pointer}, prediction }",
            );
        }
        Model {
            name: raw.name,
            protocol,
            features: raw.features,
            categorical: raw.categorical,
            baseline,
            validate,
            output: raw.output,
            json,
        }
    }

    fn anomaly(&mut self, raw: RawAnomaly) -> AnomalyConfig {
        let defaults = AnomalyConfig::default();
        let config = AnomalyConfig {
            zscore: raw.zscore.unwrap_or(defaults.zscore),
            mahalanobis_p: raw.mahalanobis_p.unwrap_or(defaults.mahalanobis_p),
            hst: HstConfig {
                trees: raw.hst.trees.unwrap_or(defaults.hst.trees),
                height: raw.hst.height.unwrap_or(defaults.hst.height),
                window: raw.hst.window.unwrap_or(defaults.hst.window),
                threshold: raw.hst.threshold.unwrap_or(defaults.hst.threshold),
                seed: raw.hst.seed.unwrap_or(defaults.hst.seed),
            },
            confidence: ConfidenceConfig {
                min_confidence: raw
                    .min_confidence
                    .unwrap_or(defaults.confidence.min_confidence),
                max_entropy: raw.max_entropy.unwrap_or(defaults.confidence.max_entropy),
            },
        };
        // The detectors own their rules; each problem names its key.
        match config.validate() {
            Ok(()) => {}
            Err(crate::detect::anomaly::AnomalyError::Config(problems)) => {
                for problem in problems.split("; ") {
                    self.fail("anomaly", problem.to_owned());
                }
            }
            Err(other) => self.fail("anomaly", other.to_string()),
        }
        config
    }

    fn feedback(&mut self, raw: RawFeedback) -> Feedback {
        let ddm = DdmParams {
            warm_start: raw.ddm.warm_start.unwrap_or(DEFAULT_DDM.warm_start),
            warning_threshold: raw
                .ddm
                .warning_threshold
                .unwrap_or(DEFAULT_DDM.warning_threshold),
            drift_threshold: raw
                .ddm
                .drift_threshold
                .unwrap_or(DEFAULT_DDM.drift_threshold),
        };
        if let Err(problem) = ddm.validate() {
            self.fail(
                format!("feedback.ddm.{}", problem.param),
                problem.requirement,
            );
        } else if ddm.warning_threshold > ddm.drift_threshold {
            self.fail(
                "feedback.ddm.warning_threshold",
                "must not be above drift_threshold",
            );
        }
        Feedback {
            enabled: raw.enabled.unwrap_or(true),
            ttl: self.duration("feedback.ttl", &raw.ttl, "10m"),
            capacity: self.count("feedback.capacity", raw.capacity, 100_000, 1..=10_000_000),
            window: self.count("feedback.window", raw.window, 1000, 1..=1_000_000),
            ddm,
        }
    }

    fn drift(&mut self, raw: RawDrift) -> Drift {
        let window = self.duration("drift.window", &raw.window, "5m");
        let step = self.duration("drift.step", &raw.step, "30s");
        if step > window {
            self.fail("drift.step", "must not be longer than drift.window");
        }
        let methods = match raw.methods {
            None => DriftMethod::ALL.to_vec(),
            Some(names) => names
                .iter()
                .filter_map(|name| {
                    let method = DriftMethod::ALL
                        .iter()
                        .find(|m| m.as_str() == name)
                        .copied();
                    if method.is_none() {
                        self.fail(
                            "drift.methods",
                            format!(
                                "{name:?} is not one of psi, ks, js, wasserstein, hellinger, chi2"
                            ),
                        );
                    }
                    method
                })
                .collect(),
        };
        let alpha = raw.alpha.unwrap_or(0.05);
        if !(alpha > 0.0 && alpha < 1.0) {
            self.fail("drift.alpha", format!("{alpha} is not between 0 and 1"));
        }
        let correction = match raw.correction.as_deref().unwrap_or("bonferroni") {
            "none" => Correction::None,
            "bonferroni" => Correction::Bonferroni,
            "bh" | "benjamini_hochberg" => Correction::BenjaminiHochberg,
            other => {
                self.fail(
                    "drift.correction",
                    format!("{other:?} is not one of none, bonferroni, bh"),
                );
                Correction::Bonferroni
            }
        };
        Drift {
            window,
            step,
            min_samples: self.count("drift.min_samples", raw.min_samples, 200, 1..=100_000_000)
                as u64,
            methods,
            alpha,
            correction,
            bins: self.count("drift.bins", raw.bins, 10, 2..=1000),
            sample: self.count("drift.sample", raw.sample, 2000, 10..=1_000_000),
            multivariate: self.multivariate(raw.multivariate, alpha),
        }
    }

    fn multivariate(&mut self, raw: RawMultivariate, alpha: f64) -> MultivariateSettings {
        let variance = raw.variance.unwrap_or(0.65);
        if !(variance > 0.0 && variance < 1.0) {
            self.fail(
                "drift.multivariate.variance",
                format!("{variance} is not strictly between 0 and 1"),
            );
        }
        let sigmas = raw.sigmas.unwrap_or(3.0);
        if !(sigmas > 0.0 && sigmas.is_finite()) {
            self.fail(
                "drift.multivariate.sigmas",
                format!("{sigmas} is not a positive number"),
            );
        }
        // Unset, it is drift.alpha, already checked under that key.
        if let Some(alpha) = raw.alpha
            && !(alpha > 0.0 && alpha < 1.0)
        {
            self.fail(
                "drift.multivariate.alpha",
                format!("{alpha} is not between 0 and 1"),
            );
        }
        let alpha = raw.alpha.unwrap_or(alpha);
        let chunk = raw
            .chunk
            .map(|n| self.count("drift.multivariate.chunk", Some(n), n, 1..=10_000_000));
        MultivariateSettings {
            enabled: raw.enabled.unwrap_or(true),
            variance,
            chunk,
            sigmas,
            alpha,
        }
    }

    fn unique_models(&mut self, models: &[Model]) {
        for (i, model) in models.iter().enumerate() {
            if model.name == crate::telemetry::metrics::UNKNOWN_MODEL {
                self.fail(
                    format!("models[{i}].name"),
                    format!(
                        "{:?} is the model label of requests that match no model; pick another name",
                        model.name
                    ),
                );
            }
            if models[..i].iter().any(|m| m.name == model.name) {
                self.fail(
                    format!("models[{i}].name"),
                    format!("model {:?} is configured twice", model.name),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Config, ConfigError, Overrides};

    fn problems(yaml: &str) -> Vec<String> {
        match Config::from_yaml(yaml, &Overrides::default()) {
            Ok(_) => Vec::new(),
            Err(ConfigError::Invalid(p)) => p.iter().map(ToString::to_string).collect(),
            Err(e) => vec![e.to_string()],
        }
    }

    #[test]
    fn defaults_fill_a_minimal_config() {
        let config = Config::from_yaml("upstream: http://127.0.0.1:8080\n", &Overrides::default())
            .expect("minimal config is valid");
        assert_eq!(config.listen.to_string(), "0.0.0.0:8000");
        assert_eq!(config.admin.to_string(), "0.0.0.0:9464");
        assert_eq!(config.limits.max_body, 16 * 1024 * 1024);
        assert_eq!(config.limits.request_timeout.as_secs(), 30);
        assert_eq!(config.mirror.queue, 8192);
        assert_eq!(config.mirror.max_queue_bytes, 64 << 20);
        assert_eq!(config.health_path, "/v2/health/ready");
    }

    #[test]
    fn the_queue_byte_budget_holds_at_least_one_full_exchange() {
        let found = problems(
            "upstream: http://127.0.0.1:8080\nmirror: { max_payload: 1MiB, max_queue_bytes: 1MiB }\n",
        );
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("mirror.max_queue_bytes:")),
            "{found:?}"
        );
        let config = Config::from_yaml(
            "upstream: http://127.0.0.1:8080\nmirror: { max_payload: 1MiB, max_queue_bytes: 2MiB }\n",
            &Overrides::default(),
        )
        .expect("two payloads fit");
        assert_eq!(config.mirror.max_queue_bytes, 2 << 20);
        // Unset, it follows a large max_payload instead of refusing it.
        let config = Config::from_yaml(
            "upstream: http://127.0.0.1:8080\nmirror: { max_payload: 100MiB }\n",
            &Overrides::default(),
        )
        .expect("a large payload without a budget is valid");
        assert_eq!(config.mirror.max_queue_bytes, 200 << 20);
    }

    #[test]
    fn threads_are_auto_by_default_or_a_positive_count() {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let default = Config::from_yaml("upstream: http://127.0.0.1:8080\n", &Overrides::default())
            .expect("minimal config is valid");
        assert_eq!(default.threads, cpus);
        let auto = Config::from_yaml(
            "upstream: http://127.0.0.1:8080\nthreads: auto\n",
            &Overrides::default(),
        )
        .expect("auto is valid");
        assert_eq!(auto.threads, cpus);
        let three = Config::from_yaml(
            "upstream: http://127.0.0.1:8080\nthreads: 3\n",
            &Overrides::default(),
        )
        .expect("a thread count is valid");
        assert_eq!(three.threads, 3);
        for bad in ["0", "many", "-1"] {
            let found = problems(&format!(
                "upstream: http://127.0.0.1:8080\nthreads: {bad}\n"
            ));
            assert!(
                found.iter().any(|p| p.starts_with("threads:")),
                "threads: {bad} gave {found:?}"
            );
        }
    }

    #[test]
    fn an_audit_log_without_the_tee_is_refused() {
        let yaml = "upstream: http://127.0.0.1:8080\naudit: { dir: /tmp/a, signing_key: k }\n";
        assert_eq!(problems(yaml), Vec::<String>::new());
        let found = problems(&format!("{yaml}mirror: {{ enabled: false }}\n"));
        assert!(
            found.iter().any(|p| p.starts_with("audit: needs the tee")),
            "{found:?}"
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let found = problems(
            "listen: nowhere\nupstream: ftp://x\nlimits: { max_body: lots, request_timeout: soon }\n\
             mirror: { queue: 0, wrkers: 2 }\nmodels: [{ name: 'a b', protocol: grpc }]\nextra: 1\n",
        );
        let expect = [
            "listen:",
            "upstream:",
            "limits.max_body:",
            "limits.request_timeout:",
            "mirror.wrkers:",
            "models[0].name:",
            "models[0].protocol:",
            "extra: unknown key",
        ];
        for prefix in expect {
            assert!(
                found.iter().any(|p| p.starts_with(prefix)),
                "no problem starting with {prefix:?} in {found:#?}"
            );
        }
    }

    #[test]
    fn overrides_win_over_the_file() {
        let overrides = Overrides {
            listen: Some("127.0.0.1:0".into()),
            upstream: Some("http://127.0.0.1:9".into()),
            admin: Some(":9000".into()),
        };
        let config = Config::from_yaml(
            "listen: 0.0.0.0:1\nupstream: http://10.0.0.1:1\n",
            &overrides,
        )
        .expect("valid");
        assert_eq!(config.listen.to_string(), "127.0.0.1:0");
        assert_eq!(config.upstream.authority.as_str(), "127.0.0.1:9");
        assert_eq!(config.admin.to_string(), "0.0.0.0:9000");
    }

    #[test]
    fn a_missing_upstream_is_an_error() {
        let found = problems("listen: 127.0.0.1:0\n");
        assert!(
            found.iter().any(|p| p.starts_with("upstream: required")),
            "{found:?}"
        );
    }

    #[test]
    fn upstream_with_a_path_is_rejected() {
        assert!(!problems("upstream: http://127.0.0.1:8080/api\n").is_empty());
    }

    #[test]
    fn a_model_cannot_take_the_label_of_unmatched_requests() {
        let found = problems("upstream: http://127.0.0.1:8080\nmodels: [{ name: unknown }]\n");
        assert!(
            found.iter().any(|p| p.starts_with("models[0].name:")),
            "{found:?}"
        );
    }

    #[test]
    fn upstream_with_credentials_is_rejected() {
        let found = problems("upstream: http://user:secret@127.0.0.1:8080\n");
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("upstream:") && p.contains("user:password@")),
            "{found:?}"
        );
        assert!(found.iter().all(|p| !p.contains("secret")), "{found:?}");
    }
}

#[cfg(test)]
mod monitoring_tests {
    use super::super::{BaselineSource, Config, ConfigError, DriftMethod, Overrides};

    #[test]
    fn models_and_drift_parse_with_defaults() {
        let config = Config::from_yaml(
            "upstream: http://127.0.0.1:1\nmodels:\n  - name: iris\n    baseline: iris.baseline.json\n  - name: fraud\n    protocol: json\n    baseline: { learn: 500, save: fraud.json }\n    json: { rows: /rows, features: { amount: /amount }, prediction: /score }\ndrift: { window: 10m, methods: [ks, psi], correction: bh }\n",
            &Overrides::default(),
        )
        .expect("valid");
        assert_eq!(
            config.models[0].baseline,
            Some(BaselineSource::File("iris.baseline.json".into()))
        );
        assert!(matches!(
            config.models[1].baseline,
            Some(BaselineSource::Learn {
                observations: 500,
                ..
            })
        ));
        assert_eq!(
            config.models[1].json.as_ref().map(|j| j.features.len()),
            Some(1)
        );
        assert_eq!(config.drift.window.as_secs(), 600);
        assert_eq!(config.drift.step.as_secs(), 30);
        assert_eq!(
            config.drift.methods,
            vec![DriftMethod::Ks, DriftMethod::Psi]
        );
        assert_eq!(config.drift.min_samples, 200);
    }

    #[test]
    fn feedback_has_defaults_and_checked_ranges() {
        let config = Config::from_yaml("upstream: http://127.0.0.1:1\n", &Overrides::default())
            .expect("valid");
        assert!(config.feedback.enabled);
        assert_eq!(config.feedback.ttl.as_secs(), 600);
        assert_eq!(config.feedback.capacity, 100_000);
        assert_eq!(config.feedback.window, 1000);
        assert_eq!(config.feedback.ddm, super::super::DEFAULT_DDM);
        let set = Config::from_yaml(
            "upstream: http://127.0.0.1:1\nfeedback: { ttl: 90s, capacity: 10, window: 5 }\n",
            &Overrides::default(),
        )
        .expect("valid");
        assert_eq!(
            (
                set.feedback.ttl.as_secs(),
                set.feedback.capacity,
                set.feedback.window
            ),
            (90, 10, 5)
        );
        let Err(ConfigError::Invalid(problems)) = Config::from_yaml(
            "upstream: http://127.0.0.1:1\nfeedback: { ttl: 0s, capacity: 0, window: 0, tll: 1m }\n",
            &Overrides::default(),
        ) else {
            panic!("expected problems")
        };
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(
            text.iter().any(|p| p.starts_with("feedback.tll")),
            "{text:#?}"
        );
        let Err(ConfigError::Invalid(problems)) = Config::from_yaml(
            "upstream: http://127.0.0.1:1\nfeedback: { ttl: 0s, capacity: 0, window: 0, ddm: { drift_threshold: -1 } }\n",
            &Overrides::default(),
        ) else {
            panic!("expected problems")
        };
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        for prefix in [
            "feedback.ttl",
            "feedback.capacity",
            "feedback.window",
            "feedback.ddm.drift_threshold",
        ] {
            assert!(
                text.iter().any(|p| p.starts_with(prefix)),
                "{prefix} missing in {text:#?}"
            );
        }
    }

    #[test]
    fn bad_monitoring_keys_are_reported() {
        let err = Config::from_yaml(
            "upstream: http://127.0.0.1:1\nmodels: [{ name: m, protocol: json, validate: strict }]\ndrift: { step: 10m, window: 5m, methods: [magic], alpha: 2 }\n",
            &Overrides::default(),
        );
        let Err(ConfigError::Invalid(problems)) = err else {
            panic!("expected problems")
        };
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        for prefix in [
            "models[0].validate",
            "models[0].json",
            "drift.step",
            "drift.methods",
            "drift.alpha",
        ] {
            assert!(
                text.iter().any(|p| p.starts_with(prefix)),
                "{prefix} missing in {text:#?}"
            );
        }
    }
}
