//! The `telemetry:` config section: raw as written, then validated with key
//! paths (every problem reported at once).

use std::collections::BTreeMap;
use std::time::Duration;

use http::Uri;
use serde::Deserialize;

use crate::config::Problem;
use crate::config::units::{Scalar, parse_duration};

/// The validated `telemetry:` section.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// The OTLP gRPC collector, e.g. `http://127.0.0.1:4317`; `None` turns
    /// tracing export off and leaves the proxy's hot path without spans.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported resource.
    pub service_name: String,
    /// Share of traces sampled when the client sent no sampling decision;
    /// a client's `traceparent` flag always wins (parent-based sampling).
    pub sampling_ratio: f64,
    /// Whether audit records are also exported as OTLP log records.
    pub export_audit_logs: bool,
    /// Longest one export call may take before it counts as failed.
    pub export_timeout: Duration,
    /// How often queued spans and records are sent (sooner when a batch fills).
    pub export_interval: Duration,
    /// Spans (and, separately, log records) waiting for export; when full,
    /// new ones are dropped and counted rather than slowing requests.
    pub queue: usize,
    /// Extra resource attributes, e.g. `deployment.environment: prod`.
    pub resource: Vec<(String, String)>,
}

/// The `telemetry:` section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    otlp_endpoint: Option<String>,
    service_name: Option<String>,
    sampling_ratio: Option<f64>,
    export_audit_logs: Option<bool>,
    export_timeout: Option<Scalar>,
    export_interval: Option<Scalar>,
    queue: Option<u64>,
    #[serde(default)]
    resource: BTreeMap<String, String>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: None,
            service_name: "sidewatch".to_owned(),
            sampling_ratio: 1.0,
            export_audit_logs: false,
            export_timeout: Duration::from_secs(10),
            export_interval: Duration::from_secs(5),
            queue: 2048,
            resource: Vec::new(),
        }
    }
}

// === impl RawTelemetry ===

impl RawTelemetry {
    /// The validated section; problems are pushed with their key paths.
    pub fn validate(self, problems: &mut Vec<Problem>) -> TelemetryConfig {
        let defaults = TelemetryConfig::default();
        let mut fail = |path: &str, message: String| problems.push(Problem::new(path, message));
        let otlp_endpoint = self.otlp_endpoint.filter(|e| {
            let problem = endpoint_problem(e);
            if let Some(message) = &problem {
                fail("telemetry.otlp_endpoint", message.clone());
            }
            problem.is_none()
        });
        let service_name = match self.service_name {
            Some(name) if name.trim().is_empty() => {
                fail("telemetry.service_name", "must not be empty".into());
                defaults.service_name
            }
            Some(name) => name,
            None => defaults.service_name,
        };
        let sampling_ratio = match self.sampling_ratio {
            Some(r) if !(0.0..=1.0).contains(&r) => {
                fail(
                    "telemetry.sampling_ratio",
                    format!("{r} is outside 0.0..=1.0"),
                );
                1.0
            }
            Some(r) => r,
            None => defaults.sampling_ratio,
        };
        let export_audit_logs = self.export_audit_logs.unwrap_or(false);
        if export_audit_logs && otlp_endpoint.is_none() {
            fail(
                "telemetry.export_audit_logs",
                "needs telemetry.otlp_endpoint (the collector the records go to)".into(),
            );
        }
        let mut duration = |path: &str, value: Option<&Scalar>, default: Duration| match value
            .map(|s| parse_duration(&s.0))
        {
            None => default,
            Some(Ok(d)) if !d.is_zero() => d,
            Some(Ok(_)) => {
                fail(path, "must be greater than zero".into());
                default
            }
            Some(Err(message)) => {
                fail(path, message);
                default
            }
        };
        let export_timeout = duration(
            "telemetry.export_timeout",
            self.export_timeout.as_ref(),
            defaults.export_timeout,
        );
        let export_interval = duration(
            "telemetry.export_interval",
            self.export_interval.as_ref(),
            defaults.export_interval,
        );
        let queue = match self.queue {
            None => defaults.queue,
            Some(n @ 1..=1_000_000) => n as usize,
            Some(n) => {
                fail("telemetry.queue", format!("{n} is outside 1..=1000000"));
                defaults.queue
            }
        };
        for key in self.resource.keys() {
            if key.is_empty() || key == "service.name" {
                fail(
                    &format!("telemetry.resource.{key}"),
                    "must be a non-empty attribute name other than service.name (set telemetry.service_name)".into(),
                );
            }
        }
        TelemetryConfig {
            otlp_endpoint,
            service_name,
            sampling_ratio,
            export_audit_logs,
            export_timeout,
            export_interval,
            queue,
            resource: self.resource.into_iter().collect(),
        }
    }
}

/// Why an endpoint cannot be used, if it cannot.
fn endpoint_problem(text: &str) -> Option<String> {
    let uri: Uri = match text.parse() {
        Ok(uri) => uri,
        Err(e) => return Some(format!("{text:?} is not a URL: {e}")),
    };
    match (uri.scheme_str(), uri.authority()) {
        (Some("http"), Some(_)) => {}
        (Some("https"), _) => {
            return Some(
                "https is not supported yet; export to a collector on the node or in the pod over http://"
                    .into(),
            );
        }
        _ => {
            return Some(format!(
                "{text:?} needs http:// and a host, e.g. http://127.0.0.1:4317"
            ));
        }
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Some(format!(
            "{text:?} must not have a path: OTLP gRPC names its own service paths"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(yaml: &str) -> (TelemetryConfig, Vec<String>) {
        let raw: RawTelemetry = serde_norway::from_str(yaml).expect("test yaml");
        let mut problems = Vec::new();
        let config = raw.validate(&mut problems);
        (config, problems.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn defaults_leave_export_off() {
        let (config, problems) = validate("{}");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(config, TelemetryConfig::default());
    }

    #[test]
    fn a_full_section_parses() {
        let (config, problems) = validate(
            "{otlp_endpoint: 'http://collector:4317', service_name: iris-sidecar, \
             sampling_ratio: 0.25, export_audit_logs: true, export_timeout: 3s, queue: 512, \
             resource: {deployment.environment: prod}}",
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            config.otlp_endpoint.as_deref(),
            Some("http://collector:4317")
        );
        assert_eq!(config.service_name, "iris-sidecar");
        assert_eq!(config.sampling_ratio, 0.25);
        assert!(config.export_audit_logs);
        assert_eq!(config.export_timeout, Duration::from_secs(3));
        assert_eq!(config.queue, 512);
        assert_eq!(
            config.resource,
            vec![("deployment.environment".to_owned(), "prod".to_owned())]
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let (_, problems) = validate(
            "{otlp_endpoint: 'https://collector:4317', service_name: ' ', sampling_ratio: 1.5, \
             export_audit_logs: true, export_timeout: 0s, queue: 0, resource: {service.name: x}}",
        );
        let paths: Vec<&str> = problems
            .iter()
            .map(|p| p.split(':').next().unwrap_or(""))
            .collect();
        assert_eq!(
            paths,
            [
                "telemetry.otlp_endpoint",
                "telemetry.service_name",
                "telemetry.sampling_ratio",
                "telemetry.export_audit_logs",
                "telemetry.export_timeout",
                "telemetry.queue",
                "telemetry.resource.service.name",
            ],
            "{problems:?}"
        );
    }

    #[test]
    fn endpoints_need_http_a_host_and_no_path() {
        assert_eq!(endpoint_problem("http://127.0.0.1:4317"), None);
        assert_eq!(endpoint_problem("http://otel-collector:4317/"), None);
        assert!(endpoint_problem("127.0.0.1:4317").is_some());
        assert!(endpoint_problem("http://c:4318/v1/traces").is_some());
        assert!(endpoint_problem("not a url").is_some());
    }
}
