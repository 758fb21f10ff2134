//! The embedded model server: the iris model behind the KServe v2 (Open
//! Inference Protocol) REST endpoints on HTTP/1.1, so the demo needs
//! nothing installed. Integration tests can use it as a real upstream.

mod iris;
mod v2;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use iris::{CLASSES, FEATURES};
pub use v2::{MODEL_NAME, served_probabilities};

/// Largest infer body accepted; a few thousand rows fit comfortably.
const MAX_BODY: usize = 1 << 20;
/// How long open connections get to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(2);

/// A running model server.
#[derive(Debug)]
pub struct ModelServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// The endpoints, after the path has been matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Live,
    Ready,
    Metadata,
    ModelReady,
    Infer,
}

// === impl ModelServer ===

impl ModelServer {
    /// Serves on `listener` until [`ModelServer::shutdown`] (or until the
    /// handle is dropped).
    pub fn start(listener: TcpListener) -> std::io::Result<ModelServer> {
        let addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(serve(listener, stopped));
        tracing::info!(%addr, model = MODEL_NAME, "Model server started.");
        Ok(ModelServer { addr, stop, task })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and lets open connections finish for a moment.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(error) = self.task.await {
            tracing::warn!(%error, "Model server task failed.");
        }
    }
}

async fn serve(listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        // Out of file descriptors and similar: pause instead of spinning.
                        tracing::warn!(%error, "Model server accept failed.");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .serve_connection(TokioIo::new(stream), service_fn(handle));
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%error, "Model server connection ended with an error.");
                    }
                });
            }
            // A dropped handle stops the server too.
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("Model server connections were still open at shutdown.");
    }
}

async fn handle(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let Some(route) = route(parts.uri.path()) else {
        return Ok(error(
            StatusCode::NOT_FOUND,
            &format!("No endpoint at {}.", parts.uri.path()),
        ));
    };
    let allowed = if route == Route::Infer {
        Method::POST
    } else {
        Method::GET
    };
    if parts.method != allowed {
        let mut response = error(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("{} takes {allowed}.", parts.uri.path()),
        );
        if let Ok(value) = HeaderValue::from_str(allowed.as_str()) {
            response.headers_mut().insert(ALLOW, value);
        }
        return Ok(response);
    }
    Ok(match route {
        Route::Live => json(StatusCode::OK, r#"{"live":true}"#),
        Route::Ready | Route::ModelReady => json(StatusCode::OK, r#"{"ready":true}"#),
        Route::Metadata => json(StatusCode::OK, v2::metadata().to_string()),
        Route::Infer => infer(body).await,
    })
}

/// `/v2/health/{live,ready}` and `/v2/models/iris[/versions/1][/ready|/infer]`.
fn route(path: &str) -> Option<Route> {
    match path {
        "/v2/health/live" => return Some(Route::Live),
        "/v2/health/ready" => return Some(Route::Ready),
        _ => {}
    }
    let rest = path.strip_prefix("/v2/models/")?.strip_prefix(MODEL_NAME)?;
    let rest = rest
        .strip_prefix("/versions/")
        .and_then(|r| r.strip_prefix(v2::MODEL_VERSION))
        .unwrap_or(rest);
    match rest {
        "" => Some(Route::Metadata),
        "/ready" => Some(Route::ModelReady),
        "/infer" => Some(Route::Infer),
        _ => None,
    }
}

async fn infer(body: Incoming) -> Response<Full<Bytes>> {
    let bytes = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("The body is larger than {MAX_BODY} bytes."),
            );
        }
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("The body could not be read: {e}."),
            );
        }
    };
    let request = match v2::parse_request(&bytes) {
        Ok(request) => request,
        Err(refused) => {
            tracing::debug!(error = %refused, "Refused an infer request.");
            return error(StatusCode::BAD_REQUEST, &refused.to_string());
        }
    };
    match v2::response_body(&request) {
        Ok(body) => json(StatusCode::OK, body),
        Err(e) => {
            tracing::warn!(error = %e, "Could not encode an infer response.");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The response could not be encoded.",
            )
        }
    }
}

fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The protocol's error document: `{"error": "<sentence>"}`.
fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json(status, serde_json::json!({ "error": message }).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_endpoints() {
        assert_eq!(route("/v2/health/live"), Some(Route::Live));
        assert_eq!(route("/v2/health/ready"), Some(Route::Ready));
        assert_eq!(route("/v2/models/iris"), Some(Route::Metadata));
        assert_eq!(route("/v2/models/iris/versions/1"), Some(Route::Metadata));
        assert_eq!(route("/v2/models/iris/ready"), Some(Route::ModelReady));
        assert_eq!(route("/v2/models/iris/infer"), Some(Route::Infer));
        assert_eq!(
            route("/v2/models/iris/versions/1/infer"),
            Some(Route::Infer)
        );
        assert_eq!(route("/v2/models/iris/versions/2/infer"), None);
        assert_eq!(route("/v2/models/irises/infer"), None);
        assert_eq!(route("/v2/models/other/infer"), None);
        assert_eq!(route("/"), None);
    }

    #[tokio::test]
    async fn the_server_answers_over_http() {
        use hyper_util::client::legacy::Client;
        use hyper_util::rt::TokioExecutor;

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let server = ModelServer::start(listener).expect("start");
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let base = format!("http://{}", server.addr());
        let call = |method: Method, path: &str, body: &'static str| {
            let request = Request::builder()
                .method(method)
                .uri(format!("{base}{path}"))
                .body(Full::new(Bytes::from_static(body.as_bytes())))
                .expect("request");
            let client = client.clone();
            async move {
                let response = client.request(request).await.expect("response");
                let status = response.status();
                let body = response.into_body().collect().await.expect("body");
                let doc: serde_json::Value =
                    serde_json::from_slice(&body.to_bytes()).expect("JSON body");
                (status, doc)
            }
        };

        let (status, doc) = call(Method::GET, "/v2/models/iris", "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(doc["inputs"][0]["shape"], serde_json::json!([-1, 4]));
        let (status, doc) = call(
            Method::POST,
            "/v2/models/iris/infer",
            r#"{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[[5.1,3.5,1.4,0.2]]}]}"#,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(doc["outputs"][1]["data"], serde_json::json!([0]));
        let (status, doc) = call(Method::POST, "/v2/models/iris/infer", "{").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(doc["error"].is_string(), "{doc}");
        let (status, _) = call(Method::GET, "/v2/models/iris/infer", "").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        let (status, doc) = call(Method::GET, "/nowhere", "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(doc["error"].is_string(), "{doc}");
        server.shutdown().await;
    }
}
