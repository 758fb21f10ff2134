//! The proxy is transparent: methods, headers, bodies and framing arrive
//! unchanged in both directions, across HTTP/1.1 and HTTP/2 clients.

mod common;

use bytes::Bytes;
use common::*;
use http::{Method, Request, Response, Version};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "upgrade"
            | "proxy-connection"
            | "x-drop-me"
    )
}

/// Every header the client sent arrives upstream with the same values in
/// the same order, except hop-by-hop ones; the proxy adds only its own.
fn assert_forwarded_headers(sent: &http::HeaderMap, got: &http::HeaderMap) {
    for name in sent.keys() {
        if is_hop_by_hop(name.as_str()) {
            assert!(!got.contains_key(name), "hop-by-hop {name} was forwarded");
            continue;
        }
        let sent_values: Vec<_> = sent.get_all(name).iter().collect();
        let got_values: Vec<_> = got.get_all(name).iter().collect();
        assert_eq!(sent_values, got_values, "header {name}");
    }
    let added = [
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-request-id",
        "traceparent",
        "host",
        "content-length",
    ];
    for name in got.keys() {
        assert!(
            sent.contains_key(name) || added.contains(&name.as_str()),
            "unexpected header {name} upstream"
        );
    }
    assert_eq!(got["x-forwarded-for"], "127.0.0.1");
    assert_eq!(got["x-forwarded-proto"], "http");
    assert_eq!(got["x-request-id"].len(), 36, "generated request id");
    let traceparent = got["traceparent"].to_str().expect("ascii traceparent");
    assert!(
        sidewatch::proxy::headers::is_valid_traceparent(traceparent.as_bytes()),
        "{traceparent}"
    );
}

#[tokio::test]
async fn methods_headers_and_bodies_pass_through_unchanged() {
    let mut upstream = upstream(|received| async move {
        Response::builder()
            .status(201)
            .header("x-model-version", "7")
            .header("set-cookie", "a=1")
            .header("set-cookie", "b=2")
            .header("connection", "x-internal")
            .header("x-internal", "secret")
            .header("keep-alive", "timeout=5")
            .body(full(Bytes::from(
                [b"echo:".as_slice(), &received.body].concat(),
            )))
            .expect("response")
    })
    .await;
    let sidecar = sidecar(upstream.addr, "").await;
    for method in [Method::GET, Method::POST, Method::PUT, Method::DELETE] {
        let body = if method == Method::GET {
            Bytes::new()
        } else {
            Bytes::from(format!("{{\"m\":\"{method}\",\"x\":[1,2,3]}}"))
        };
        let request = Request::builder()
            .method(method.clone())
            .uri(format!(
                "http://{}/v2/models/iris/infer?verbose=1&x=%20y",
                sidecar.proxy_addr()
            ))
            .header("content-type", "application/json")
            .header("authorization", "Bearer t0k3n")
            .header("x-multi", "one")
            .header("x-multi", "two")
            .header("accept-encoding", "identity")
            .header("connection", "x-drop-me")
            .header("x-drop-me", "1")
            .body(Full::new(body.clone()))
            .expect("request");
        let sent_headers = request.headers().clone();
        let (parts, response_body) = send(request).await;
        let got = next_received(&mut upstream).await;

        assert_eq!(got.method, method);
        assert_eq!(
            got.uri.path_and_query().map(|p| p.as_str()),
            Some("/v2/models/iris/infer?verbose=1&x=%20y")
        );
        assert_eq!(got.version, Version::HTTP_11);
        assert_eq!(got.body, body, "{method} body");
        assert_forwarded_headers(&sent_headers, &got.headers);

        assert_eq!(parts.status, 201);
        assert_eq!(parts.headers["x-model-version"], "7");
        let cookies: Vec<_> = parts.headers.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert!(
            !parts.headers.contains_key("x-internal"),
            "connection-named header leaked"
        );
        assert!(!parts.headers.contains_key("keep-alive"));
        assert_eq!(parts.headers["x-request-id"], got.headers["x-request-id"]);
        assert_eq!(
            response_body,
            Bytes::from([b"echo:".as_slice(), &body].concat())
        );
    }
    sidecar.shutdown().await;
}

#[tokio::test]
async fn client_request_id_and_traceparent_are_forwarded() {
    let mut upstream = ok_upstream("ok").await;
    let sidecar = sidecar(upstream.addr, "").await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let request = Request::get(format!("http://{}/", sidecar.proxy_addr()))
        .header("x-request-id", "req-42")
        .header("traceparent", traceparent)
        .header("x-forwarded-for", "10.1.2.3")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let (parts, _) = send(request).await;
    let got = next_received(&mut upstream).await;
    assert_eq!(got.headers["x-request-id"], "req-42");
    assert_eq!(got.headers["traceparent"], traceparent);
    assert_eq!(got.headers["x-forwarded-for"], "10.1.2.3, 127.0.0.1");
    assert_eq!(parts.headers["x-request-id"], "req-42");
    sidecar.shutdown().await;
}

/// Reads a raw HTTP/1.1 response head and body from a socket until EOF.
async fn read_to_end(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut out))
        .await
        .expect("response in time")
        .expect("read response");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn chunked_and_content_length_framing_is_preserved() {
    // The upstream answers with a stream of unknown length, so hyper must
    // frame it chunked, and the proxy must keep it so.
    let mut upstream = upstream(|received| async move {
        let chunks = vec![
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Frame::data(Bytes::from("part1,"))),
            Ok(Frame::data(received.body)),
        ];
        Response::new(StreamBody::new(tokio_stream::iter(chunks)).boxed())
    })
    .await;
    let sidecar = sidecar(upstream.addr, "").await;

    let mut stream = TcpStream::connect(sidecar.proxy_addr())
        .await
        .expect("connect");
    stream
        .write_all(b"POST /chunked HTTP/1.1\r\nhost: model\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        .await
        .expect("write");
    let response = read_to_end(&mut stream).await;
    let got = next_received(&mut upstream).await;
    assert_eq!(got.body, Bytes::from("hello world"));
    assert_eq!(
        got.headers.get("transfer-encoding").map(|v| v.as_bytes()),
        Some(&b"chunked"[..])
    );
    assert!(!got.headers.contains_key("content-length"));
    let lower = response.to_ascii_lowercase();
    assert!(lower.starts_with("http/1.1 200"), "{response}");
    assert!(lower.contains("transfer-encoding: chunked"), "{response}");
    assert!(
        response.contains("part1,") && response.contains("hello world"),
        "{response}"
    );

    let mut stream = TcpStream::connect(sidecar.proxy_addr())
        .await
        .expect("connect");
    stream
        .write_all(b"PUT /sized HTTP/1.1\r\nhost: model\r\ncontent-length: 11\r\nconnection: close\r\n\r\nhello world")
        .await
        .expect("write");
    let _ = read_to_end(&mut stream).await;
    let got = next_received(&mut upstream).await;
    assert_eq!(got.headers["content-length"], "11");
    assert!(!got.headers.contains_key("transfer-encoding"));
    assert_eq!(got.body, Bytes::from("hello world"));
    sidecar.shutdown().await;
}

#[tokio::test]
async fn empty_and_50_mib_bodies_pass_both_ways() {
    let mut upstream = upstream(|received| async move { Response::new(full(received.body)) }).await;
    let sidecar = sidecar(upstream.addr, "limits: { max_body: 64MiB }\n").await;
    let url = format!("http://{}/big", sidecar.proxy_addr());

    let (parts, body) = send(
        Request::post(&url)
            .body(Full::new(Bytes::new()))
            .expect("request"),
    )
    .await;
    assert_eq!(parts.status, 200);
    assert!(body.is_empty());
    assert!(next_received(&mut upstream).await.body.is_empty());

    let mut big = vec![0u8; 50 * 1024 * 1024];
    let mut rng = fastrand::Rng::with_seed(7);
    rng.fill(&mut big);
    let big = Bytes::from(big);
    let (parts, body) = send(
        Request::post(&url)
            .body(Full::new(big.clone()))
            .expect("request"),
    )
    .await;
    assert_eq!(parts.status, 200);
    assert_eq!(next_received(&mut upstream).await.body.len(), big.len());
    assert!(body == big, "50 MiB body came back altered");
    sidecar.shutdown().await;
}

#[tokio::test]
async fn h2_client_reaches_an_http1_upstream() {
    let mut upstream = upstream(|received| async move { Response::new(full(received.body)) }).await;
    let sidecar = sidecar(upstream.addr, "").await;
    let request = Request::post(format!(
        "http://{}/v2/models/iris/infer",
        sidecar.proxy_addr()
    ))
    .header("x-custom", "h2")
    .body(Full::new(Bytes::from_static(b"{\"inputs\":[]}")))
    .expect("request");
    let response = h2_client().request(request).await.expect("h2 request");
    assert_eq!(response.version(), Version::HTTP_2);
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(body, Bytes::from_static(b"{\"inputs\":[]}"));
    let got = next_received(&mut upstream).await;
    assert_eq!(got.version, Version::HTTP_11);
    assert_eq!(got.headers["x-custom"], "h2");
    assert_eq!(
        got.headers["host"],
        sidecar.proxy_addr().to_string().as_str()
    );
    sidecar.shutdown().await;
}

#[tokio::test]
async fn server_sent_events_arrive_one_by_one() {
    let (events_tx, events_rx) = tokio::sync::mpsc::channel::<&'static str>(4);
    let events_rx = std::sync::Arc::new(tokio::sync::Mutex::new(Some(events_rx)));
    let upstream = upstream(move |_| {
        let events_rx = events_rx.clone();
        async move {
            let rx = events_rx.lock().await.take().expect("one SSE request");
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(streamed(rx))
                .expect("response")
        }
    })
    .await;
    let sidecar = sidecar(upstream.addr, "").await;
    let request = Request::post(format!(
        "http://{}/v1/chat/completions",
        sidecar.proxy_addr()
    ))
    .body(Full::new(Bytes::from_static(b"{\"stream\":true}")))
    .expect("request");
    let response = tokio::time::timeout(DEADLINE, http1_client().request(request))
        .await
        .expect("response head in time")
        .expect("response");
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    for event in [
        "data: {\"delta\":\"Hel\"}\n\n",
        "data: {\"delta\":\"lo\"}\n\n",
        "data: [DONE]\n\n",
    ] {
        events_tx.send(event).await.expect("upstream stream open");
        // The next event is only produced after this one reached the client,
        // so a buffering proxy would time out here.
        let frame = tokio::time::timeout(DEADLINE, body.frame())
            .await
            .expect("event reached the client while the stream was open")
            .expect("a frame")
            .expect("frame ok");
        assert_eq!(frame.into_data().expect("data frame"), Bytes::from(event));
    }
    drop(events_tx);
    let end = tokio::time::timeout(DEADLINE, body.frame())
        .await
        .expect("stream end in time");
    assert!(end.is_none(), "stream ended");
    sidecar.shutdown().await;
}

#[tokio::test]
async fn request_and_response_headers_keep_http2_clients_working() {
    // An HTTP/1.1 upstream's connection-specific headers must not reach an
    // HTTP/2 client, which would treat them as a protocol error.
    let upstream = upstream(|_| async move {
        Response::builder()
            .header("connection", "keep-alive")
            .header("keep-alive", "timeout=5")
            .header("transfer-encoding", "chunked")
            .body(full("ok"))
            .expect("response")
    })
    .await;
    let sidecar = sidecar(upstream.addr, "").await;
    let request = Request::get(format!("http://{}/", sidecar.proxy_addr()))
        .header("te", "trailers")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let response = h2_client().request(request).await.expect("h2 request");
    assert_eq!(response.status(), 200);
    assert!(!response.headers().contains_key("keep-alive"));
    sidecar.shutdown().await;
}

#[tokio::test]
async fn upstream_protocol_h2c_sends_rest_over_http2() {
    let mut upstream = ok_upstream("over h2").await;
    let sidecar = sidecar(upstream.addr, "upstream_protocol: h2c\n").await;
    let (parts, body) = send(
        Request::post(format!("http://{}/v2/models/m/infer", sidecar.proxy_addr()))
            .header("x-kept", "1")
            .body(Full::new(Bytes::from_static(b"{}")))
            .expect("request"),
    )
    .await;
    assert_eq!(parts.status, 200);
    assert_eq!(body, Bytes::from("over h2"));
    let got = next_received(&mut upstream).await;
    assert_eq!(got.version, Version::HTTP_2);
    assert_eq!(got.headers["x-kept"], "1");
    assert_eq!(got.body, Bytes::from_static(b"{}"));
    sidecar.shutdown().await;
}

/// An upstream that reports each request body frame as it arrives and
/// answers only when the body ends.
async fn frame_reporting_upstream() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<Bytes>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
            let tx = tx.clone();
            async move {
                let mut body = request.into_body();
                while let Some(Ok(frame)) = body.frame().await {
                    if let Ok(data) = frame.into_data() {
                        let _ = tx.send(data);
                    }
                }
                Ok::<_, std::convert::Infallible>(Response::new(full("all frames seen")))
            }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
            .await;
    });
    (addr, rx)
}

#[tokio::test]
async fn request_bodies_stream_to_the_upstream_frame_by_frame() {
    let (addr, mut seen) = frame_reporting_upstream().await;
    let sidecar = sidecar(addr, "").await;
    let (chunks, outbound) =
        tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(1);
    let request = Request::post(format!("http://{}/upload", sidecar.proxy_addr()))
        .body(StreamBody::new(
            tokio_stream::wrappers::ReceiverStream::new(outbound),
        ))
        .expect("request");
    let response = tokio::spawn(http1_client().request(request));
    let mut received = Vec::new();
    for i in 0..3 {
        let chunk = Bytes::from(format!("chunk-{i};"));
        chunks
            .send(Ok(Frame::data(chunk)))
            .await
            .expect("body open");
        // The next chunk is only sent once the upstream holds this one, so
        // a proxy that buffered the request body would time out here.
        let got = tokio::time::timeout(DEADLINE, seen.recv())
            .await
            .expect("chunk reached the upstream while the body was still open")
            .expect("upstream alive");
        received.extend_from_slice(&got);
    }
    drop(chunks);
    let response = tokio::time::timeout(DEADLINE, response)
        .await
        .expect("in time")
        .expect("task")
        .expect("response");
    assert_eq!(response.status(), 200);
    assert_eq!(received, b"chunk-0;chunk-1;chunk-2;");
    sidecar.shutdown().await;
}
