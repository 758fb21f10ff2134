//! One proxied request, start to finish: rewrite headers, open the tee,
//! call the upstream, and wrap the response so its end is measured.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http::header::{Entry, HeaderValue};
use http::{Request, Response};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use super::Shared;
use super::error::{BodyTooLarge, ProxyError};
use super::headers;
use super::limit::BodyLimit;
use super::tee::{Capture, ExchangeCell, RequestTap, ResponseMeta, ResponseTap, settle};
use super::upstream::Lane;

/// The body the proxy sends to clients: the upstream's, or its own error.
pub type ProxyBody = ResponseTap<Either<Incoming, Full<Bytes>>>;

/// Proxies one request. Never fails: errors become responses.
pub async fn handle(
    shared: Arc<Shared>,
    client: SocketAddr,
    forwarded_for: headers::ForwardedFor,
    lane: Option<Lane>,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let received = Instant::now();
    let grpc = headers::is_grpc(request.headers());
    let (mut parts, body) = request.into_parts();
    let model = shared.routes.match_path(parts.uri.path());
    let model_label = model.unwrap_or(shared.stats.unknown_model());
    let model_name = model.and_then(|m| shared.routes.name(m));
    let request_id = headers::ensure_request_id(&mut parts.headers);
    // Before the tee copies the headers, so the copy holds the trace context
    // the upstream gets.
    let spans = match &shared.tracing {
        None => {
            headers::ensure_traceparent(&mut parts.headers);
            None
        }
        Some(tracing) => {
            let model = model_name.map(|m| &**m);
            Some(tracing.start(&mut parts, client, model, &request_id, grpc))
        }
    };

    let limit = shared.limits.max_body;
    let refuse = !grpc && headers::content_length(&parts.headers).is_some_and(|n| n > limit);
    // The request's copy (head now, body as it streams) and its exchange.
    // A refused body never streams: no room for it.
    let mut tee = shared.mirror.as_ref().map(|sink| {
        let hint = if refuse {
            Some(0)
        } else {
            http_body::Body::size_hint(&body).exact()
        };
        let model = model_name.cloned();
        let sink = sink.clone();
        ExchangeCell::open(
            sink,
            client,
            model,
            &parts,
            received,
            shared.max_payload,
            hint,
        )
    });
    let cell = tee.as_ref().map(|(_, cell)| cell.clone());
    let mut meta = ResponseMeta {
        stats: shared.stats.clone(),
        model: model_label,
        status: 0,
        received,
        upstream_sent: None,
        first_byte: None,
        overhead: None,
        proxy_error: None,
        spans,
    };

    if refuse {
        // Refuse before anything reaches the upstream; the unread body is
        // dropped and hyper closes the connection.
        drop(body);
        settle(&mut tee, false);
        shared.stats.record_body_too_large();
        let error = ProxyError::BodyTooLarge(BodyTooLarge { limit });
        return Ok(synthetic(&shared, error, grpc, meta, cell, &request_id));
    }

    // A Host-less HTTP/2 request keeps the client's authority as Host for an
    // HTTP/1.1 upstream, as it would have been sent directly.
    if !parts.headers.contains_key(http::header::HOST)
        && let Some(authority) = parts.uri.authority()
        && let Ok(host) = HeaderValue::from_str(authority.as_str())
    {
        parts.headers.insert(http::header::HOST, host);
    }
    // A client that closes after this request would take its lane's
    // upstream connection with it: the pool keeps that one for others.
    let lane = lane.filter(|_| !headers::closes_after(&parts.headers, parts.version));
    headers::strip_hop_by_hop(&mut parts.headers);
    headers::append_forwarded(&mut parts.headers, &forwarded_for, "http");

    // Only gRPC goes over h2, where a refused body comes back as a bare
    // stream reset; HTTP/1.1 keeps the error, so plain requests skip this.
    let refused = grpc.then(|| Arc::new(AtomicBool::new(false)));
    let body = RequestTap::new(body, BodyLimit::new(limit, grpc), refused.clone(), tee);
    let upstream_request = Request::from_parts(parts, body);
    if let Some(spans) = &mut meta.spans {
        spans.upstream_started();
    }
    let upstream_sent = Instant::now();
    meta.upstream_sent = Some(upstream_sent);
    match shared
        .upstream
        .send(upstream_request, grpc, lane.as_ref())
        .await
    {
        Ok(response) => {
            let first_byte = Instant::now();
            meta.first_byte = Some(first_byte);
            let (mut parts, body) = response.into_parts();
            headers::strip_hop_by_hop(&mut parts.headers);
            if let Entry::Vacant(entry) = parts.headers.entry(&headers::X_REQUEST_ID) {
                entry.insert(request_id);
            }
            meta.status = parts.status.as_u16();
            if grpc && let Some(spans) = &mut meta.spans {
                spans.grpc_status(&parts.headers);
            }
            let tee = cell.map(|cell| {
                let hint = http_body::Body::size_hint(&body).exact();
                let capture = Capture::response(shared.max_payload, hint, &parts.headers);
                (capture, parts.status, cell)
            });
            meta.overhead =
                Some(upstream_sent.saturating_duration_since(received) + first_byte.elapsed());
            let body = ResponseTap::new(Either::Left(body), meta, tee);
            Ok(Response::from_parts(parts, body))
        }
        Err((_, _)) if refused.is_some_and(|r| r.load(Ordering::Acquire)) => {
            shared.stats.record_body_too_large();
            let error = ProxyError::BodyTooLarge(BodyTooLarge { limit });
            Ok(synthetic(&shared, error, grpc, meta, cell, &request_id))
        }
        Err((error, kind)) => {
            match kind {
                Some(kind) => shared.stats.record_upstream_error(kind),
                None => shared.stats.record_body_too_large(),
            }
            tracing::debug!(%error, request_id = ?request_id, "Upstream call failed.");
            Ok(synthetic(&shared, error, grpc, meta, cell, &request_id))
        }
    }
}

/// A response the proxy makes itself, measured and teed like any other.
fn synthetic(
    shared: &Shared,
    error: ProxyError,
    grpc: bool,
    mut meta: ResponseMeta,
    cell: Option<Arc<ExchangeCell>>,
    request_id: &HeaderValue,
) -> Response<ProxyBody> {
    let (mut parts, body) = error.to_response(grpc).into_parts();
    parts
        .headers
        .insert(headers::X_REQUEST_ID.clone(), request_id.clone());
    meta.status = parts.status.as_u16();
    meta.proxy_error = Some(error.kind());
    if grpc && let Some(spans) = &mut meta.spans {
        spans.grpc_status(&parts.headers);
    }
    // Waiting on a failed upstream is upstream time; only what came before is ours.
    meta.overhead = meta
        .upstream_sent
        .map(|sent| sent.saturating_duration_since(meta.received));
    let tee = cell.map(|cell| {
        let hint = http_body::Body::size_hint(&body).exact();
        let capture = Capture::response(shared.max_payload, hint, &parts.headers);
        (capture, parts.status, cell)
    });
    Response::from_parts(parts, ResponseTap::new(Either::Right(body), meta, tee))
}
