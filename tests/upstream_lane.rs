//! Each HTTP/1.1 client connection gets an upstream connection of its own:
//! its sequential requests reuse that one connection, other clients get
//! theirs, and an upstream that closes connections (`Connection: close`)
//! costs a reconnect, never a failed request.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// An upstream that counts the connections it accepted; with `keep_alive`
/// false it answers each request with `Connection: close` and hangs up.
async fn counting_upstream(keep_alive: bool) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service = service_fn(|request: Request<Incoming>| async move {
                    let body = request.into_body().collect().await?.to_bytes();
                    Ok::<_, hyper::Error>(Response::new(Full::new(body)))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(keep_alive)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, accepted)
}

/// One client connection sending `n` requests in turn; each must come back
/// 200 with its own body.
async fn sequential(proxy: std::net::SocketAddr, tag: &str, n: usize) {
    let stream = tokio::net::TcpStream::connect(proxy)
        .await
        .expect("connect");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    for i in 0..n {
        sender.ready().await.expect("client connection ready");
        let body = format!("{tag}-{i}");
        let request = Request::post("/v2/models/m/infer")
            .header("host", "sidewatch")
            .body(Full::new(Bytes::from(body.clone())))
            .expect("request");
        let response = tokio::time::timeout(DEADLINE, sender.send_request(request))
            .await
            .expect("in time")
            .expect("response");
        assert_eq!(response.status(), 200, "{body}");
        let echoed = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(echoed, Bytes::from(body));
    }
}

#[tokio::test]
async fn a_client_connection_reuses_its_own_upstream_connection() {
    let (upstream, accepted) = counting_upstream(true).await;
    let sidecar = sidecar(upstream, "threads: 1\n").await;
    sequential(sidecar.proxy_addr(), "a", 20).await;
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one upstream connection"
    );
    sequential(sidecar.proxy_addr(), "b", 5).await;
    sequential(sidecar.proxy_addr(), "c", 5).await;
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        3,
        "one upstream connection per client connection"
    );
    sidecar.shutdown().await;
}

#[tokio::test]
async fn an_upstream_that_closes_each_connection_costs_reconnects_not_failures() {
    let (upstream, accepted) = counting_upstream(false).await;
    let sidecar = sidecar(upstream, "threads: 1\n").await;
    sequential(sidecar.proxy_addr(), "close", 20).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 20);
    let (_, metrics) = admin_get(&sidecar, "/metrics").await;
    for kind in ["connect", "timeout", "protocol"] {
        let series = format!("sidewatch_upstream_errors_total{{kind=\"{kind}\"}}");
        assert_eq!(sample(&metrics, &series), Some(0.0), "{series}:\n{metrics}");
    }
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lanes_work_on_every_proxy_thread() {
    let (upstream, accepted) = counting_upstream(true).await;
    // Three event-loop threads: the acceptor deals six connections to
    // them round-robin, two each.
    let sidecar = sidecar(upstream, "threads: 3\n").await;
    let clients: Vec<_> = (0..6)
        .map(|c| {
            let proxy = sidecar.proxy_addr();
            tokio::spawn(async move { sequential(proxy, &format!("t{c}"), 10).await })
        })
        .collect();
    for client in clients {
        client.await.expect("client task");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 6);
    assert_eq!(sidecar.stats().requests_total(), 60);
    sidecar.shutdown().await;
}

#[tokio::test]
async fn clients_that_close_after_each_request_share_the_pool() {
    let (upstream, accepted) = counting_upstream(true).await;
    let sidecar = sidecar(upstream, "threads: 1\n").await;
    for i in 0..10 {
        let request = Request::post(format!("http://{}/v2/models/m/infer", sidecar.proxy_addr()))
            .header("connection", "close")
            .body(Full::new(Bytes::from(format!("close-{i}"))))
            .expect("request");
        let (parts, body) = send(request).await;
        assert_eq!(parts.status, 200);
        assert_eq!(body, Bytes::from(format!("close-{i}")));
    }
    // Ten client connections, one upstream connection kept in the pool.
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    sidecar.shutdown().await;
}

/// hyper serves pipelined requests one after the other: the second reaches
/// the lane once the first response, streamed for longer than
/// `request_timeout`, has been written, and must still get its own 200.
#[tokio::test]
async fn a_pipelined_request_behind_a_long_stream_is_not_timed_out() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // /slow streams its body for longer than limits.request_timeout (the
    // head comes at once, so the first request is in time); /fast answers
    // at once.
    let upstream = upstream(|received| async move {
        if received.uri.path() == "/slow" {
            // Five chunks 100 ms apart: half a second of body.
            let chunks = tokio_stream::StreamExt::map(
                tokio_stream::StreamExt::throttle(
                    tokio_stream::iter(0..5),
                    std::time::Duration::from_millis(100),
                ),
                |_| {
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(hyper::body::Frame::data(
                        Bytes::from_static(b"chunk"),
                    ))
                },
            );
            Response::new(BodyExt::boxed(http_body_util::StreamBody::new(chunks)))
        } else {
            Response::new(full("fast"))
        }
    })
    .await;
    let sidecar = sidecar(
        upstream.addr,
        "threads: 1\nlimits: { request_timeout: 300ms }\n",
    )
    .await;
    let mut stream = tokio::net::TcpStream::connect(sidecar.proxy_addr())
        .await
        .expect("connect");
    stream
        .write_all(
            b"GET /slow HTTP/1.1\r\nhost: s\r\n\r\nGET /fast HTTP/1.1\r\nhost: s\r\nconnection: close\r\n\r\n",
        )
        .await
        .expect("pipelined requests");
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer))
        .await
        .expect("both answers in time")
        .expect("read");
    let text = String::from_utf8_lossy(&answer);
    assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{text}");
    assert!(!text.contains(" 504 "), "{text}");
    assert!(text.ends_with("fast"), "{text}");
    sidecar.shutdown().await;
}
