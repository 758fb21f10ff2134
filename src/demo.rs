//! `sidewatch demo`: a model server, the sidecar in front of it and traffic
//! through it, all in one process, so one command on a fresh machine shows
//! the proxy and its tee at work.
//!
//! ```text
//! traffic (8 clients) ──► sidecar proxy ──► model server (iris, KServe v2)
//!                              │ tee
//!                              ▼
//!                        mirror queue ──► Counting consumer
//! ```
//!
//! The consumer only counts for now; drift detection plugs in there.

pub mod model;
mod report;
mod traffic;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::time::{Instant, MissedTickBehavior};

use crate::config::{Config, Overrides};
use crate::mirror::{Consumer, Exchange};
use crate::sidecar::Sidecar;
use model::{FEATURES, MODEL_NAME, ModelServer};
use traffic::TrafficStats;

/// The proxy's usual port, used when free so the printed URLs are familiar.
const PROXY_PORT: u16 = 8000;
/// The admin server's usual port, likewise.
const ADMIN_PORT: u16 = 9464;
/// How long the summary waits for the mirror to catch up with the traffic.
const MIRROR_CATCH_UP: Duration = Duration::from_secs(2);

/// What the demo's mirror consumers have seen, shared with the live view.
#[derive(Debug, Default)]
struct Tally {
    exchanges: AtomicU64,
    body_bytes: AtomicU64,
}

/// The mirror consumer: counts exchanges and the body bytes the tee copied.
struct Counting(Arc<Tally>);

/// Runs the demo: traffic for `duration` (or until Ctrl-C), then a summary.
pub async fn run(duration: Duration) -> anyhow::Result<()> {
    let listener = TcpListener::bind(any_port())
        .await
        .context("cannot listen for the model server")?;
    let model = ModelServer::start(listener).context("cannot start the model server")?;
    let tally = Arc::new(Tally::default());
    let sidecar = start_sidecar(model.addr(), &tally).await?;
    println!("{}", report::banner(&sidecar, model.addr(), duration));

    let traffic_stats = Arc::new(TrafficStats::default());
    let started = Instant::now();
    let mut traffic = tokio::spawn(traffic::run(
        sidecar.proxy_addr(),
        duration,
        traffic_stats.clone(),
    ));
    let mut live = report::Live::new(duration);
    let second = Duration::from_secs(1);
    let mut ticks = tokio::time::interval_at(started + second, second);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    let mut interruptible = true;
    let traffic_result = loop {
        tokio::select! {
            joined = &mut traffic => {
                break joined.context("the traffic generator panicked").and_then(|r| r);
            }
            _ = ticks.tick() => {
                println!("{}", live.line(started.elapsed(), &sidecar, &traffic_stats, &tally));
            }
            interrupted = &mut interrupt, if interruptible => match interrupted {
                Ok(()) => {
                    traffic.abort();
                    println!("interrupted: stopping the traffic");
                    break Ok(());
                }
                Err(error) => {
                    tracing::warn!(%error, "Cannot listen for Ctrl-C; the demo runs to the end.");
                    interruptible = false;
                }
            },
        }
    };
    let elapsed = started.elapsed();

    // Report and shut down whatever happened to the traffic; its error comes last.
    let expected = traffic_stats
        .requests()
        .saturating_sub(traffic_stats.errors());
    wait_for_mirror(&sidecar, expected).await;
    println!(
        "{}",
        report::summary(elapsed, &sidecar, &traffic_stats, &tally)
    );
    let stopped = sidecar.shutdown().await;
    model.shutdown().await;
    println!("{}", report::stopped(stopped));
    traffic_result.context("the traffic generator failed")
}

fn any_port() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

/// `port` on localhost if nothing listens there now, otherwise port 0.
fn free_or_any(port: u16) -> SocketAddr {
    let preferred = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match std::net::TcpListener::bind(preferred) {
        Ok(_) => preferred,
        Err(error) => {
            tracing::info!(port, %error, "Port is busy; the demo uses a free one.");
            any_port()
        }
    }
}

async fn start_sidecar(upstream: SocketAddr, tally: &Arc<Tally>) -> anyhow::Result<Sidecar> {
    let consumer = || -> Box<dyn Consumer> { Box::new(Counting(tally.clone())) };
    let (listen, admin) = (free_or_any(PROXY_PORT), free_or_any(ADMIN_PORT));
    match Sidecar::start(&config(listen, admin, upstream)?, consumer).await {
        Ok(sidecar) => return Ok(sidecar),
        // Another process may have taken a port since it was probed.
        Err(error) if (listen, admin) != (any_port(), any_port()) => {
            tracing::info!(%error, "Retrying on free ports.");
        }
        Err(error) => return Err(error).context("cannot start the sidecar"),
    }
    Sidecar::start(&config(any_port(), any_port(), upstream)?, consumer)
        .await
        .context("cannot start the sidecar")
}

/// The sidecar's config for the demo, written as a user would write it.
fn config(listen: SocketAddr, admin: SocketAddr, upstream: SocketAddr) -> anyhow::Result<Config> {
    let yaml = format!(
        r#"
listen: "{listen}"
admin: "{admin}"
upstream: "http://{upstream}"
upstream_protocol: http1
health_path: /v2/health/ready
models:
  - name: {MODEL_NAME}
    protocol: kserve_v2
    features: [{features}]
mirror:
  queue: 4096
  max_payload: 64KiB
  workers: 1
limits:
  max_body: 1MiB
  request_timeout: 5s
shutdown:
  drain: 2s
"#,
        features = FEATURES.join(", "),
    );
    Config::from_yaml(&yaml, &Overrides::default()).context("the demo's config is invalid")
}

/// Waits until the proxy has offered an exchange for each of the `expected`
/// answered requests and the consumers have taken them all, so that the
/// summary's counts are final. The proxy offers an exchange just after the
/// client got the last byte, hence the wait.
async fn wait_for_mirror(sidecar: &Sidecar, expected: u64) {
    let Some(mirror) = sidecar.mirror_stats() else {
        return;
    };
    let deadline = Instant::now() + MIRROR_CATCH_UP;
    loop {
        let dropped: u64 = mirror.dropped_by_reason().map(|(_, n)| n).sum();
        let offered = mirror.offered();
        if offered >= expected && mirror.consumed() + dropped >= offered {
            return;
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                offered,
                expected,
                "The mirror did not catch up; the summary is partial."
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// === impl Tally ===

impl Tally {
    fn exchanges(&self) -> u64 {
        self.exchanges.load(Ordering::Relaxed)
    }

    fn body_bytes(&self) -> u64 {
        self.body_bytes.load(Ordering::Relaxed)
    }
}

// === impl Counting ===

impl Consumer for Counting {
    fn consume(&mut self, exchange: Exchange) {
        let bytes = exchange.request_body.bytes.len() + exchange.response_body.bytes.len();
        self.0.exchanges.fetch_add(1, Ordering::Relaxed);
        self.0.body_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Protocol;

    #[test]
    fn the_demo_config_is_valid() {
        let addr = |port| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let config = config(addr(8000), addr(0), addr(40_000)).expect("valid config");
        assert_eq!(config.listen, addr(8000));
        assert_eq!(config.upstream.authority.as_str(), "127.0.0.1:40000");
        assert_eq!(config.models.len(), 1);
        assert_eq!(config.models[0].name, "iris");
        assert_eq!(config.models[0].protocol, Some(Protocol::KserveV2));
        assert_eq!(config.models[0].features, FEATURES);
        assert!(config.mirror.enabled);
    }
}
