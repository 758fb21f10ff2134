//! The `alerts:` section: rules and sinks as written, and their validation.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use serde::Deserialize;

use crate::config::units::{Scalar, parse_duration};
use crate::config::{DriftMethod, Problem};

/// Validated `alerts:` settings.
#[derive(Debug, Clone)]
pub struct AlertsConfig {
    /// How often the rules are evaluated.
    pub evaluate_every: Duration,
    /// How often a firing alert is re-sent to Alertmanager.
    pub resend_every: Duration,
    /// The rules, in file order.
    pub rules: Vec<Rule>,
    /// Where notifications go.
    pub sinks: Vec<SinkConfig>,
}

/// One alerting rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The `alertname` label.
    pub name: String,
    /// What is measured.
    pub signal: Signal,
    /// Feature globs for per-feature signals (`*` and `?`).
    pub features: Vec<String>,
    /// Model globs for per-model signals.
    pub models: Vec<String>,
    /// When the alert is active and when it clears.
    pub threshold: Threshold,
    /// How long the condition must hold before the alert fires.
    pub for_: Duration,
    /// The `severity` label.
    pub severity: String,
    /// Extra labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations; `{{ value }}`, `{{ threshold }}` and `{{ labels.NAME }}` are filled in.
    pub annotations: BTreeMap<String, String>,
}

/// A threshold with hysteresis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    /// Which side of `value` is bad.
    pub comparison: Comparison,
    /// The value that activates the alert.
    pub value: f64,
    /// The value past which a firing alert resolves (equal to `value` without hysteresis).
    pub resolve: f64,
}

/// Which side of a threshold is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// Active when the value is above the threshold.
    Above,
    /// Active when the value is below the threshold.
    Below,
}

/// A measurable signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// `drift.<method>.score`, per model, feature and method.
    DriftScore(DriftMethod),
    /// `drift.<method>.p_value` (ks, chi2), per model, feature and method.
    DriftPValue(DriftMethod),
    /// `drift.drifted_share`, per model.
    DriftedShare,
    /// `anomaly.rate`: flagged share of observations since the last evaluation, per model and detector.
    AnomalyRate,
    /// `concept.events`: change detections since the last evaluation, per model and detector.
    ConceptEvents,
    /// `decode.error_rate`: share of mirrored exchanges not decoded since the last evaluation, per model.
    DecodeErrorRate,
    /// `mirror.drop_rate`: share of exchanges dropped by the tee since the last evaluation.
    MirrorDropRate,
    /// `upstream.error_rate`: share of responses with a 5xx status since the last evaluation.
    UpstreamErrorRate,
    /// `latency.p99`: the 99th percentile of request latency since start, in seconds.
    LatencyP99,
    /// `audit.write_errors`: failed audit log writes or syncs since the last evaluation.
    AuditWriteErrors,
}

/// Names of signals the design lists whose data does not exist yet.
const NOT_YET: &[(&str, &str)] = &[
    ("signature.valid", "arrives with model signature checks"),
    ("extraction.suspects", "arrives with extraction detection"),
];

/// One notification sink.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Where it delivers.
    pub kind: SinkKind,
    /// Notifications queued at most; more are dropped and counted.
    pub queue: usize,
    /// Attempts per notification before giving up.
    pub max_attempts: u32,
    /// The first retry delay; doubled per attempt (capped at 30 s), with jitter.
    pub backoff: Duration,
    /// Timeout of one HTTP attempt.
    pub timeout: Duration,
    /// How `https` URLs are verified: the Mozilla roots built in (so a
    /// distroless image needs no CA bundle) plus the certificates of
    /// `ca_file` (PEM), for a private CA or a self-signed receiver.
    pub tls: Arc<rustls::ClientConfig>,
}

/// The sink types.
#[derive(Debug, Clone)]
pub enum SinkKind {
    /// Alertmanager's v2 API at this base URL.
    Alertmanager {
        /// Base URL, e.g. `http://127.0.0.1:9093`.
        url: Uri,
    },
    /// A signed JSON POST.
    Webhook {
        /// Where to post.
        url: Uri,
        /// The HMAC key.
        secret: Secret,
    },
    /// A `tracing` event per notification.
    Log,
}

/// Key bytes that never show in debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

/// `alerts:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    evaluate_every: Option<Scalar>,
    resend_every: Option<Scalar>,
    #[serde(default)]
    rules: Vec<RawRule>,
    #[serde(default)]
    sinks: Vec<RawSink>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    signal: String,
    features: Option<Vec<String>>,
    models: Option<Vec<String>>,
    above: Option<f64>,
    below: Option<f64>,
    resolve_below: Option<f64>,
    resolve_above: Option<f64>,
    #[serde(rename = "for")]
    for_: Option<Scalar>,
    severity: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSink {
    #[serde(rename = "type")]
    kind: String,
    url: Option<String>,
    secret_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    queue: Option<u64>,
    max_attempts: Option<u32>,
    backoff: Option<Scalar>,
    timeout: Option<Scalar>,
}

// === impl AlertsConfig ===

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            evaluate_every: Duration::from_secs(15),
            resend_every: Duration::from_secs(60),
            rules: Vec::new(),
            sinks: Vec::new(),
        }
    }
}

// === impl Signal ===

impl Signal {
    /// Parses a signal name; the error says why it is not one.
    pub fn parse(text: &str) -> Result<Signal, String> {
        let simple = match text {
            "drift.drifted_share" => Some(Signal::DriftedShare),
            "anomaly.rate" => Some(Signal::AnomalyRate),
            "concept.events" => Some(Signal::ConceptEvents),
            "decode.error_rate" => Some(Signal::DecodeErrorRate),
            "mirror.drop_rate" => Some(Signal::MirrorDropRate),
            "upstream.error_rate" => Some(Signal::UpstreamErrorRate),
            "latency.p99" => Some(Signal::LatencyP99),
            "audit.write_errors" => Some(Signal::AuditWriteErrors),
            _ => None,
        };
        if let Some(signal) = simple {
            return Ok(signal);
        }
        if let Some((_, why)) = NOT_YET.iter().find(|(name, _)| *name == text) {
            return Err(format!("signal {text:?} is not available yet ({why})"));
        }
        let parts: Vec<&str> = text.split('.').collect();
        if let ["drift", method, field] = parts.as_slice() {
            let Some(method) = DriftMethod::ALL.iter().find(|m| m.as_str() == *method) else {
                return Err(format!(
                    "{method:?} in {text:?} is not one of psi, ks, js, wasserstein, hellinger, chi2"
                ));
            };
            return match *field {
                "score" => Ok(Signal::DriftScore(*method)),
                "p_value" if matches!(method.as_str(), "ks" | "chi2") => {
                    Ok(Signal::DriftPValue(*method))
                }
                "p_value" => Err(format!(
                    "{} has no p-value; use drift.{}.score",
                    method.as_str(),
                    method.as_str()
                )),
                other => Err(format!("{other:?} in {text:?} is not score or p_value")),
            };
        }
        Err(format!(
            "{text:?} is not a signal; expected drift.<method>.<score|p_value>, drift.drifted_share, \
             anomaly.rate, concept.events, decode.error_rate, mirror.drop_rate, \
             upstream.error_rate, latency.p99 or audit.write_errors"
        ))
    }

    /// The name as written in config.
    pub fn name(&self) -> String {
        match self {
            Signal::DriftScore(m) => format!("drift.{}.score", m.as_str()),
            Signal::DriftPValue(m) => format!("drift.{}.p_value", m.as_str()),
            Signal::DriftedShare => "drift.drifted_share".to_owned(),
            Signal::AnomalyRate => "anomaly.rate".to_owned(),
            Signal::ConceptEvents => "concept.events".to_owned(),
            Signal::DecodeErrorRate => "decode.error_rate".to_owned(),
            Signal::MirrorDropRate => "mirror.drop_rate".to_owned(),
            Signal::UpstreamErrorRate => "upstream.error_rate".to_owned(),
            Signal::LatencyP99 => "latency.p99".to_owned(),
            Signal::AuditWriteErrors => "audit.write_errors".to_owned(),
        }
    }
}

// === impl Threshold ===

impl Threshold {
    /// Whether `value` activates the alert.
    pub fn breached(&self, value: f64) -> bool {
        match self.comparison {
            Comparison::Above => value > self.value,
            Comparison::Below => value < self.value,
        }
    }

    /// Whether `value` lets a firing alert resolve: once it is back at or
    /// past the resolve threshold. Inclusive, so that without hysteresis
    /// (`resolve` equal to the threshold) resolving is exactly the
    /// condition no longer holding, and `above: 0` on a count resolves
    /// when the count stops growing.
    pub fn cleared(&self, value: f64) -> bool {
        match self.comparison {
            Comparison::Above => value <= self.resolve,
            Comparison::Below => value >= self.resolve,
        }
    }
}

// === impl Secret ===

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

// === impl RawAlerts ===

impl RawAlerts {
    /// Validates into [`AlertsConfig`], adding each problem with its key path.
    pub fn validate(self, problems: &mut Vec<Problem>) -> AlertsConfig {
        let mut fail = |path: String, message: String| problems.push(Problem::new(path, message));
        let mut duration = |path: &str, value: &Option<Scalar>, default: &str, zero_ok: bool| {
            let text = value.as_ref().map_or(default, |s| s.0.as_str());
            match parse_duration(text) {
                Ok(d) if zero_ok || !d.is_zero() => d,
                Ok(_) => {
                    fail(path.to_owned(), "must be greater than zero".to_owned());
                    Duration::from_secs(1)
                }
                Err(message) => {
                    fail(path.to_owned(), message);
                    Duration::from_secs(1)
                }
            }
        };
        let evaluate_every = duration("alerts.evaluate_every", &self.evaluate_every, "15s", false);
        let resend_every = duration("alerts.resend_every", &self.resend_every, "1m", false);
        let mut rules = Vec::new();
        let mut raw_durations = Vec::new();
        for (i, raw) in self.rules.iter().enumerate() {
            raw_durations.push(duration(
                &format!("alerts.rules[{i}].for"),
                &raw.for_,
                "0s",
                true,
            ));
        }
        for (i, (raw, for_)) in self.rules.into_iter().zip(raw_durations).enumerate() {
            if let Some(rule) = rule(i, raw, for_, problems) {
                rules.push(rule);
            }
        }
        for (i, rule) in rules.iter().enumerate() {
            if rules[..i].iter().any(|r| r.name == rule.name) {
                problems.push(Problem::new(
                    format!("alerts.rules[{i}].name"),
                    format!("{:?} is used by an earlier rule", rule.name),
                ));
            }
        }
        let sinks = self
            .sinks
            .into_iter()
            .enumerate()
            .filter_map(|(i, raw)| sink(i, raw, problems))
            .collect();
        AlertsConfig {
            evaluate_every,
            resend_every,
            rules,
            sinks,
        }
    }
}

fn rule(index: usize, raw: RawRule, for_: Duration, problems: &mut Vec<Problem>) -> Option<Rule> {
    let path = |key: &str| format!("alerts.rules[{index}].{key}");
    let before = problems.len();
    if !valid_label_name(&raw.name) {
        problems.push(Problem::new(
            path("name"),
            format!(
                "{:?} is not a valid alert name ([a-zA-Z_][a-zA-Z0-9_]*)",
                raw.name
            ),
        ));
    }
    let signal = match Signal::parse(&raw.signal) {
        Ok(signal) => Some(signal),
        Err(message) => {
            problems.push(Problem::new(path("signal"), message));
            None
        }
    };
    let threshold = match (raw.above, raw.below, raw.resolve_below, raw.resolve_above) {
        (Some(value), None, resolve, None) => {
            let resolve = resolve.unwrap_or(value);
            if resolve > value {
                problems.push(Problem::new(
                    path("resolve_below"),
                    format!("{resolve} must not be above `above` ({value})"),
                ));
            }
            Some(Threshold {
                comparison: Comparison::Above,
                value,
                resolve,
            })
        }
        (None, Some(value), None, resolve) => {
            let resolve = resolve.unwrap_or(value);
            if resolve < value {
                problems.push(Problem::new(
                    path("resolve_above"),
                    format!("{resolve} must not be below `below` ({value})"),
                ));
            }
            Some(Threshold {
                comparison: Comparison::Below,
                value,
                resolve,
            })
        }
        (Some(_), Some(_), _, _) => {
            problems.push(Problem::new(
                path("above"),
                "give `above` or `below`, not both",
            ));
            None
        }
        (None, None, _, _) => {
            problems.push(Problem::new(
                path("above"),
                "a threshold (`above` or `below`) is required",
            ));
            None
        }
        (Some(_), None, _, Some(_)) => {
            problems.push(Problem::new(
                path("resolve_above"),
                "with `above`, hysteresis is `resolve_below`",
            ));
            None
        }
        (None, Some(_), Some(_), _) => {
            problems.push(Problem::new(
                path("resolve_below"),
                "with `below`, hysteresis is `resolve_above`",
            ));
            None
        }
    };
    for (key, value) in [
        ("above", raw.above),
        ("below", raw.below),
        ("resolve_below", raw.resolve_below),
        ("resolve_above", raw.resolve_above),
    ] {
        if value.is_some_and(|v| !v.is_finite()) {
            problems.push(Problem::new(path(key), "must be a finite number"));
        }
    }
    for name in raw.labels.keys() {
        if !valid_label_name(name) || matches!(name.as_str(), "alertname" | "severity") {
            problems.push(Problem::new(
                path(&format!("labels.{name}")),
                "not a valid label name (alertname and severity are set by the rule)",
            ));
        }
    }
    let severity = raw.severity.unwrap_or_else(|| "warning".to_owned());
    if severity.is_empty() {
        problems.push(Problem::new(path("severity"), "must not be empty"));
    }
    if problems.len() != before {
        return None;
    }
    Some(Rule {
        name: raw.name,
        signal: signal?,
        features: raw.features.unwrap_or_else(|| vec!["*".to_owned()]),
        models: raw.models.unwrap_or_else(|| vec!["*".to_owned()]),
        threshold: threshold?,
        for_,
        severity,
        labels: raw.labels,
        annotations: raw.annotations,
    })
}

fn sink(index: usize, raw: RawSink, problems: &mut Vec<Problem>) -> Option<SinkConfig> {
    let path = |key: &str| format!("alerts.sinks[{index}].{key}");
    let before = problems.len();
    let mut url = || -> Option<Uri> {
        let Some(text) = raw.url.as_deref() else {
            problems.push(Problem::new(path("url"), "required for this sink type"));
            return None;
        };
        match text.parse::<Uri>() {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http" | "https"))
                    && uri.authority().is_some() =>
            {
                Some(uri)
            }
            _ => {
                problems.push(Problem::new(
                    path("url"),
                    format!("{text:?} is not an absolute http:// or https:// URL"),
                ));
                None
            }
        }
    };
    let kind = match raw.kind.as_str() {
        "alertmanager" => url().map(|url| SinkKind::Alertmanager { url }),
        "webhook" => {
            let url = url();
            let secret = match &raw.secret_file {
                None => {
                    problems.push(Problem::new(
                        path("secret_file"),
                        "a webhook needs a secret_file holding the HMAC key",
                    ));
                    None
                }
                Some(file) => match std::fs::read(file) {
                    Ok(bytes) => {
                        let key = trim_ascii_end(bytes);
                        if key.len() < 16 {
                            problems.push(Problem::new(
                                path("secret_file"),
                                format!("{} holds fewer than 16 bytes", file.display()),
                            ));
                        }
                        Some(Secret(key))
                    }
                    Err(e) => {
                        problems.push(Problem::new(
                            path("secret_file"),
                            format!("cannot read {}: {e}", file.display()),
                        ));
                        None
                    }
                },
            };
            match (url, secret) {
                (Some(url), Some(secret)) => Some(SinkKind::Webhook { url, secret }),
                _ => None,
            }
        }
        "log" => Some(SinkKind::Log),
        other => {
            problems.push(Problem::new(
                path("type"),
                format!("{other:?} is not one of alertmanager, webhook, log"),
            ));
            None
        }
    };
    let queue = raw.queue.unwrap_or(1024);
    if !(1..=1_000_000).contains(&queue) {
        problems.push(Problem::new(
            path("queue"),
            format!("{queue} is outside 1..=1000000"),
        ));
    }
    let max_attempts = raw.max_attempts.unwrap_or(6);
    if !(1..=100).contains(&max_attempts) {
        problems.push(Problem::new(
            path("max_attempts"),
            format!("{max_attempts} is outside 1..=100"),
        ));
    }
    let mut duration = |key: &str, value: &Option<Scalar>, default: &str| {
        let text = value.as_ref().map_or(default, |s| s.0.as_str());
        match parse_duration(text) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                problems.push(Problem::new(path(key), "must be greater than zero"));
                Duration::from_secs(1)
            }
            Err(message) => {
                problems.push(Problem::new(path(key), message));
                Duration::from_secs(1)
            }
        }
    };
    let backoff = duration("backoff", &raw.backoff, "500ms");
    let timeout = duration("timeout", &raw.timeout, "5s");
    let https = raw
        .url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"));
    if raw.ca_file.is_some() && !https {
        problems.push(Problem::new(
            path("ca_file"),
            "only applies to https:// URLs; use https or remove it",
        ));
    }
    let ca = match &raw.ca_file {
        None => Vec::new(),
        Some(file) => {
            use rustls::pki_types::CertificateDer;
            use rustls::pki_types::pem::PemObject;
            match CertificateDer::pem_file_iter(file)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            {
                Ok(certs) if !certs.is_empty() => certs,
                Ok(_) => {
                    problems.push(Problem::new(
                        path("ca_file"),
                        format!("{} holds no PEM certificate", file.display()),
                    ));
                    Vec::new()
                }
                Err(e) => {
                    problems.push(Problem::new(
                        path("ca_file"),
                        format!("cannot read certificates from {}: {e}", file.display()),
                    ));
                    Vec::new()
                }
            }
        }
    };
    let tls = match tls_config(&ca) {
        Ok(tls) => Some(Arc::new(tls)),
        Err(e) => {
            problems.push(Problem::new(
                path("ca_file"),
                format!("cannot set up TLS: {e}"),
            ));
            None
        }
    };
    if problems.len() != before {
        return None;
    }
    Some(SinkConfig {
        kind: kind?,
        queue: queue as usize,
        max_attempts,
        backoff,
        timeout,
        tls: tls?,
    })
}

/// rustls with the ring provider, trusting the Mozilla roots and `extra`.
fn tls_config(
    extra: &[rustls::pki_types::CertificateDer<'static>],
) -> Result<rustls::ClientConfig, rustls::Error> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for cert in extra {
        roots.add(cert.clone())?;
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// A secret file usually ends in a newline that is not part of the key.
fn trim_ascii_end(mut bytes: Vec<u8>) -> Vec<u8> {
    while bytes.last().is_some_and(u8::is_ascii_whitespace) {
        bytes.pop();
    }
    bytes
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Matches `*` (any run) and `?` (one character) globs.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(yaml: &str) -> (AlertsConfig, Vec<String>) {
        let raw: RawAlerts = serde_norway::from_str(yaml).unwrap();
        let mut problems = Vec::new();
        let config = raw.validate(&mut problems);
        (config, problems.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn rules_parse_with_hysteresis_and_defaults() {
        let (config, problems) = validate(
            "rules:\n  - {name: FeatureDrift, signal: drift.ks.p_value, features: [\"age*\"], below: 0.01, resolve_above: 0.05, for: 1m}\n\
             sinks:\n  - {type: log}\n  - {type: alertmanager, url: \"http://127.0.0.1:9093\"}\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        let rule = &config.rules[0];
        assert!(matches!(rule.signal, Signal::DriftPValue(m) if m.as_str() == "ks"));
        assert_eq!(rule.signal.name(), "drift.ks.p_value");
        assert_eq!(rule.threshold.comparison, Comparison::Below);
        assert_eq!(rule.threshold.resolve, 0.05);
        assert_eq!(rule.for_, Duration::from_secs(60));
        assert_eq!(rule.severity, "warning");
        assert_eq!(config.sinks.len(), 2);
    }

    #[test]
    fn bad_rules_and_sinks_are_reported_with_paths() {
        let (_, problems) = validate(
            "rules:\n  - {name: A, signal: signature.valid, above: 1}\n  - {name: B, signal: drift.psi.p_value, above: 1}\n\
             \x20 - {name: C, signal: latency.p99, above: 1, resolve_below: 2}\n  - {name: D, signal: latency.p99}\n\
             sinks:\n  - {type: pager}\n  - {type: webhook, url: \"http://x/\"}\n  - {type: alertmanager, url: \"ftp://am\"}\n\
             \x20 - {type: alertmanager, url: \"https://am\", ca_file: /nonexistent.pem}\n\
             \x20 - {type: log, ca_file: /etc/hostname}\n",
        );
        let joined = problems.join("\n");
        for expected in [
            "alerts.rules[0].signal: signal \"signature.valid\" is not available yet",
            "alerts.rules[1].signal: psi has no p-value",
            "alerts.rules[2].resolve_below",
            "alerts.rules[3].above: a threshold",
            "alerts.sinks[0].type",
            "alerts.sinks[1].secret_file",
            "alerts.sinks[2].url",
            "alerts.sinks[3].ca_file: cannot read certificates from /nonexistent.pem",
            "alerts.sinks[4].ca_file: only applies to https:// URLs",
        ] {
            assert!(
                joined.contains(expected),
                "missing {expected:?} in\n{joined}"
            );
        }
    }

    #[test]
    fn the_config_file_reports_alert_problems_with_full_paths() {
        let error = crate::Config::from_yaml(
            "upstream: http://127.0.0.1:1\nalerts:\n  rules:\n    - {name: A, signal: latency.p99, above: 1, bogus: 1}\n",
            &crate::config::Overrides::default(),
        )
        .expect_err("unknown key");
        let text = error.to_string();
        assert!(text.contains("alerts.rules[0]"), "{text}");
        assert!(text.contains("bogus"), "{text}");
        let config = crate::Config::from_yaml(
            "upstream: http://127.0.0.1:1\nalerts: {evaluate_every: 2s, rules: [{name: A, signal: latency.p99, above: 1}]}\n",
            &crate::config::Overrides::default(),
        )
        .expect("valid");
        assert_eq!(config.alerts.evaluate_every, Duration::from_secs(2));
        assert_eq!(config.alerts.rules[0].signal, Signal::LatencyP99);
        let none = crate::Config::from_yaml("upstream: http://127.0.0.1:1\n", &Default::default())
            .expect("valid");
        assert!(none.alerts.rules.is_empty() && none.alerts.sinks.is_empty());
    }

    #[test]
    fn globs_match() {
        assert!(glob_match("*", "anything"));
        assert!(glob_match("age*", "age_years"));
        assert!(glob_match("f?o", "foo"));
        assert!(glob_match("*_x*", "a_b_xy"));
        assert!(!glob_match("age*", "page"));
        assert!(!glob_match("f?o", "fo"));
    }
}
