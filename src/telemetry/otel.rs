//! OpenTelemetry over OTLP gRPC, on when `telemetry.otlp_endpoint` is set:
//! a SERVER span per proxied request with a CLIENT span for the upstream
//! call, W3C trace context from the client handed on to the model server,
//! and optionally the audit records as OTLP log records.
//!
//! - [`config`]: the `telemetry:` section;
//! - [`spans`]: starting and ending one request's spans (named by `route`);
//! - [`logs`]: audit entries as log records;
//! - `export`: the queue gate and counters between the SDK and the exporters.
//!
//! Nothing here runs on the request path unless export is configured: the
//! proxy holds an `Option<Tracing>` and, when it is `None`, only generates a
//! `traceparent` as before. Spans and records go through the SDK's batch
//! processors (their own threads); the gRPC exporters run on a small tokio
//! runtime of their own, so a slow or absent collector only fills the
//! queue, whose overflow is dropped and counted.

pub mod config;
mod export;
pub mod logs;
mod route;
pub mod spans;

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::logs::LoggerProvider as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::{BatchLogProcessor, SdkLoggerProvider};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};

pub use config::{RawTelemetry, TelemetryConfig};
pub use export::{OtelStats, SignalStats};
pub use logs::{AuditLogs, RecordMeta};
pub use spans::{RequestSpans, Tracing};

use export::{Counted, Gate, GatedLogs, GatedSpans, Ids};

/// Why the OTLP pipeline could not start.
#[derive(Debug, thiserror::Error)]
pub enum OtelError {
    /// The exporters' runtime thread could not start.
    #[error("cannot start the OTLP exporter thread: {0}")]
    Runtime(#[source] std::io::Error),
    /// An exporter refused its configuration.
    #[error("cannot build the OTLP {signal} exporter for {endpoint}: {source}")]
    Exporter {
        /// "span" or "log".
        signal: &'static str,
        /// `telemetry.otlp_endpoint`.
        endpoint: String,
        /// What the exporter said.
        source: opentelemetry_otlp::ExporterBuildError,
    },
}

/// The running OTLP pipeline of one sidecar.
#[derive(Debug)]
pub struct Otel {
    // Fields drop in order: the providers flush through the runtime, so
    // they go first.
    tracer_provider: SdkTracerProvider,
    logger_provider: Option<SdkLoggerProvider>,
    tracing: Tracing,
    audit_logs: Option<AuditLogs>,
    stats: Arc<OtelStats>,
    timeout: Duration,
    runtime: ExportRuntime,
}

/// The exporters' tokio runtime on its own thread: tonic's channel lives
/// there, while the SDK's batch threads block on its futures.
#[derive(Debug)]
struct ExportRuntime {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

// === impl Otel ===

impl Otel {
    /// Starts the pipeline when `telemetry.otlp_endpoint` is set; `None`
    /// otherwise. No connection is made until the first export.
    pub fn start(config: &crate::Config) -> Result<Option<Otel>, OtelError> {
        let telemetry = &config.telemetry;
        let Some(endpoint) = telemetry.otlp_endpoint.clone() else {
            return Ok(None);
        };
        let (runtime, handle) = ExportRuntime::start().map_err(OtelError::Runtime)?;
        // tonic's lazily connecting channel spawns its worker on the
        // runtime current while it is built.
        let _entered = handle.enter();
        let stats = Arc::new(OtelStats::default());
        let resource = Resource::builder()
            .with_service_name(telemetry.service_name.clone())
            .with_attributes(
                telemetry
                    .resource
                    .iter()
                    .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
            )
            .build();
        let scope = InstrumentationScope::builder("sidewatch")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();

        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .with_timeout(telemetry.export_timeout)
            .build()
            .map_err(|source| OtelError::Exporter {
                signal: "span",
                endpoint: endpoint.clone(),
                source,
            })?;
        let gate = Gate::new(telemetry.queue, stats.clone(), false);
        let processor = BatchSpanProcessor::builder(Counted {
            inner: exporter,
            gate: gate.clone(),
        })
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(telemetry.queue)
                .with_max_export_batch_size(telemetry.queue.min(512))
                .with_scheduled_delay(telemetry.export_interval)
                .build(),
        )
        .build();
        let tracer_provider = SdkTracerProvider::builder()
            .with_span_processor(GatedSpans {
                inner: processor,
                gate,
            })
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                telemetry.sampling_ratio,
            ))))
            .with_id_generator(Ids)
            .with_resource(resource.clone())
            .build();
        let tracing = Tracing::new(
            tracer_provider.tracer_with_scope(scope.clone()),
            &config.upstream,
            config.upstream_protocol,
        );

        let logger_provider = if telemetry.export_audit_logs {
            let exporter = opentelemetry_otlp::LogExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .with_timeout(telemetry.export_timeout)
                .build()
                .map_err(|source| OtelError::Exporter {
                    signal: "log",
                    endpoint: endpoint.clone(),
                    source,
                })?;
            let gate = Gate::new(telemetry.queue, stats.clone(), true);
            let processor = BatchLogProcessor::builder(Counted {
                inner: exporter,
                gate: gate.clone(),
            })
            .with_batch_config(
                opentelemetry_sdk::logs::BatchConfigBuilder::default()
                    .with_max_queue_size(telemetry.queue)
                    .with_max_export_batch_size(telemetry.queue.min(512))
                    .with_scheduled_delay(telemetry.export_interval)
                    .build(),
            )
            .build();
            Some(
                SdkLoggerProvider::builder()
                    .with_log_processor(GatedLogs {
                        inner: processor,
                        gate,
                    })
                    .with_resource(resource)
                    .build(),
            )
        } else {
            None
        };
        let audit_logs = logger_provider
            .as_ref()
            .map(|p| AuditLogs::new(p.logger_with_scope(scope)));
        tracing::info!(
            %endpoint,
            sampling_ratio = telemetry.sampling_ratio,
            audit_logs = telemetry.export_audit_logs,
            "Exporting traces over OTLP."
        );
        Ok(Some(Otel {
            tracer_provider,
            logger_provider,
            tracing,
            audit_logs,
            stats,
            timeout: telemetry.export_timeout,
            runtime,
        }))
    }

    /// The span starter the proxy threads clone.
    pub fn tracing(&self) -> &Tracing {
        &self.tracing
    }

    /// The audit-record exporter, when `telemetry.export_audit_logs` is on.
    pub fn audit_logs(&self) -> Option<&AuditLogs> {
        self.audit_logs.as_ref()
    }

    /// Export counters (`sidewatch_otel_*`); register on `/metrics`.
    pub fn stats(&self) -> &Arc<OtelStats> {
        &self.stats
    }

    /// Exports what is queued (each signal waits at most
    /// `telemetry.export_timeout`) and stops. Blocks: call it off the async
    /// threads.
    pub fn shutdown(mut self) {
        if let Err(error) = self.tracer_provider.shutdown_with_timeout(self.timeout) {
            tracing::warn!(%error, "Flushing spans at shutdown failed.");
        }
        if let Some(logs) = &self.logger_provider
            && let Err(error) = logs.shutdown_with_timeout(self.timeout)
        {
            tracing::warn!(%error, "Flushing audit log records at shutdown failed.");
        }
        self.runtime.stop();
    }
}

// === impl ExportRuntime ===

impl ExportRuntime {
    fn start() -> std::io::Result<(ExportRuntime, tokio::runtime::Handle)> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sidewatch-otel".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok((
            ExportRuntime {
                stop: Some(stop),
                thread: Some(thread),
            },
            handle,
        ))
    }

    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The trace id (32 lowercase hex digits) of the `traceparent` among
/// request headers the tee copied, for audit records.
pub fn trace_id_of(headers: &crate::mirror::HeaderCopy) -> Option<String> {
    let (trace, _, _) = logs::parse_traceparent(headers.get_str("traceparent")?)?;
    Some(format!("{trace}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_come_from_well_formed_traceparents_only() {
        let copy = |value: &'static str| {
            let mut map = http::HeaderMap::new();
            map.insert("traceparent", http::HeaderValue::from_static(value));
            crate::mirror::HeaderCopy::copy_from(&map)
        };
        assert_eq!(
            trace_id_of(&copy(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            ))
            .as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(trace_id_of(&copy("00-xyz-00f067aa0ba902b7-01")), None);
        assert_eq!(trace_id_of(&crate::mirror::HeaderCopy::default()), None);
    }
}
