//! The tee copies exactly what passed, capped at `mirror.max_payload`, and
//! reports proxy-made answers too.

mod common;

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::Full;

#[tokio::test]
async fn exchanges_equal_what_was_sent_and_received() {
    let upstream = upstream(|received| async move {
        Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(full(Bytes::from(
                [b"{\"echo\":".as_slice(), &received.body, b"}"].concat(),
            )))
            .expect("response")
    })
    .await;
    let (sidecar, exchanges) = teed_sidecar(upstream.addr, "models: [{ name: iris }]\n").await;
    let sent_at = std::time::SystemTime::now();
    let body = Bytes::from_static(
        br#"{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1.5,2.5]}]}"#,
    );
    let (parts, response_body) = send(
        Request::post(format!(
            "http://{}/v2/models/iris/infer",
            sidecar.proxy_addr()
        ))
        .header("content-type", "application/json")
        .body(Full::new(body.clone()))
        .expect("request"),
    )
    .await;

    let exchange = next_exchange(&exchanges).await;
    assert_eq!(
        exchange.request_id,
        parts.headers["x-request-id"].to_str().expect("ascii")
    );
    assert_eq!(exchange.model.as_deref(), Some("iris"));
    assert_eq!(exchange.client.ip().to_string(), "127.0.0.1");
    assert_eq!(exchange.request.method, http::Method::POST);
    assert_eq!(exchange.request.uri.path(), "/v2/models/iris/infer");
    assert_eq!(
        exchange.request.headers.get_str("content-type"),
        Some("application/json")
    );
    assert_eq!(exchange.request_body.bytes, body);
    assert_eq!(exchange.request_body.size, body.len() as u64);
    assert!(exchange.request_body.complete && !exchange.request_body.truncated);

    let response = exchange.response.as_ref().expect("response head");
    assert_eq!(response.status, 200);
    assert_eq!(
        response.headers.get_str("content-type"),
        Some("application/json")
    );
    assert_eq!(exchange.response_body.bytes, response_body);
    assert!(exchange.response_body.complete && !exchange.response_body.truncated);
    assert_eq!(exchange.proxy_error, None);

    // The wall-clock time is derived on the mirror worker from the
    // monotonic one; it still falls between sending and receiving.
    let received_at = exchange.timings.received_at;
    assert!(
        sent_at <= received_at && received_at <= std::time::SystemTime::now(),
        "{received_at:?} sent at {sent_at:?}"
    );
    let t = exchange.timings.stages;
    let sent = t.upstream_sent.expect("upstream_sent");
    let first = t.first_byte.expect("first_byte");
    let done = t.done.expect("done");
    let first_body = t.first_body_byte.expect("first_body_byte");
    assert!(
        t.received <= sent && sent <= first && first <= first_body && first_body <= done,
        "{t:?}"
    );
    sidecar.shutdown().await;
}

#[tokio::test]
async fn copies_are_capped_at_max_payload_but_sizes_are_exact() {
    let upstream = upstream(|_| async move { Response::new(full(vec![b'r'; 300])) }).await;
    let (sidecar, exchanges) = teed_sidecar(upstream.addr, "mirror: { max_payload: 16 }\n").await;
    let (_, body) = send(
        Request::post(format!("http://{}/x", sidecar.proxy_addr()))
            .body(Full::new(Bytes::from(vec![b'q'; 100])))
            .expect("request"),
    )
    .await;
    assert_eq!(body.len(), 300, "the client still gets everything");
    let exchange = next_exchange(&exchanges).await;
    assert_eq!(exchange.request_body.bytes, Bytes::from(vec![b'q'; 16]));
    assert_eq!(exchange.request_body.size, 100);
    assert!(exchange.request_body.truncated);
    assert_eq!(exchange.response_body.bytes, Bytes::from(vec![b'r'; 16]));
    assert_eq!(exchange.response_body.size, 300);
    assert!(exchange.response_body.truncated && exchange.response_body.complete);
    sidecar.shutdown().await;
}

#[tokio::test]
async fn proxy_made_errors_are_teed_with_their_kind() {
    let (sidecar, exchanges) = teed_sidecar(closed_port().await, "").await;
    let (parts, body) = send(
        Request::get(format!("http://{}/down", sidecar.proxy_addr()))
            .body(Full::new(Bytes::new()))
            .expect("request"),
    )
    .await;
    assert_eq!(parts.status, 502);
    let exchange = next_exchange(&exchanges).await;
    assert_eq!(exchange.proxy_error, Some("upstream_unreachable"));
    assert_eq!(exchange.response.map(|r| r.status.as_u16()), Some(502));
    assert_eq!(exchange.response_body.bytes, body);
    sidecar.shutdown().await;
}

#[tokio::test]
async fn with_the_tee_off_nothing_is_mirrored_and_requests_still_flow() {
    let upstream = ok_upstream("plain").await;
    let sidecar = sidecar(upstream.addr, "mirror: { enabled: false }\n").await;
    let (parts, body) = send(
        Request::get(format!("http://{}/", sidecar.proxy_addr()))
            .body(Full::new(Bytes::new()))
            .expect("request"),
    )
    .await;
    assert_eq!(parts.status, 200);
    assert_eq!(body, Bytes::from("plain"));
    assert!(sidecar.mirror_stats().is_none());
    assert_eq!(sidecar.stats().requests_with("unknown", 200), 1);
    sidecar.shutdown().await;
}

#[tokio::test]
async fn empty_bodies_are_complete_copies() {
    let upstream = upstream(|_| async move {
        Response::builder()
            .status(204)
            .body(full(""))
            .expect("response")
    })
    .await;
    let (sidecar, exchanges) = teed_sidecar(upstream.addr, "").await;
    let (parts, _) = send(
        Request::get(format!("http://{}/v2/health/ready", sidecar.proxy_addr()))
            .body(Full::new(Bytes::new()))
            .expect("request"),
    )
    .await;
    assert_eq!(parts.status, 204);
    let exchange = next_exchange(&exchanges).await;
    assert!(
        exchange.request_body.complete,
        "{:?}",
        exchange.request_body
    );
    assert_eq!(exchange.request_body.size, 0);
    assert!(
        exchange.response_body.complete,
        "{:?}",
        exchange.response_body
    );
    assert_eq!(exchange.response.map(|r| r.status.as_u16()), Some(204));
    assert!(exchange.timings.stages.done.is_some());
    sidecar.shutdown().await;
}

#[tokio::test]
async fn a_streamed_body_times_its_first_byte_and_a_one_frame_body_its_only_one() {
    use http_body_util::BodyExt;

    let (chunks_tx, chunks_rx) = tokio::sync::mpsc::channel::<&'static str>(2);
    let chunks_rx = std::sync::Arc::new(tokio::sync::Mutex::new(Some(chunks_rx)));
    let upstream = upstream(move |received| {
        let chunks_rx = chunks_rx.clone();
        async move {
            if received.uri.path() == "/once" {
                return Response::new(full("one frame"));
            }
            let rx = chunks_rx.lock().await.take().expect("one streamed request");
            Response::new(streamed(rx))
        }
    })
    .await;
    let (sidecar, exchanges) = teed_sidecar(upstream.addr, "").await;

    let request = Request::get(format!("http://{}/stream", sidecar.proxy_addr()))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let response = tokio::time::timeout(DEADLINE, http1_client().request(request))
        .await
        .expect("response head in time")
        .expect("response");
    let mut body = response.into_body();
    chunks_tx
        .send("first,")
        .await
        .expect("upstream stream open");
    let first = tokio::time::timeout(DEADLINE, body.frame())
        .await
        .expect("first chunk in time")
        .expect("a frame")
        .expect("frame ok");
    assert_eq!(first.into_data().expect("data"), Bytes::from("first,"));
    // Everything before this instant is the first chunk's; the end comes after.
    let between = std::time::Instant::now();
    chunks_tx.send("last").await.expect("upstream stream open");
    drop(chunks_tx);
    let rest = tokio::time::timeout(DEADLINE, body.collect())
        .await
        .expect("the rest in time")
        .expect("body");
    assert_eq!(rest.to_bytes(), Bytes::from("last"));
    let streamed = next_exchange(&exchanges).await;
    assert_eq!(streamed.response_body.bytes, Bytes::from("first,last"));
    let t = streamed.timings.stages;
    let first_body = t.first_body_byte.expect("first_body_byte");
    let done = t.done.expect("done");
    assert!(first_body < between && between < done, "{t:?}");

    let (_, once) = send(
        Request::get(format!("http://{}/once", sidecar.proxy_addr()))
            .body(Full::new(Bytes::new()))
            .expect("request"),
    )
    .await;
    assert_eq!(once, Bytes::from("one frame"));
    let once = next_exchange(&exchanges).await;
    let t = once.timings.stages;
    let first = t.first_byte.expect("first_byte");
    let first_body = t.first_body_byte.expect("first_body_byte");
    // One frame, one clock reading for its first byte and its last.
    assert!(first <= first_body && Some(first_body) == t.done, "{t:?}");
    sidecar.shutdown().await;
}
