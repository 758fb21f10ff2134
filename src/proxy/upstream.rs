//! The pooled keep-alive clients that carry requests to the model server:
//! HTTP/1.1 for ordinary requests and h2c (prior knowledge) for gRPC, or
//! everything over h2c when configured.

use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version, header};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::error::{BodyTooLarge, ProxyError};
use super::tee::RequestTap;
use crate::config::{self, UpstreamProtocol};
use crate::telemetry::UpstreamErrorKind;

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
}

impl Upstream {
    /// Builds both clients; no connection is made until the first request.
    pub fn new(
        target: &config::Upstream,
        protocol: UpstreamProtocol,
        request_timeout: Duration,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(request_timeout.min(Duration::from_secs(5))));
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
            .build(connector);
        Upstream {
            http1,
            h2c,
            scheme: target.scheme.clone(),
            authority: target.authority.clone(),
            protocol,
            timeout: request_timeout,
        }
    }

    /// Sends a request and waits for the response head, at most `request_timeout`.
    pub async fn send(
        &self,
        mut request: Request<UpstreamBody>,
        grpc: bool,
    ) -> Result<Response<Incoming>, (ProxyError, Option<UpstreamErrorKind>)> {
        let h2 = grpc || self.protocol == UpstreamProtocol::H2c;
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
            Err(_) => Err((
                ProxyError::UpstreamTimeout(self.timeout),
                Some(UpstreamErrorKind::Timeout),
            )),
        }
    }

    fn classify(
        &self,
        error: hyper_util::client::legacy::Error,
    ) -> (ProxyError, Option<UpstreamErrorKind>) {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
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
        if error.is_connect() {
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
