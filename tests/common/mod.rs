//! Test harness: in-process upstreams on 127.0.0.1:0, a sidecar in front of
//! them, clients, and waiting on conditions with a deadline (never sleeps).

#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, Uri, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sidewatch::config::{Config, Overrides};
use sidewatch::mirror::{Consumer, Discard};
use sidewatch::{Exchange, Sidecar};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Body type test upstreams answer with.
pub type TestBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// A request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A running test upstream and what it received.
pub struct Upstream {
    pub addr: SocketAddr,
    pub received: mpsc::UnboundedReceiver<Received>,
}

/// Deadline for anything a test waits on.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub fn full(body: impl Into<Bytes>) -> TestBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A body that passes each chunk sent on `chunks` on as one frame, and
/// ends when the sender is dropped: a stream the test paces.
pub fn streamed(chunks: mpsc::Receiver<&'static str>) -> TestBody {
    use tokio_stream::StreamExt;
    let frames = tokio_stream::wrappers::ReceiverStream::new(chunks)
        .map(|chunk| Ok(hyper::body::Frame::data(Bytes::from(chunk))));
    http_body_util::StreamBody::new(frames).boxed()
}

/// Starts an HTTP/1.1 + h2c upstream that reads each request fully,
/// reports it, and answers with `respond(received)`.
pub async fn upstream<F, Fut>(respond: F) -> Upstream
where
    F: Fn(Received) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<TestBody>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("upstream addr");
    let (tx, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let respond = respond.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let respond = respond.clone();
                    let tx = tx.clone();
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = match body.collect().await {
                            Ok(collected) => collected.to_bytes(),
                            Err(_) => {
                                return Ok::<_, Infallible>(
                                    Response::builder()
                                        .status(400)
                                        .body(full("broken body"))
                                        .expect("static response"),
                                );
                            }
                        };
                        let received = Received {
                            method: parts.method,
                            uri: parts.uri,
                            version: parts.version,
                            headers: parts.headers,
                            body,
                        };
                        let _ = tx.send(received.clone());
                        Ok(respond(received).await)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Upstream { addr, received }
}

/// An upstream that answers 200 with a fixed body.
pub async fn ok_upstream(body: &'static str) -> Upstream {
    upstream(move |_| async move { Response::new(full(body)) }).await
}

/// A port with nothing listening on it.
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    addr
}

/// Config text for a sidecar on ephemeral ports in front of `upstream`.
pub fn config(upstream: SocketAddr, extra: &str) -> Config {
    let yaml =
        format!("listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nupstream: http://{upstream}\n{extra}");
    Config::from_yaml(&yaml, &Overrides::default()).expect("test config is valid")
}

/// Starts a sidecar whose mirror discards exchanges.
pub async fn sidecar(upstream: SocketAddr, extra: &str) -> Sidecar {
    Sidecar::start(&config(upstream, extra), || Box::new(Discard))
        .await
        .expect("sidecar starts")
}

/// A consumer that forwards exchanges to the test.
pub struct Forward(pub std::sync::mpsc::Sender<Exchange>);

impl Consumer for Forward {
    fn consume(&mut self, exchange: Exchange) {
        let _ = self.0.send(exchange);
    }
}

/// Starts a sidecar whose exchanges arrive on the returned channel.
pub async fn teed_sidecar(
    upstream: SocketAddr,
    extra: &str,
) -> (Sidecar, std::sync::mpsc::Receiver<Exchange>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let sidecar = Sidecar::start(&config(upstream, extra), move || {
        Box::new(Forward(tx.clone()))
    })
    .await
    .expect("sidecar starts");
    (sidecar, rx)
}

/// Waits for the next exchange, at most [`DEADLINE`].
pub async fn next_exchange(rx: &std::sync::mpsc::Receiver<Exchange>) -> Exchange {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match rx.try_recv() {
            Ok(exchange) => return exchange,
            Err(std::sync::mpsc::TryRecvError::Empty) if Instant::now() < deadline => {
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Err(e) => panic!("no exchange arrived within {DEADLINE:?}: {e}"),
        }
    }
}

/// An HTTP/1.1 client.
pub fn http1_client<B>() -> Client<HttpConnector, B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// An HTTP/2 prior-knowledge client.
pub fn h2_client<B>() -> Client<HttpConnector, B>
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(HttpConnector::new())
}

/// Sends a request through an HTTP/1.1 client and collects the response.
pub async fn send(request: Request<Full<Bytes>>) -> (http::response::Parts, Bytes) {
    let response = tokio::time::timeout(DEADLINE, http1_client().request(request))
        .await
        .expect("response within the deadline")
        .expect("request through the proxy");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("response body").to_bytes();
    (parts, body)
}

/// GETs an admin path and returns status and body text.
pub async fn admin_get(sidecar: &Sidecar, path: &str) -> (u16, String) {
    let uri: Uri = format!("http://{}{path}", sidecar.admin_addr())
        .parse()
        .expect("admin uri");
    let request = Request::get(uri)
        .body(Full::new(Bytes::new()))
        .expect("request");
    let (parts, body) = send(request).await;
    (
        parts.status.as_u16(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// Polls `condition` until it holds, failing the test after [`DEADLINE`].
pub async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    poll(what, || {
        let holds = condition();
        async move { holds.await.then_some(()) }
    })
    .await
}

/// Polls `probe` until it returns something, failing after [`DEADLINE`].
pub async fn poll<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Receives what the upstream got next, failing after [`DEADLINE`].
pub async fn next_received(upstream: &mut Upstream) -> Received {
    tokio::time::timeout(DEADLINE, upstream.received.recv())
        .await
        .expect("upstream received a request in time")
        .expect("upstream channel open")
}

/// `Arc` helper for upstream closures.
pub fn shared<T>(value: T) -> Arc<T> {
    Arc::new(value)
}

/// An external server (Prometheus, Alertmanager) started for a test and
/// killed when dropped.
pub struct Daemon {
    child: std::process::Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The installed tool `name` on PATH; `package` names the Debian package
/// scripts/test installs it from, so a missing tool fails with a fix.
pub fn tool(name: &str, package: &str) -> std::path::PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed: scripts/test installs it from Debian's {package} package"
            )
        })
}

/// Starts `program` with `args` plus `--web.listen-address` on a free
/// loopback port, and waits until its `/-/ready` answers 200.
pub async fn start_daemon(program: &std::path::Path, args: &[String]) -> Daemon {
    let addr = closed_port().await;
    let child = std::process::Command::new(program)
        .args(args)
        .arg(format!("--web.listen-address={addr}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    let daemon = Daemon { child, addr };
    wait_until(&format!("{} is ready", program.display()), || async {
        let uri = format!("http://{addr}/-/ready");
        matches!(
            tokio::time::timeout(DEADLINE, http1_client::<Full<Bytes>>().get(uri.parse().expect("uri"))).await,
            Ok(Ok(response)) if response.status() == 200
        )
    })
    .await;
    daemon
}

/// The real binary running `sidewatch run`, with the addresses it logged.
pub struct Running {
    pub child: std::process::Child,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
}

/// Starts `binary run ARGS` and reads the proxy and admin addresses from
/// its start-up log line, failing after [`DEADLINE`].
pub fn spawn_run(binary: &str, args: &[&str]) -> Running {
    use std::io::BufRead;
    let mut child = std::process::Command::new(binary)
        .arg("run")
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn sidewatch");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    // Read the log on a thread (and keep draining it, so the child never
    // blocks on a full pipe); the test waits for the start line.
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let field = |name: &str| {
                line.split(name)
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse::<SocketAddr>()
                    .ok()
            };
            if let (Some(proxy), Some(admin)) = (field("proxy="), field("admin=")) {
                let _ = tx.send((proxy, admin));
            }
        }
    });
    let (proxy, admin) = rx
        .recv_timeout(DEADLINE)
        .expect("sidewatch logged its addresses in time");
    Running {
        child,
        proxy,
        admin,
    }
}

/// A fresh directory under the system's temp dir, unique to this process
/// and call; tests remove it when they pass.
pub fn temp_dir(what: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sidewatch-{what}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The admin server at `admin`'s `/metrics` text, or `None` while it does
/// not answer (a process starting or killed).
pub async fn metrics_text(admin: SocketAddr) -> Option<String> {
    let uri = format!("http://{admin}/metrics").parse().ok()?;
    let response = tokio::time::timeout(DEADLINE, http1_client::<Full<Bytes>>().get(uri))
        .await
        .ok()?
        .ok()?;
    let body = response.into_body().collect().await.ok()?.to_bytes();
    Some(String::from_utf8_lossy(&body).into_owned())
}

/// The value of the sample that starts with `series ` (name and labels)
/// in Prometheus text.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// `sidewatch_alert_notifications_total{sink, result}`, 0 when absent.
pub fn notifications(metrics: &str, sink: &str, result: &str) -> u64 {
    let series =
        format!("sidewatch_alert_notifications_total{{sink=\"{sink}\",result=\"{result}\"}}");
    sample(metrics, &series).map_or(0, |v| v as u64)
}

/// Sends requests through `sidecar` (so a latency alert has something to
/// fire on) until its `/metrics` text satisfies `done`, failing after
/// [`DEADLINE`]; returns that text.
pub async fn traffic_until(sidecar: &Sidecar, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let request = Request::post(format!("http://{}/v2/models/m/infer", sidecar.proxy_addr()))
            .body(Full::new(Bytes::from_static(b"{}")))
            .expect("request");
        send(request).await;
        let metrics = admin_get(sidecar, "/metrics").await.1;
        if done(&metrics) {
            return metrics;
        }
        assert!(Instant::now() < deadline, "timed out: {metrics}");
    }
}
