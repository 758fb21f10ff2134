//! The connections that carry requests to the model server: HTTP/1.1 for
//! ordinary requests and h2c (prior knowledge) for gRPC, or everything over
//! h2c when configured.
//!
//! An HTTP/1.1 client connection sends one request at a time, so it gets an
//! upstream connection of its own (a [`Lane`]) for as long as it lives: no
//! pool lookup, lock or checkout per request, and the connection is reused
//! with no other client's traffic in between. HTTP/2 clients multiplex many
//! streams and share the pooled clients.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version, header};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower_service::Service;

use super::error::{BodyTooLarge, ProxyError};
use super::tee::RequestTap;
use crate::config::{self, UpstreamProtocol};
use crate::telemetry::UpstreamErrorKind;

/// Stands in for a request timeout too large to add to an `Instant`.
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// The body type sent upstream.
pub type UpstreamBody = RequestTap<Incoming>;

/// Connections to the model server.
#[derive(Debug, Clone)]
pub struct Upstream {
    http1: Client<HttpConnector, UpstreamBody>,
    h2c: Client<HttpConnector, UpstreamBody>,
    scheme: Scheme,
    authority: Authority,
    protocol: UpstreamProtocol,
    timeout: Duration,
    /// The pools' connector (connect timeout, `TCP_NODELAY`, name
    /// resolution), which lanes connect with too.
    connector: HttpConnector,
    /// `scheme://authority/`, what the connector dials.
    origin: Uri,
}

/// One client connection's own HTTP/1.1 connection to the upstream, made
/// on its first request. The lock is never contended: a client connection
/// runs one request at a time, and only while the request is handed over.
#[derive(Debug, Default, Clone)]
pub struct Lane(Arc<Mutex<LaneSlot>>);

#[derive(Debug, Default)]
struct LaneSlot {
    sender: Option<http1::SendRequest<UpstreamBody>>,
    /// The request timeout's timer, reset for each request: pushing a
    /// registered timer's deadline later is a few stores, where a new timer
    /// per request was a timer-wheel insert and removal.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// Why a lane could not carry a request.
enum LaneError {
    Connect(Box<dyn std::error::Error + Send + Sync>),
    Request(hyper::Error),
}

impl Upstream {
    /// Builds both clients; no connection is made until the first request.
    pub fn new(
        target: &config::Upstream,
        protocol: UpstreamProtocol,
        request_timeout: Duration,
    ) -> Self {
        let connect_timeout = request_timeout.min(Duration::from_secs(5));
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        let http1 = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector.clone());
        let h2c = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector.clone());
        let origin = Uri::builder()
            .scheme(target.scheme.clone())
            .authority(target.authority.clone())
            .path_and_query("/")
            .build()
            .unwrap_or_else(|_| Uri::from_static("/"));
        Upstream {
            http1,
            h2c,
            scheme: target.scheme.clone(),
            authority: target.authority.clone(),
            protocol,
            timeout: request_timeout,
            connector,
            origin,
        }
    }

    /// Sends a request and waits for the response head, at most
    /// `request_timeout`: on `lane` when the client connection has one and
    /// the request goes over HTTP/1.1, else through the pool.
    pub async fn send(
        &self,
        mut request: Request<UpstreamBody>,
        grpc: bool,
        lane: Option<&Lane>,
    ) -> Result<Response<Incoming>, (ProxyError, Option<UpstreamErrorKind>)> {
        let h2 = grpc || self.protocol == UpstreamProtocol::H2c;
        if !h2 && let Some(lane) = lane {
            let request = self.origin_form(request);
            // Waiting for the previous response on this connection to end,
            // or for a connection (under its own connect timeout), is not
            // the upstream being slow to answer this request.
            let (sender, fresh) = match self.ready_lane(lane).await {
                Ok(ready) => ready,
                Err(error) => return Err(self.lane_failure(error)),
            };
            let now = tokio::time::Instant::now();
            // As `tokio::time::timeout` does, a timeout too large to add
            // means no timeout to speak of.
            let deadline = now
                .checked_add(self.timeout)
                .unwrap_or_else(|| now + FAR_FUTURE);
            let mut timer = match lane.take_timer() {
                Some(mut timer) => {
                    timer.as_mut().reset(deadline);
                    timer
                }
                None => Box::pin(tokio::time::sleep_until(deadline)),
            };
            let mut send = std::pin::pin!(self.send_on_lane(lane, sender, fresh, request));
            // As `tokio::time::timeout` does: the call first, then the timer.
            let sent = std::future::poll_fn(|cx| {
                if let Poll::Ready(result) = send.as_mut().poll(cx) {
                    return Poll::Ready(Some(result));
                }
                timer.as_mut().poll(cx).map(|()| None)
            })
            .await;
            lane.put_timer(timer);
            return match sent {
                Some(Ok(response)) => Ok(response),
                Some(Err(error)) => Err(self.lane_failure(error)),
                None => Err(self.timed_out()),
            };
        }
        let path = request
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(path);
        *request.uri_mut() = Uri::from_parts(parts).unwrap_or_else(|_| Uri::from_static("/"));
        let future = if h2 {
            *request.version_mut() = Version::HTTP_2;
            // :authority names the upstream; a Host header would contradict it.
            request.headers_mut().remove(header::HOST);
            self.h2c.request(request)
        } else {
            *request.version_mut() = Version::HTTP_11;
            self.http1.request(request)
        };
        match tokio::time::timeout(self.timeout, future).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => Err(self.classify(error)),
            Err(_) => Err(self.timed_out()),
        }
    }

    /// No response head within `limits.request_timeout`.
    fn timed_out(&self) -> (ProxyError, Option<UpstreamErrorKind>) {
        (
            ProxyError::UpstreamTimeout(self.timeout),
            Some(UpstreamErrorKind::Timeout),
        )
    }

    /// `request` as a lane sends it: origin-form on the wire, as the pool
    /// sends it; Host from the client, or the upstream's own name.
    fn origin_form(&self, mut request: Request<UpstreamBody>) -> Request<UpstreamBody> {
        let path = request
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *request.uri_mut() = Uri::from(path);
        *request.version_mut() = Version::HTTP_11;
        if !request.headers().contains_key(header::HOST)
            && let Ok(host) = header::HeaderValue::from_str(self.authority.as_str())
        {
            request.headers_mut().insert(header::HOST, host);
        }
        request
    }

    /// The lane's connection, ready for a request: the idle one (once the
    /// previous response has been read, which is at once unless an
    /// HTTP/1.1 client pipelined), or a new one when there is none or the
    /// upstream closed it. Whether it is new comes along.
    async fn ready_lane(
        &self,
        lane: &Lane,
    ) -> Result<(http1::SendRequest<UpstreamBody>, bool), LaneError> {
        if let Some(mut sender) = lane.take().filter(|sender| !sender.is_closed())
            && sender.ready().await.is_ok()
        {
            return Ok((sender, false));
        }
        // Boxed: a connect's state is large and rare, and every request's
        // future would otherwise carry (and move) room for it.
        let mut sender = Box::pin(self.connect()).await?;
        sender.ready().await.map_err(LaneError::Request)?;
        Ok((sender, true))
    }

    /// Sends `request` on the lane's ready connection. A request that never
    /// left (the upstream closed the reused connection just before) is sent
    /// again on a fresh one, as the pool would; one that did leave is not,
    /// since its body is gone.
    async fn send_on_lane(
        &self,
        lane: &Lane,
        mut sender: http1::SendRequest<UpstreamBody>,
        fresh: bool,
        request: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, LaneError> {
        let unsent = match sender.try_send_request(request).await {
            Ok(response) => {
                lane.put(sender);
                return Ok(response);
            }
            Err(mut error) => match error.take_message() {
                Some(unsent) if !fresh => unsent,
                _ => return Err(LaneError::Request(error.into_error())),
            },
        };
        // Boxed, as rare: its state would otherwise make every request's
        // future larger, and hyper moves that future once per request.
        Box::pin(self.resend(lane, unsent)).await
    }

    /// Sends a request the upstream never received on a new connection.
    async fn resend(
        &self,
        lane: &Lane,
        unsent: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, LaneError> {
        let mut sender = self.connect().await?;
        sender.ready().await.map_err(LaneError::Request)?;
        let response = sender
            .send_request(unsent)
            .await
            .map_err(LaneError::Request)?;
        lane.put(sender);
        Ok(response)
    }

    /// A lane's failure as the client sees it.
    fn lane_failure(&self, error: LaneError) -> (ProxyError, Option<UpstreamErrorKind>) {
        match error {
            LaneError::Connect(error) => self.classify_failure(&*error, true),
            LaneError::Request(error) => self.classify_failure(&error, false),
        }
    }

    /// A new HTTP/1.1 connection to the upstream, its driver spawned on
    /// this thread's runtime.
    async fn connect(&self) -> Result<http1::SendRequest<UpstreamBody>, LaneError> {
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(|e| LaneError::Connect(e.into()))?;
        let io = connector
            .call(self.origin.clone())
            .await
            .map_err(|e| LaneError::Connect(e.into()))?;
        let (sender, connection) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(LaneError::Request)?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "Upstream connection ended with an error.");
            }
        });
        Ok(sender)
    }

    fn classify(
        &self,
        error: hyper_util::client::legacy::Error,
    ) -> (ProxyError, Option<UpstreamErrorKind>) {
        let connect = error.is_connect();
        self.classify_failure(&error, connect)
    }

    /// A failed call as the client sees it: a body over the limit, an
    /// unreachable upstream (`connect`), or anything else, with the
    /// innermost cause as the reason.
    fn classify_failure(
        &self,
        error: &(dyn std::error::Error + 'static),
        connect: bool,
    ) -> (ProxyError, Option<UpstreamErrorKind>) {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
        let mut innermost = error.to_string();
        while let Some(cause) = source {
            if let Some(too_large) = cause.downcast_ref::<BodyTooLarge>() {
                return (
                    ProxyError::BodyTooLarge(BodyTooLarge {
                        limit: too_large.limit,
                    }),
                    None,
                );
            }
            innermost = cause.to_string();
            source = cause.source();
        }
        if connect {
            (
                ProxyError::UpstreamUnreachable {
                    upstream: self.authority.to_string(),
                    reason: innermost,
                },
                Some(UpstreamErrorKind::Connect),
            )
        } else {
            (
                ProxyError::UpstreamFailed(innermost),
                Some(UpstreamErrorKind::Protocol),
            )
        }
    }
}

// === impl Lane ===

impl Lane {
    fn take(&self) -> Option<http1::SendRequest<UpstreamBody>> {
        self.0.lock().ok()?.sender.take()
    }

    fn put(&self, sender: http1::SendRequest<UpstreamBody>) {
        if let Ok(mut slot) = self.0.lock() {
            slot.sender = Some(sender);
        }
    }

    fn take_timer(&self) -> Option<Pin<Box<tokio::time::Sleep>>> {
        self.0.lock().ok()?.timer.take()
    }

    fn put_timer(&self, timer: Pin<Box<tokio::time::Sleep>>) {
        if let Ok(mut slot) = self.0.lock() {
            slot.timer = Some(timer);
        }
    }
}
