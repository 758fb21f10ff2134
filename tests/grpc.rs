//! gRPC through the proxy: a real tonic client → sidewatch → a real tonic
//! server, all on `127.0.0.1:0`.
//!
//! The upstream's streaming methods send their first reply and then wait for
//! the test's go-ahead, which the test gives only once the client holds that
//! reply: a proxy that buffered a stream would deadlock, so every test runs
//! under [`TEST_DEADLINE`] and fails with a message instead of hanging.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use sidewatch::config::{Config, Overrides};
use sidewatch::{Consumer, Exchange, Sidecar};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::{Channel, Server};
use tonic::{Code, Request, Response, Status, Streaming};

use echo::echo_client::EchoClient;
use echo::echo_server::{Echo, EchoServer};
use echo::{EchoReply, EchoRequest};

pub mod echo {
    tonic::include_proto!("sidewatch.testing.v1");
}

/// Longest any test may take; a proxy that buffers streams hits it.
const TEST_DEADLINE: Duration = Duration::from_secs(10);
/// Longest the tee may take to hand an exchange to the consumer.
const EXCHANGE_DEADLINE: Duration = Duration::from_secs(5);
/// Error messages with `%` and non-ASCII, to exercise `grpc-message` encoding.
const FAILURE_MESSAGE: &str = "échec à 100% — code";

/// The test upstream: echoes, streams on the test's go-ahead, and fails on request.
struct EchoService {
    /// Lets streaming calls continue past their first reply.
    release: Arc<Notify>,
    /// Signalled when a unary call reaches the server.
    unary_arrived: Arc<Notify>,
    /// When set, unary calls never answer (a model server that is too slow).
    hang_unary: bool,
}

/// A running upstream and the handles a test steers it with.
struct Upstream {
    addr: SocketAddr,
    release: Arc<Notify>,
    unary_arrived: Arc<Notify>,
}

/// A consumer that forwards every exchange to the test.
struct Forward(mpsc::UnboundedSender<Exchange>);

impl Consumer for Forward {
    fn consume(&mut self, exchange: Exchange) {
        let _ = self.0.send(exchange);
    }
}

// === impl EchoService ===

#[tonic::async_trait]
impl Echo for EchoService {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        self.unary_arrived.notify_one();
        if self.hang_unary {
            std::future::pending::<()>().await;
        }
        let request = request.into_inner();
        if request.fail_with != 0 {
            return Err(failure(request.fail_with));
        }
        let mut response = Response::new(reply(&request.message, 0));
        response
            .metadata_mut()
            .insert("x-echo-header", MetadataValue::from_static("yes"));
        Ok(response)
    }

    type ServerStreamStream = ReceiverStream<Result<EchoReply, Status>>;

    async fn server_stream(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<Self::ServerStreamStream>, Status> {
        let request = request.into_inner();
        let release = self.release.clone();
        let (replies, stream) = mpsc::channel(4);
        tokio::spawn(async move {
            for index in 0..request.repeat {
                // Hold everything after the first reply for the test's go-ahead.
                if index == 1 {
                    release.notified().await;
                }
                if replies
                    .send(Ok(reply(&request.message, index)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            if request.fail_with != 0 {
                let _ = replies.send(Err(failure(request.fail_with))).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(stream)))
    }

    type BidiStream = ReceiverStream<Result<EchoReply, Status>>;

    async fn bidi(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Self::BidiStream>, Status> {
        let mut inbound = request.into_inner();
        let (replies, stream) = mpsc::channel(4);
        // One reply per request, sent as soon as the request arrives; the
        // reply stream ends when the client half-closes.
        tokio::spawn(async move {
            let mut index = 0;
            while let Ok(Some(request)) = inbound.message().await {
                let next = Ok(reply(&request.message, index));
                if replies.send(next).await.is_err() {
                    return;
                }
                index += 1;
            }
        });
        Ok(Response::new(ReceiverStream::new(stream)))
    }
}

// === helpers ===

/// Starts an echo server on a free port.
async fn start_upstream(hang_unary: bool) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the upstream listener");
    let addr = listener.local_addr().expect("upstream listener address");
    let release = Arc::new(Notify::new());
    let unary_arrived = Arc::new(Notify::new());
    let service = EchoService {
        release: release.clone(),
        unary_arrived: unary_arrived.clone(),
        hang_unary,
    };
    tokio::spawn(
        Server::builder()
            .add_service(EchoServer::new(service))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    Upstream {
        addr,
        release,
        unary_arrived,
    }
}

/// Starts a sidecar in front of `upstream`; exchanges arrive on the receiver.
async fn start_sidecar(
    upstream: SocketAddr,
    extra_yaml: &str,
) -> (Sidecar, mpsc::UnboundedReceiver<Exchange>) {
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nupstream: http://{upstream}\n\
         shutdown: {{ drain: 2s }}\nmirror: {{ queue: 1024 }}\n{extra_yaml}"
    );
    let config = Config::from_yaml(&yaml, &Overrides::default()).expect("test config is valid");
    let (sender, exchanges) = mpsc::unbounded_channel();
    let sidecar = Sidecar::start(&config, move || Box::new(Forward(sender.clone())))
        .await
        .expect("sidecar starts on free ports");
    (sidecar, exchanges)
}

/// A tonic client speaking HTTP/2 prior knowledge to the sidecar.
async fn connect(sidecar: &Sidecar) -> EchoClient<Channel> {
    let channel = Channel::from_shared(format!("http://{}", sidecar.proxy_addr()))
        .expect("proxy address is a valid URI")
        .connect()
        .await
        .expect("connect to the sidecar's proxy port");
    EchoClient::new(channel)
}

/// Runs a test body under [`TEST_DEADLINE`].
async fn within_deadline(test: impl Future<Output = ()>) {
    tokio::time::timeout(TEST_DEADLINE, test).await.expect(
        "test did not finish within 10 s: the proxy is probably buffering a stream \
         instead of relaying it frame by frame, or hanging",
    );
}

/// The next exchange the tee produced, waiting at most [`EXCHANGE_DEADLINE`].
async fn next_exchange(exchanges: &mut mpsc::UnboundedReceiver<Exchange>) -> Exchange {
    tokio::time::timeout(EXCHANGE_DEADLINE, exchanges.recv())
        .await
        .expect("the tee delivered no exchange within 5 s")
        .expect("the mirror closed without delivering an exchange")
}

fn request(message: &str, repeat: u32, fail_with: i32) -> EchoRequest {
    EchoRequest {
        message: message.to_owned(),
        repeat,
        fail_with,
    }
}

fn reply(message: &str, index: u32) -> EchoReply {
    EchoReply {
        message: message.to_owned(),
        index,
    }
}

/// A failure carrying custom metadata, which tonic sends with the status.
fn failure(code: i32) -> Status {
    let mut metadata = MetadataMap::new();
    metadata.insert("x-trailer-check", MetadataValue::from_static("yes"));
    Status::with_metadata(
        Code::from(code),
        format!("{FAILURE_MESSAGE} {code}"),
        metadata,
    )
}

/// A message as it travels in a gRPC body: uncompressed flag, length, protobuf.
fn grpc_frame(message: &impl Message) -> Vec<u8> {
    let payload = message.encode_to_vec();
    let length = u32::try_from(payload.len()).expect("test message fits a gRPC frame");
    [&[0u8][..], &length.to_be_bytes(), &payload].concat()
}

/// Asserts the custom metadata of [`failure`] reached the client.
fn assert_failure_metadata(status: &Status) {
    let check = status.metadata().get("x-trailer-check");
    assert_eq!(
        check.map(MetadataValue::as_bytes),
        Some(&b"yes"[..]),
        "custom status metadata reaches the client: {status:?}"
    );
}

/// Asserts a stream ended cleanly with `grpc-status: 0` in its trailers.
async fn assert_ends_ok(stream: &mut Streaming<EchoReply>) {
    let end = stream.message().await.expect("stream ends without error");
    assert!(end.is_none(), "unexpected extra reply {end:?}");
    let trailers = stream
        .trailers()
        .await
        .expect("trailers are readable")
        .expect("the stream ended with trailers");
    assert_eq!(
        trailers.get("grpc-status").map(MetadataValue::as_bytes),
        Some(&b"0"[..]),
        "trailers: {trailers:?}"
    );
}

// === tests ===

#[tokio::test]
async fn unary_call_round_trips_with_headers() {
    let upstream = start_upstream(false).await;
    let (sidecar, _exchanges) = start_sidecar(upstream.addr, "").await;
    within_deadline(async {
        let mut client = connect(&sidecar).await;
        let response = client
            .unary(request("hello", 0, 0))
            .await
            .expect("unary call succeeds through the proxy");
        let headers = response.metadata().clone();
        assert_eq!(response.into_inner(), reply("hello", 0));
        assert_eq!(
            headers.get("x-echo-header").map(MetadataValue::as_bytes),
            Some(&b"yes"[..]),
            "the upstream's response metadata reaches the client: {headers:?}"
        );
        assert!(
            headers.contains_key("x-request-id"),
            "the proxy tags the response with a request id: {headers:?}"
        );
    })
    .await;
    sidecar.shutdown().await;
}

#[tokio::test]
async fn server_stream_is_relayed_frame_by_frame() {
    let upstream = start_upstream(false).await;
    let (sidecar, _exchanges) = start_sidecar(upstream.addr, "").await;
    within_deadline(async {
        let mut client = connect(&sidecar).await;
        let mut stream = client
            .server_stream(request("tick", 4, 0))
            .await
            .expect("server-streaming call starts")
            .into_inner();
        // The upstream holds replies 1.. until the client has reply 0.
        let first = stream.message().await.expect("first reply arrives");
        assert_eq!(first, Some(reply("tick", 0)));
        upstream.release.notify_one();
        for index in 1..4 {
            let next = stream.message().await.expect("later replies arrive");
            assert_eq!(next, Some(reply("tick", index)));
        }
        assert_ends_ok(&mut stream).await;
    })
    .await;
    sidecar.shutdown().await;
}

#[tokio::test]
async fn bidi_replies_interleave_with_requests() {
    const ROUNDS: u32 = 5;
    let upstream = start_upstream(false).await;
    let (sidecar, _exchanges) = start_sidecar(upstream.addr, "").await;
    within_deadline(async {
        let mut client = connect(&sidecar).await;
        let (requests, outbound) = mpsc::channel(1);
        let ping = |i: u32| request(&format!("ping {i}"), 0, 0);
        requests
            .send(ping(0))
            .await
            .expect("queue the first request");
        let mut replies = client
            .bidi(ReceiverStream::new(outbound))
            .await
            .expect("bidi call starts")
            .into_inner();
        // Request i+1 is sent only after reply i arrived: neither direction
        // may wait for the other to end.
        for i in 0..ROUNDS {
            let next = replies.message().await.expect("reply arrives");
            assert_eq!(next, Some(reply(&format!("ping {i}"), i)));
            if i + 1 < ROUNDS {
                requests
                    .send(ping(i + 1))
                    .await
                    .expect("the call is still open");
            }
        }
        drop(requests);
        assert_ends_ok(&mut replies).await;
    })
    .await;
    sidecar.shutdown().await;
}

#[tokio::test]
async fn unary_errors_keep_code_message_and_metadata() {
    let upstream = start_upstream(false).await;
    let (sidecar, _exchanges) = start_sidecar(upstream.addr, "").await;
    within_deadline(async {
        let mut client = connect(&sidecar).await;
        for (code, expected) in [(5, Code::NotFound), (7, Code::PermissionDenied)] {
            let status = client
                .unary(request("nope", 0, code))
                .await
                .expect_err("the upstream fails this call");
            assert_eq!(status.code(), expected, "{status:?}");
            assert_eq!(status.message(), format!("{FAILURE_MESSAGE} {code}"));
            assert_failure_metadata(&status);
        }
    })
    .await;
    sidecar.shutdown().await;
}

#[tokio::test]
async fn stream_failing_midway_delivers_replies_then_trailer_status() {
    let upstream = start_upstream(false).await;
    let (sidecar, _exchanges) = start_sidecar(upstream.addr, "").await;
    within_deadline(async {
        let mut client = connect(&sidecar).await;
        let mut stream = client
            .server_stream(request("doomed", 2, 9))
            .await
            .expect("server-streaming call starts")
            .into_inner();
        let first = stream.message().await.expect("first reply arrives");
        assert_eq!(first, Some(reply("doomed", 0)));
        upstream.release.notify_one();
        let second = stream.message().await.expect("second reply arrives");
        assert_eq!(second, Some(reply("doomed", 1)));
        let status = stream
            .message()
            .await
            .expect_err("the stream ends with the upstream's error");
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        assert_eq!(status.message(), format!("{FAILURE_MESSAGE} 9"));
        // Sent after data frames, this metadata can only have come in trailers.
        assert_failure_metadata(&status);
    })
    .await;
    sidecar.shutdown().await;
}

#[tokio::test]
async fn unreachable_upstream_is_unavailable() {
    // Bound but never listening: connections are refused, and no other test
    // can take the port while the socket is held.
    let socket = TcpSocket::new_v4().expect("create a socket");
    socket
        .bind(([127, 0, 0, 1], 0).into())
        .expect("bind a free port");
    let closed = socket.local_addr().expect("bound port address");
    let (sidecar, mut exchanges) = start_sidecar(closed, "").await;
    within_deadline(async {
        let mut client = connect(&sidecar).await;
        let status = client
            .unary(request("anyone there?", 0, 0))
            .await
            .expect_err("nothing listens upstream");
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(
            status.message().contains("upstream") && status.message().contains(&closed.to_string()),
            "the message names the upstream: {status:?}"
        );
        let exchange = next_exchange(&mut exchanges).await;
        assert_eq!(exchange.proxy_error, Some("upstream_unreachable"));
    })
    .await;
    sidecar.shutdown().await;
    drop(socket);
}

#[tokio::test]
async fn slow_upstream_is_deadline_exceeded() {
    let upstream = start_upstream(true).await;
    let (sidecar, _exchanges) =
        start_sidecar(upstream.addr, "limits: { request_timeout: 300ms }").await;
    within_deadline(async {
        let mut client = connect(&sidecar).await;
        let started = Instant::now();
        let status = client
            .unary(request("take your time", 0, 0))
            .await
            .expect_err("the upstream never answers");
        assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
        assert!(
            status.message().contains("request_timeout"),
            "the message names the limit: {status:?}"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "the proxy gave up before request_timeout ({:?})",
            started.elapsed()
        );
        // The call did reach the upstream: this was slowness, not unreachability.
        upstream.unary_arrived.notified().await;
    })
    .await;
    sidecar.shutdown().await;
}

#[tokio::test]
async fn tee_copies_grpc_frames_and_trailers() {
    let upstream = start_upstream(false).await;
    let (sidecar, mut exchanges) = start_sidecar(upstream.addr, "").await;
    within_deadline(async {
        let mut client = connect(&sidecar).await;
        let sent = request("mirror me", 0, 0);
        let response = client
            .unary(sent.clone())
            .await
            .expect("unary call succeeds through the proxy");
        let request_id = response
            .metadata()
            .get("x-request-id")
            .and_then(|id| id.to_str().ok())
            .map(str::to_owned)
            .expect("the response carries the proxy's request id");

        let exchange = next_exchange(&mut exchanges).await;
        assert_eq!(exchange.request_id, request_id);
        assert_eq!(
            exchange.request.uri.path(),
            "/sidewatch.testing.v1.Echo/Unary"
        );
        assert_eq!(exchange.request_body.bytes.as_ref(), grpc_frame(&sent));
        assert!(
            exchange.request_body.complete,
            "{:?}",
            exchange.request_body
        );
        assert_eq!(
            exchange.response_body.bytes.as_ref(),
            grpc_frame(&reply("mirror me", 0))
        );
        assert!(
            exchange.response_body.complete,
            "{:?}",
            exchange.response_body
        );
        let trailers = exchange
            .response_trailers
            .as_ref()
            .expect("the tee kept the response trailers");
        assert_eq!(
            trailers.get("grpc-status"),
            Some(&b"0"[..]),
            "trailers: {trailers:?}"
        );
        assert_eq!(exchange.proxy_error, None);
    })
    .await;
    sidecar.shutdown().await;
}

#[tokio::test]
async fn max_body_caps_each_grpc_message_not_the_whole_stream() {
    const ROUNDS: u32 = 40;
    let upstream = start_upstream(false).await;
    // 40 messages of ~20 bytes are ~800 bytes in all, four times the limit.
    let (sidecar, _exchanges) = start_sidecar(upstream.addr, "limits: { max_body: 200 }\n").await;
    within_deadline(async {
        let mut client = connect(&sidecar).await;
        let (requests, outbound) = mpsc::channel(1);
        let ping = |i: u32| request(&format!("ping {i:04}"), 0, 0);
        requests
            .send(ping(0))
            .await
            .expect("queue the first request");
        let mut replies = client
            .bidi(ReceiverStream::new(outbound))
            .await
            .expect("bidi call starts")
            .into_inner();
        for i in 0..ROUNDS {
            let next = replies
                .message()
                .await
                .expect("a stream longer than max_body goes on");
            assert_eq!(next, Some(reply(&format!("ping {i:04}"), i)));
            if i + 1 < ROUNDS {
                requests
                    .send(ping(i + 1))
                    .await
                    .expect("the call is still open");
            }
        }
        drop(requests);
        assert_ends_ok(&mut replies).await;

        // One message over the limit is refused.
        let big = request(&"x".repeat(300), 0, 0);
        let status = client
            .unary(big)
            .await
            .expect_err("an oversized message is refused");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
        assert!(status.message().contains("max_body"), "{status:?}");
    })
    .await;
    sidecar.shutdown().await;
}
