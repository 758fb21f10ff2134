//! Audit records as OTLP log records (`telemetry.export_audit_logs`), so a
//! collector can ship them on to Kafka, Loki or object storage. The signed
//! segment files stay the evidence; this is a copy for search and retention
//! elsewhere.

use std::time::SystemTime;

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, Severity};
use opentelemetry::trace::{SpanId, TraceFlags, TraceId};
use opentelemetry_sdk::logs::SdkLogger;

use crate::audit::Entry;
use crate::proxy::headers::is_valid_traceparent;

/// Emits audit entries as log records; cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct AuditLogs {
    logger: SdkLogger,
}

/// What the log record says besides the entry itself; all optional.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordMeta<'a> {
    /// The record's position in the audit chain.
    pub seq: Option<u64>,
    /// When the record was written (default: now).
    pub time: Option<SystemTime>,
    /// The request's `traceparent` as the upstream got it: its parent id
    /// (the proxy's upstream-call span) becomes the log's span id. Without
    /// it the log carries only the entry's trace id.
    pub traceparent: Option<&'a str>,
}

// === impl AuditLogs ===

impl AuditLogs {
    pub(super) fn new(logger: SdkLogger) -> AuditLogs {
        AuditLogs { logger }
    }

    /// Queues `entry` for export as a log record whose body is the entry's
    /// JSON. Returns at once: a full queue drops the record and counts it in
    /// `sidewatch_otel_dropped_total{signal="logs"}`.
    pub fn export(&self, entry: &Entry, meta: RecordMeta<'_>) {
        let body = match serde_json::to_string(entry) {
            Ok(json) => json,
            Err(error) => {
                tracing::warn!(%error, request_id = %entry.request_id, "Cannot encode an audit entry for OTLP.");
                return;
            }
        };
        let mut record = self.logger.create_log_record();
        let now = SystemTime::now();
        record.set_event_name("sidewatch.audit");
        record.set_timestamp(meta.time.unwrap_or(now));
        record.set_observed_timestamp(now);
        let flagged = entry.verdicts.flagged;
        record.set_severity_number(if flagged {
            Severity::Warn
        } else {
            Severity::Info
        });
        record.set_severity_text(if flagged { "WARN" } else { "INFO" });
        record.set_body(AnyValue::String(body.into()));
        record.add_attribute("sidewatch.request_id", entry.request_id.clone());
        if let Some(model) = &entry.model {
            record.add_attribute("sidewatch.model", model.clone());
        }
        record.add_attribute("http.response.status_code", i64::from(entry.status));
        record.add_attribute("sidewatch.route", entry.route.clone());
        record.add_attribute("sidewatch.flagged", flagged);
        if let Some(seq) = meta.seq {
            // An audit chain longer than i64::MAX records is not a concern.
            record.add_attribute(
                "sidewatch.audit.seq",
                i64::try_from(seq).unwrap_or(i64::MAX),
            );
        }
        if let Some((trace, span, flags)) = meta.traceparent.and_then(parse_traceparent) {
            record.set_trace_context(trace, span, Some(flags));
        } else if let Some(trace) = entry
            .trace_id
            .as_deref()
            .and_then(|t| TraceId::from_hex(t).ok())
            .filter(|t| *t != TraceId::INVALID)
        {
            record.set_trace_context(trace, SpanId::INVALID, None);
        }
        self.logger.emit(record);
    }
}

/// Trace id, parent id and flags of a well-formed W3C `traceparent`.
pub(super) fn parse_traceparent(value: &str) -> Option<(TraceId, SpanId, TraceFlags)> {
    if !is_valid_traceparent(value.as_bytes()) {
        return None;
    }
    let trace = TraceId::from_hex(value.get(3..35)?).ok()?;
    let span = SpanId::from_hex(value.get(36..52)?).ok()?;
    let flags = u8::from_str_radix(value.get(53..55)?, 16).ok()?;
    Some((trace, span, TraceFlags::new(flags)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_parse_into_ids() {
        let parsed = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let (trace, span, flags) = parsed.expect("valid");
        assert_eq!(
            trace,
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").expect("hex")
        );
        assert_eq!(span, SpanId::from_hex("00f067aa0ba902b7").expect("hex"));
        assert!(flags.is_sampled());
        assert!(parse_traceparent("00-abc-00f067aa0ba902b7-01").is_none());
    }
}
