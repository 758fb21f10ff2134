//! Accepting client connections: the connection limit, HTTP/1.1 vs HTTP/2
//! detection, the header timeout, and graceful draining at shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};

use super::Shared;
use super::error::ProxyError;
use super::handler::handle;
use super::upstream::Lane;
use crate::mirror;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// How long a worker thread's runtime waits for its blocking threads (name
/// lookups) when it shuts down.
const RUNTIME_SHUTDOWN: Duration = Duration::from_millis(100);

/// What happened during shutdown.
#[derive(Debug, Clone, Copy, Default)]
pub struct DrainReport {
    /// Connections still open when `shutdown.drain` ran out (then cut).
    pub connections_cut: usize,
}

/// The proxy's event-loop threads, started and waiting for connections.
///
/// Each thread runs a single-threaded runtime with its own upstream pools:
/// a connection and every request on it stay on one thread, so nothing the
/// hot path touches is shared between cores or stolen between workers. On
/// two cores this serves as much as nginx where a work-stealing runtime
/// served a tenth less (BENCHMARKS.md).
#[derive(Debug)]
pub struct Workers {
    lanes: Vec<mpsc::UnboundedSender<Accepted>>,
    reports: Vec<oneshot::Receiver<DrainReport>>,
}

struct Accepted {
    stream: std::net::TcpStream,
    client: SocketAddr,
    permit: OwnedSemaphorePermit,
}

// === impl Workers ===

impl Workers {
    /// Starts one event-loop thread per `Shared` (each holds its own
    /// upstream clients); they serve what [`serve`] hands them.
    pub fn start(shared: Vec<Arc<Shared>>, drain: Duration) -> std::io::Result<Workers> {
        if shared.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the proxy needs at least one thread",
            ));
        }
        let mut lanes = Vec::with_capacity(shared.len());
        let mut reports = Vec::with_capacity(shared.len());
        for (index, shared) in shared.into_iter().enumerate() {
            // The tee's exchanges leave this thread in batches, handed over
            // whenever the loop is about to go idle (see `mirror`).
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .on_thread_park(mirror::flush_this_thread)
                .build()?;
            let (lane, connections) = mpsc::unbounded_channel();
            let (report, done) = oneshot::channel();
            let sink = shared.mirror.clone();
            std::thread::Builder::new()
                .name(format!("sidewatch-proxy-{index}"))
                .spawn(move || {
                    if let Some(sink) = &sink {
                        sink.batch_on_this_thread();
                    }
                    let drained = runtime.block_on(work(connections, shared, drain));
                    // Connections cut at the drain deadline end with the
                    // runtime and offer their exchanges as they go; all of
                    // it is handed over before the drain is reported. A
                    // name lookup stuck on a blocking thread is not waited
                    // for beyond a moment.
                    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
                    mirror::stop_batching_on_this_thread();
                    let _ = report.send(drained);
                })?;
            lanes.push(lane);
            reports.push(done);
        }
        Ok(Workers { lanes, reports })
    }
}

/// Serves one event-loop thread's connections until the acceptor closes
/// its lane, then drains them for at most `drain`.
async fn work(
    mut connections: mpsc::UnboundedReceiver<Accepted>,
    shared: Arc<Shared>,
    drain: Duration,
) -> DrainReport {
    let graceful = GracefulShutdown::new();
    while let Some(Accepted {
        stream,
        client,
        permit,
    }) = connections.recv().await
    {
        let stream = match TcpStream::from_std(stream) {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%error, %client, "Cannot register an accepted connection.");
                continue;
            }
        };
        let shared = shared.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            shared.stats.connection_delta(1);
            serve_connection(stream, client, shared.clone(), watcher).await;
            shared.stats.connection_delta(-1);
            drop(permit);
        });
    }
    tokio::select! {
        () = graceful.shutdown() => DrainReport::default(),
        () = tokio::time::sleep(drain) => {
            let cut = shared.stats.connections_open().max(0) as usize;
            DrainReport { connections_cut: cut }
        }
    }
}

/// Accepts connections and deals them round-robin to the worker threads
/// until `stop` flips, then waits for the workers to drain (each for at
/// most `drain`).
pub async fn serve(
    listener: TcpListener,
    workers: Workers,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> DrainReport {
    let Workers { lanes, reports } = workers;
    let permits = Arc::new(Semaphore::new(shared.limits.max_connections));
    let mut next = 0usize;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, client) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and similar: pause instead of spinning.
                        tracing::warn!(%error, "Accept failed.");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    shared.stats.record_connection_rejected();
                    refuse(&stream, shared.limits.max_connections);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                // The worker registers the socket with its own reactor.
                let Ok(stream) = stream.into_std() else {
                    continue;
                };
                let lane = &lanes[next % lanes.len()];
                next = next.wrapping_add(1);
                let _ = lane.send(Accepted { stream, client, permit });
            }
            _ = stop.changed() => break,
        }
    }
    // Closing the listener makes new connections fail fast while the
    // in-flight ones finish; closing the lanes tells the workers to drain.
    drop(listener);
    drop(lanes);
    tracing::info!(
        connections = shared.stats.connections_open(),
        "Draining connections."
    );
    let mut report = DrainReport::default();
    for done in reports {
        let drained = done.await.unwrap_or_default();
        // Each worker reads the same process-wide gauge; the largest is the truth.
        report.connections_cut = report.connections_cut.max(drained.connections_cut);
    }
    if report.connections_cut > 0 {
        tracing::warn!(
            connections = report.connections_cut,
            "Drain deadline passed; cutting connections."
        );
    }
    report
}

/// Answers a connection over the limit with a 503 it can read, then closes it.
fn refuse(stream: &TcpStream, limit: usize) {
    let error = ProxyError::TooManyConnections(limit);
    let body = serde_json::json!({ "error": error.to_string(), "kind": error.kind() }).to_string();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    // Best effort and non-blocking: the socket buffer of a fresh connection
    // takes a few hundred bytes, and a client that is gone loses nothing.
    let _ = stream.try_write(response.as_bytes());
}

async fn serve_connection(
    stream: TcpStream,
    client: SocketAddr,
    shared: Arc<Shared>,
    watcher: Watcher,
) {
    let header_timeout = shared.limits.header_timeout;
    let h2 = match tokio::time::timeout(header_timeout, sniff_h2(&stream)).await {
        Ok(Some(h2)) => h2,
        Ok(None) => return,
        Err(_) => {
            tracing::debug!(%client, "Client sent nothing within limits.header_timeout.");
            return;
        }
    };
    let io = TokioIo::new(stream);
    let forwarded_for = super::headers::ForwardedFor::new(client.ip());
    // An HTTP/1.1 client runs one request at a time: it gets an upstream
    // connection of its own.
    let lane = (!h2).then(Lane::default);
    let service = service_fn(move |request| {
        handle(
            shared.clone(),
            client,
            forwarded_for.clone(),
            lane.clone(),
            request,
        )
    });
    let result = if h2 {
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        builder.timer(TokioTimer::new());
        watcher.watch(builder.serve_connection(io, service)).await
    } else {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .keep_alive(true);
        watcher.watch(builder.serve_connection(io, service)).await
    };
    if let Err(error) = result {
        tracing::debug!(%client, %error, "Connection ended with an error.");
    }
}

/// Peeks at the first bytes: `Some(true)` for the HTTP/2 preface,
/// `Some(false)` for HTTP/1.x, `None` if the client hung up.
async fn sniff_h2(stream: &TcpStream) -> Option<bool> {
    let mut buf = [0u8; H2_PREFACE.len()];
    loop {
        let n = stream.peek(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        if buf[..n] != H2_PREFACE[..n] {
            return Some(false);
        }
        // "PRI" is unique among methods, so three bytes decide.
        if n >= 3 {
            return Some(true);
        }
        // A first segment of one or two bytes is rare; wait for the rest
        // instead of spinning on the same peeked bytes.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_need_at_least_one_thread() {
        let error = Workers::start(Vec::new(), Duration::from_secs(1)).err();
        assert_eq!(
            error.map(|e| e.kind()),
            Some(std::io::ErrorKind::InvalidInput)
        );
    }
}
