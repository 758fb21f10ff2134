//! The assembled sidecar: mirror workers, proxy and admin server, started
//! together and stopped in order (stop accepting, drain, flush the mirror).
//!
//! `main`, the demo and the integration tests all start it through
//! [`Sidecar::start`], with listeners on the configured addresses (port 0
//! in tests).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Uri;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::{self, AdminState};
use crate::alert::{AlertEngine, AlertRegistry, Sources};
use crate::audit::{AuditConfig, AuditError, AuditFeed, FeedOptions, Writer, WriterOptions};
use crate::config::Config;
use crate::mirror::{self, Consumer, MirrorStats, MirrorWorkers};
use crate::monitor::{Monitor, MonitorError, MonitorView};
use crate::proxy::{self, DrainReport, Shared};
use crate::telemetry::ProxyStats;
use crate::telemetry::otel::{AuditLogs, Otel, OtelError};

/// How long the mirror workers get to drain the queue after the proxy stopped.
const MIRROR_FLUSH: Duration = Duration::from_secs(5);
/// Body bytes the audit feed may hold for `audit.payloads` at once: a few
/// seconds of 1 KiB requests at tens of thousands a second, a bounded
/// share of a sidecar's memory.
const AUDIT_PAYLOAD_BUDGET: usize = 64 << 20;
/// Verdicts the audit feed may fall behind by before they are dropped.
const AUDIT_VERDICT_QUEUE: usize = 65_536;
/// How long an audit entry waits for its verdicts: the shards evaluate
/// within milliseconds, so this only runs out when they are overloaded.
const AUDIT_HOLD: Duration = Duration::from_secs(2);

/// Why the sidecar could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not bind.
    #[error("cannot listen on {addr} for the {what}: {source}")]
    Bind {
        /// "proxy" or "admin".
        what: &'static str,
        /// The configured address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The proxy's event-loop threads could not start.
    #[error("cannot start the proxy threads: {0}")]
    Threads(#[source] std::io::Error),
    /// Monitoring could not start (a baseline is unusable, …).
    #[error(transparent)]
    Monitor(#[from] MonitorError),
    /// The audit log could not be opened (its directory, its key).
    #[error("cannot open the audit log: {0}")]
    Audit(#[from] AuditError),
    /// The audit feed thread could not start.
    #[error("cannot start the audit feed: {0}")]
    AuditFeed(#[source] std::io::Error),
    /// OTLP export could not start.
    #[error(transparent)]
    Otel(#[from] OtelError),
}

/// A running sidecar.
#[derive(Debug)]
pub struct Sidecar {
    proxy_addr: SocketAddr,
    admin_addr: SocketAddr,
    stop: watch::Sender<bool>,
    proxy: JoinHandle<DrainReport>,
    admin: JoinHandle<()>,
    workers: Option<MirrorWorkers>,
    stats: Arc<ProxyStats>,
    mirror: Option<Arc<MirrorStats>>,
    admin_state: Arc<AdminState>,
    monitor: Option<Monitor>,
    alerts: Option<AlertEngine>,
    audit: Option<AuditFeed>,
    otel: Option<Otel>,
}

/// How the shutdown went.
#[derive(Debug, Clone, Copy)]
pub struct ShutdownReport {
    /// Connections cut because `shutdown.drain` ran out.
    pub connections_cut: usize,
    /// Whether the mirror queue was fully handed to the consumers.
    pub mirror_flushed: bool,
}

impl Sidecar {
    /// Starts the sidecar with the monitoring pipeline behind the tee: the
    /// configured models' baselines, windows and drift detectors.
    pub async fn start_monitoring(config: &Config) -> Result<Sidecar, StartError> {
        let mut config = config.clone();
        learn_feature_names(&mut config).await;
        let config = &config;
        let monitor = Monitor::start(config, Arc::new(std::time::SystemTime::now))?;
        let mut sidecar = Self::start_with(config, || monitor.consumer(), Some(&monitor)).await?;
        sidecar.monitor = Some(monitor);
        Ok(sidecar)
    }

    /// Binds both ports and starts serving. `consumer` is called once per
    /// mirror worker to build what receives the exchanges.
    pub async fn start(
        config: &Config,
        consumer: impl FnMut() -> Box<dyn Consumer>,
    ) -> Result<Sidecar, StartError> {
        Self::start_with(config, consumer, None).await
    }

    async fn start_with(
        config: &Config,
        mut consumer: impl FnMut() -> Box<dyn Consumer>,
        pipeline: Option<&Monitor>,
    ) -> Result<Sidecar, StartError> {
        let monitor = pipeline.map(Monitor::view);
        let bind = |what, addr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { what, addr, source })
        };
        let proxy_listener = bind("proxy", config.listen).await?;
        let admin_listener = bind("admin", config.admin).await?;
        let proxy_addr = local_addr(&proxy_listener, config.listen);
        let admin_addr = local_addr(&admin_listener, config.admin);

        let stats = Arc::new(ProxyStats::new(
            config.models.iter().map(|m| m.name.clone()),
        ));
        let otel = Otel::start(config)?;
        let audit = match &config.audit {
            Some(audit) if config.mirror.enabled => Some(start_audit(
                audit,
                pipeline,
                otel.as_ref().and_then(Otel::audit_logs).cloned(),
            )?),
            _ => None,
        };
        let (sender, workers) = if config.mirror.enabled {
            let consumers = (0..config.mirror.workers)
                .map(|_| {
                    let tap = audit.as_ref().and_then(|feed| {
                        let observer = pipeline.and_then(Monitor::observer);
                        let inner = observer.is_none().then(&mut consumer);
                        feed.tap(observer, inner)
                    });
                    match tap {
                        Some(tap) => Box::new(tap) as Box<dyn Consumer>,
                        None => consumer(),
                    }
                })
                .collect();
            let (sender, workers) = mirror::start(
                config.mirror.queue,
                config.mirror.max_queue_bytes,
                consumers,
            );
            (Some(sender), Some(workers))
        } else {
            (None, None)
        };
        let mirror_stats = sender.as_ref().map(|s| s.stats().clone());
        // One state per event-loop thread: each keeps its own upstream pools.
        let shared: Vec<Arc<Shared>> = (0..config.threads.max(1))
            .map(|_| {
                let tracing = otel.as_ref().map(|o| o.tracing().clone());
                Arc::new(Shared::new(config, stats.clone(), sender.clone()).with_tracing(tracing))
            })
            .collect();
        let acceptor = shared[0].clone();
        let proxy_workers =
            proxy::Workers::start(shared, config.shutdown.drain).map_err(StartError::Threads)?;

        let health_url: Uri = format!(
            "{}://{}{}",
            config.upstream.scheme, config.upstream.authority, config.health_path
        )
        .parse()
        .unwrap_or_else(|_| Uri::from_static("/"));
        let monitor = monitor.filter(|_| config.mirror.enabled);
        let alerts = (!config.alerts.rules.is_empty()).then(|| {
            let sources = Sources {
                monitor: monitor.clone(),
                proxy: stats.clone(),
                mirror: mirror_stats.clone(),
                models: config
                    .models
                    .iter()
                    .map(|m| m.name.clone())
                    .chain([crate::telemetry::metrics::UNKNOWN_MODEL.to_owned()])
                    .collect(),
                audit: audit.as_ref().map(|feed| feed.writer_stats().clone()),
            };
            AlertEngine::start(
                &config.alerts,
                sources,
                format!("http://{admin_addr}/v1/alerts"),
            )
        });
        let mut admin_state = AdminState::new(
            stats.clone(),
            mirror_stats.clone(),
            monitor,
            health_url,
            config.limits.request_timeout,
        );
        if let Some(alerts) = &alerts {
            admin_state = admin_state.with_alerts(alerts.registry().clone());
            if let Some(audit) = &audit {
                audit.set_alerts(alerts.registry().clone());
            }
        }
        if let Some(audit) = &audit {
            admin_state = admin_state.with_collector(Box::new(audit.metrics()));
        }
        if let Some(otel) = &otel {
            admin_state = admin_state.with_collector(Box::new(otel.stats().clone()));
        }
        let admin_state = Arc::new(admin_state);

        let (stop, stopped) = watch::channel(false);
        let proxy = tokio::spawn(proxy::serve(
            proxy_listener,
            proxy_workers,
            acceptor,
            stopped.clone(),
        ));
        let admin = tokio::spawn(admin::serve(admin_listener, admin_state.clone(), stopped));
        tracing::info!(
            proxy = %proxy_addr,
            admin = %admin_addr,
            upstream = %format!("{}://{}", config.upstream.scheme, config.upstream.authority),
            tee = config.mirror.enabled,
            "Sidecar started."
        );
        Ok(Sidecar {
            proxy_addr,
            admin_addr,
            stop,
            proxy,
            admin,
            workers,
            stats,
            mirror: mirror_stats,
            admin_state,
            monitor: None,
            alerts,
            audit,
            otel,
        })
    }

    /// The address clients connect to.
    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy_addr
    }

    /// The admin server's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The proxy's counters and latencies.
    pub fn stats(&self) -> &Arc<ProxyStats> {
        &self.stats
    }

    /// The mirror's counters, when the tee is on.
    pub fn mirror_stats(&self) -> Option<&Arc<MirrorStats>> {
        self.mirror.as_ref()
    }

    /// The monitoring pipeline's read side, when it runs.
    pub fn monitor(&self) -> Option<MonitorView> {
        self.monitor.as_ref().map(Monitor::view)
    }

    /// Exports audit entries as OTLP log records, when
    /// `telemetry.export_audit_logs` is on.
    pub fn audit_logs(&self) -> Option<&AuditLogs> {
        self.otel.as_ref().and_then(Otel::audit_logs)
    }

    /// The alert engine's registry, when rules are configured.
    pub fn alerts(&self) -> Option<&Arc<AlertRegistry>> {
        self.alerts.as_ref().map(AlertEngine::registry)
    }

    /// The audit feed's counters, when the audit log is on.
    pub fn audit(&self) -> Option<&AuditFeed> {
        self.audit.as_ref()
    }

    /// The admin state (metrics text, stats document).
    pub fn admin(&self) -> &Arc<AdminState> {
        &self.admin_state
    }

    /// Stops accepting, lets in-flight requests finish within
    /// `shutdown.drain`, flushes the mirror and returns.
    pub async fn shutdown(mut self) -> ShutdownReport {
        self.admin_state.set_draining();
        let _ = self.stop.send(true);
        let drained = (&mut self.proxy).await.unwrap_or_default();
        self.admin.abort();
        if let Some(alerts) = self.alerts.take() {
            alerts.stop();
        }
        let mirror_flushed = match self.workers.take() {
            Some(workers) => {
                let deadline = Instant::now() + MIRROR_FLUSH;
                tokio::task::spawn_blocking(move || workers.finish(deadline))
                    .await
                    .unwrap_or(false)
            }
            None => true,
        };
        if let Some(monitor) = self.monitor.take() {
            // The mirror workers held the consumers; with them gone the
            // shards see their channels close, evaluate once more and stop.
            let _ = tokio::task::spawn_blocking(move || monitor.finish()).await;
        }
        if let Some(audit) = self.audit.take() {
            // After the shards: their last verdicts join their entries
            // before the log is closed with a final checkpoint.
            let _ = tokio::task::spawn_blocking(move || audit.close()).await;
        }
        if let Some(otel) = self.otel.take() {
            // Last: the spans of drained requests and the final audit
            // records are exported (or given up on) before returning.
            let _ = tokio::task::spawn_blocking(move || otel.shutdown()).await;
        }
        tracing::info!(
            connections_cut = drained.connections_cut,
            mirror_flushed,
            "Sidecar stopped."
        );
        ShutdownReport {
            connections_cut: drained.connections_cut,
            mirror_flushed,
        }
    }
}

/// Asks the model server for the input names of KServe models configured
/// without `features` and without a baseline file (which would name them).
/// A server that does not answer is no error: the names then come from the
/// first decoded request.
async fn learn_feature_names(config: &mut Config) {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;

    let client: Client<HttpConnector, Empty<bytes::Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let base = format!("{}://{}", config.upstream.scheme, config.upstream.authority);
    for model in &mut config.models {
        let kserve = matches!(
            model.protocol,
            None | Some(crate::config::Protocol::KserveV2)
        );
        let named_by_file = matches!(model.baseline, Some(crate::config::BaselineSource::File(_)));
        if !model.features.is_empty() || !kserve || named_by_file {
            continue;
        }
        let url = format!("{base}/v2/models/{}", model.name);
        let Ok(uri) = url.parse::<Uri>() else {
            continue;
        };
        let fetch = async {
            let response = client.get(uri).await.map_err(|e| e.to_string())?;
            if !response.status().is_success() {
                return Err(format!("answered {}", response.status()));
            }
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            crate::protocol::parse_model_metadata(&body.to_bytes()).map_err(|e| e.to_string())
        };
        match tokio::time::timeout(Duration::from_secs(2), fetch).await {
            Ok(Ok(metadata)) if !metadata.feature_names().is_empty() => {
                model.features = metadata.feature_names();
                tracing::info!(model = %model.name, features = ?model.features, "Feature names taken from the model server's metadata.");
            }
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                tracing::info!(model = %model.name, %url, %error, "No model metadata; feature names will come from the first request.");
            }
            Err(_) => {
                tracing::info!(model = %model.name, %url, "Model metadata timed out; feature names will come from the first request.");
            }
        }
    }
}

/// Opens the audit log and starts the feed that joins exchanges with the
/// monitor's verdicts (when models are monitored).
fn start_audit(
    config: &AuditConfig,
    pipeline: Option<&Monitor>,
    logs: Option<AuditLogs>,
) -> Result<AuditFeed, StartError> {
    let writer = Writer::open(WriterOptions::from_config(config)?)?;
    let verdicts = pipeline
        .filter(|m| m.observer().is_some())
        .map(|m| m.subscribe(AUDIT_VERDICT_QUEUE));
    let options = FeedOptions {
        payloads: config.payloads,
        redact: config.redact.clone(),
        hold: AUDIT_HOLD,
        max_pending: AUDIT_VERDICT_QUEUE,
        queue: WriterOptions::DEFAULT_QUEUE,
        logs,
        payload_budget: AUDIT_PAYLOAD_BUDGET,
    };
    AuditFeed::start(writer, verdicts, options).map_err(StartError::AuditFeed)
}

fn local_addr(listener: &TcpListener, configured: SocketAddr) -> SocketAddr {
    listener.local_addr().unwrap_or(configured)
}
