//! Failures get clear answers and the proxy keeps serving: 502, 504, 413,
//! slow clients, the connection limit, and draining at shutdown.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn error_kind(body: &[u8]) -> String {
    let json: serde_json::Value = serde_json::from_slice(body).expect("JSON error body");
    assert!(
        json["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{json}"
    );
    json["kind"].as_str().unwrap_or_default().to_owned()
}

/// A GET with no body through the proxy: the answer's head and body.
async fn get(url: impl AsRef<str>) -> (http::response::Parts, Bytes) {
    send(
        Request::get(url.as_ref())
            .body(Full::new(Bytes::new()))
            .expect("request"),
    )
    .await
}

#[tokio::test]
async fn unreachable_upstream_is_502_and_the_proxy_keeps_serving() {
    let sidecar = sidecar(closed_port().await, "").await;
    for _ in 0..2 {
        let (parts, body) = get(format!("http://{}/v2/models/m/infer", sidecar.proxy_addr())).await;
        assert_eq!(parts.status, 502);
        assert_eq!(parts.headers["content-type"], "application/json");
        assert!(parts.headers.contains_key("x-request-id"));
        assert_eq!(error_kind(&body), "upstream_unreachable");
        // The reason is the innermost cause, not a wrapper's "connect error".
        let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON error body");
        let error = json["error"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        assert!(error.contains("refused"), "{error}");
    }
    let (_, metrics) = admin_get(&sidecar, "/metrics").await;
    assert!(
        metrics.contains("sidewatch_upstream_errors_total{kind=\"connect\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sidewatch_requests_total{model=\"unknown\",code=\"502\"} 2"),
        "{metrics}"
    );
    sidecar.shutdown().await;
}

#[tokio::test]
async fn slow_upstream_is_504_after_request_timeout() {
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let held = release.clone();
    let upstream = upstream(move |_| {
        let held = held.clone();
        async move {
            held.notified().await;
            Response::new(full("too late"))
        }
    })
    .await;
    let sidecar = sidecar(upstream.addr, "limits: { request_timeout: 300ms }\n").await;
    let started = std::time::Instant::now();
    let (parts, body) = get(format!("http://{}/slow", sidecar.proxy_addr())).await;
    assert_eq!(parts.status, 504);
    assert_eq!(error_kind(&body), "upstream_timeout");
    assert!(started.elapsed() >= Duration::from_millis(300));
    release.notify_waiters();
    sidecar.shutdown().await;
}

/// One client connection keeps its lane, and the lane keeps one timer,
/// reset for each request: a timer that fired must not cut the next
/// request short, and one pushed later must not fire at its old deadline.
#[tokio::test]
async fn the_request_timeout_is_per_request_on_a_kept_alive_connection() {
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let held = release.clone();
    let upstream = upstream(move |request| {
        let held = held.clone();
        async move {
            match request.uri.path() {
                "/slow" => held.notified().await,
                "/200ms" => tokio::time::sleep(Duration::from_millis(200)).await,
                _ => {}
            }
            Response::new(full("done"))
        }
    })
    .await;
    let sidecar = sidecar(upstream.addr, "limits: { request_timeout: 300ms }\n").await;
    let stream = TcpStream::connect(sidecar.proxy_addr())
        .await
        .expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    let driver = tokio::spawn(connection);
    let mut get = async |path: &str| {
        sender.ready().await.expect("connection ready");
        let started = std::time::Instant::now();
        let response = sender
            .send_request(
                Request::get(path)
                    .header("host", "model")
                    .body(Full::new(Bytes::new()))
                    .expect("request"),
            )
            .await
            .expect("response on the same connection");
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, body, started.elapsed())
    };

    let (status, body, took) = get("/slow").await;
    assert_eq!(status, 504);
    assert_eq!(error_kind(&body), "upstream_timeout");
    assert!(took >= Duration::from_millis(300), "{took:?}");
    // The timer fired on the last request; this one is answered.
    let (status, _, _) = get("/fast").await;
    assert_eq!(status, 200);
    // Back to back, each 200 ms: the second ends after the first's deadline
    // (300 ms from its start), so a timer not pushed later would cut it.
    for _ in 0..3 {
        let (status, body, took) = get("/200ms").await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert!(took >= Duration::from_millis(200), "{took:?}");
    }
    release.notify_waiters();
    driver.abort();
    sidecar.shutdown().await;
}

/// A request timeout too large to add to a clock reading means no timeout,
/// not a panic in the connection's task.
#[tokio::test]
async fn an_enormous_request_timeout_is_no_timeout() {
    let upstream = ok_upstream("fine").await;
    let sidecar = sidecar(upstream.addr, "limits: { request_timeout: 1e19 }\n").await;
    let (parts, body) = get(format!("http://{}/v2/health/ready", sidecar.proxy_addr())).await;
    assert_eq!(parts.status, 200);
    assert_eq!(&body[..], b"fine");
    sidecar.shutdown().await;
}

#[tokio::test]
async fn bodies_over_max_body_get_413() {
    let mut upstream = upstream(|_| async move { Response::new(full("accepted")) }).await;
    let sidecar = sidecar(upstream.addr, "limits: { max_body: 1KiB }\n").await;
    let url = format!("http://{}/v2/models/m/infer", sidecar.proxy_addr());

    // Declared too large: refused before the upstream sees anything.
    let (parts, body) = send(
        Request::post(&url)
            .body(Full::new(Bytes::from(vec![b'x'; 2000])))
            .expect("request"),
    )
    .await;
    assert_eq!(parts.status, 413);
    assert_eq!(error_kind(&body), "body_too_large");
    assert!(
        upstream.received.try_recv().is_err(),
        "upstream saw an oversized body"
    );

    // Streamed (chunked) past the limit: cut off mid-stream, still 413.
    let chunks = (0..8)
        .map(|_| Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(vec![b'y'; 512]))));
    let streamed = StreamBody::new(tokio_stream::iter(chunks));
    let response = http1_client()
        .request(Request::post(&url).body(streamed).expect("request"))
        .await
        .expect("response");
    assert_eq!(response.status(), 413);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(error_kind(&body), "body_too_large");

    // Within the limit still works.
    let (parts, body) = send(
        Request::post(&url)
            .body(Full::new(Bytes::from(vec![b'z'; 1000])))
            .expect("request"),
    )
    .await;
    assert_eq!(parts.status, 200);
    assert_eq!(body, Bytes::from("accepted"));
    let (_, metrics) = admin_get(&sidecar, "/metrics").await;
    assert!(
        metrics.contains("sidewatch_request_body_too_large_total 2"),
        "{metrics}"
    );
    sidecar.shutdown().await;
}

async fn expect_disconnect(stream: &mut TcpStream) {
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(DEADLINE, stream.read(&mut buf))
        .await
        .expect("the proxy disconnected the slow client");
    match read {
        Ok(0) | Err(_) => {}
        // hyper may answer 408 before closing; then the next read is EOF.
        Ok(n) => {
            let text = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
            assert!(text.starts_with("http/1.1 408"), "unexpected bytes: {text}");
            let rest = tokio::time::timeout(DEADLINE, stream.read(&mut buf))
                .await
                .expect("close in time");
            assert!(matches!(rest, Ok(0) | Err(_)));
        }
    }
}

#[tokio::test]
async fn clients_that_do_not_finish_their_headers_are_disconnected() {
    let upstream = ok_upstream("ok").await;
    let sidecar = sidecar(upstream.addr, "limits: { header_timeout: 300ms }\n").await;

    let mut partial = TcpStream::connect(sidecar.proxy_addr())
        .await
        .expect("connect");
    partial
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n")
        .await
        .expect("write");
    let started = std::time::Instant::now();
    expect_disconnect(&mut partial).await;
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "closed before the timeout"
    );

    let mut silent = TcpStream::connect(sidecar.proxy_addr())
        .await
        .expect("connect");
    expect_disconnect(&mut silent).await;

    // Meanwhile a well-behaved client is served.
    let (parts, _) = get(format!("http://{}/", sidecar.proxy_addr())).await;
    assert_eq!(parts.status, 200);
    sidecar.shutdown().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    // hyper counts the wait for the next request head as header time, so
    // limits.header_timeout is also the idle keep-alive timeout: a client
    // cannot hold a connection (and its upstream lane) open forever.
    let upstream = ok_upstream("ok").await;
    let sidecar = sidecar(upstream.addr, "limits: { header_timeout: 300ms }\n").await;
    let mut stream = TcpStream::connect(sidecar.proxy_addr())
        .await
        .expect("connect");
    let answer = raw_get(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let idle = std::time::Instant::now();
    expect_disconnect(&mut stream).await;
    assert!(
        idle.elapsed() >= Duration::from_millis(250),
        "closed before the timeout"
    );
    sidecar.shutdown().await;
}

async fn raw_get(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(DEADLINE, stream.read(&mut buf))
        .await
        .expect("answer in time")
        .expect("read");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn max_connections_is_enforced() {
    let upstream = ok_upstream("ok").await;
    let sidecar = sidecar(upstream.addr, "limits: { max_connections: 2 }\n").await;
    let mut first = TcpStream::connect(sidecar.proxy_addr())
        .await
        .expect("connect");
    let mut second = TcpStream::connect(sidecar.proxy_addr())
        .await
        .expect("connect");
    assert!(raw_get(&mut first).await.starts_with("HTTP/1.1 200"));
    assert!(raw_get(&mut second).await.starts_with("HTTP/1.1 200"));

    let mut third = TcpStream::connect(sidecar.proxy_addr())
        .await
        .expect("connect");
    let mut refused = String::new();
    tokio::time::timeout(DEADLINE, third.read_to_string(&mut refused))
        .await
        .expect("refusal in time")
        .expect("read");
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("too_many_connections"), "{refused}");

    drop(first);
    // The freed slot is taken by the next client once the proxy notices the close.
    wait_until("a slot frees up", || async {
        let mut next = TcpStream::connect(sidecar.proxy_addr())
            .await
            .expect("connect");
        raw_get(&mut next).await.starts_with("HTTP/1.1 200")
    })
    .await;
    assert!(
        raw_get(&mut second).await.starts_with("HTTP/1.1 200"),
        "kept connection still served"
    );
    let (_, metrics) = admin_get(&sidecar, "/metrics").await;
    assert!(
        !metrics.contains("sidewatch_connections_rejected_total 0"),
        "{metrics}"
    );
    sidecar.shutdown().await;
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish_and_flushes_the_mirror() {
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let held = release.clone();
    let mut upstream = upstream(move |_| {
        let held = held.clone();
        async move {
            held.notified().await;
            Response::new(full("finished"))
        }
    })
    .await;
    let (sidecar, exchanges) = teed_sidecar(upstream.addr, "shutdown: { drain: 10s }\n").await;
    let proxy = sidecar.proxy_addr();
    let in_flight = tokio::spawn(send(
        Request::get(format!("http://{proxy}/slow"))
            .body(Full::new(Bytes::new()))
            .expect("request"),
    ));
    next_received(&mut upstream).await;

    let shutdown = tokio::spawn(sidecar.shutdown());
    wait_until("the proxy stops accepting", || async {
        TcpStream::connect(proxy).await.is_err()
    })
    .await;
    assert!(!in_flight.is_finished(), "in-flight request was cut");

    release.notify_one();
    let (parts, body) = tokio::time::timeout(DEADLINE, in_flight)
        .await
        .expect("in time")
        .expect("task");
    assert_eq!(parts.status, 200);
    assert_eq!(body, Bytes::from("finished"));
    let report = tokio::time::timeout(DEADLINE, shutdown)
        .await
        .expect("shutdown in time")
        .expect("task");
    assert_eq!(report.connections_cut, 0);
    assert!(report.mirror_flushed);
    let exchange = next_exchange(&exchanges).await;
    assert_eq!(exchange.response.map(|r| r.status.as_u16()), Some(200));
}
