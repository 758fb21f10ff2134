//! Sinks over https: a webhook whose receiver has a self-signed certificate
//! named in the sink's `ca_file` gets the signed notification; a sink that
//! does not trust that certificate refuses the handshake, retries and gives
//! up, counted, and the receiver never sees its request.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// An https receiver on loopback with a certificate for 127.0.0.1; each
/// request's path, headers and body arrive on the channel.
async fn tls_receiver(
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> (
    SocketAddr,
    mpsc::UnboundedReceiver<(String, http::HeaderMap, Bytes)>,
) {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .expect("server certificate");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                // A client that does not trust the certificate aborts here.
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(move |request: Request<Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = body.collect().await?.to_bytes();
                        let _ = tx.send((parts.uri.path().to_owned(), parts.headers, body));
                        Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_sinks_verify_the_receiver_against_ca_file() {
    let dir = temp_dir("https-sinks");
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("certificate");
    let ca_file = dir.join("receiver.pem");
    std::fs::write(&ca_file, certified.cert.pem()).expect("write certificate");
    let secret_file = dir.join("hook.secret");
    std::fs::write(&secret_file, "0123456789abcdef0123").expect("secret");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let (receiver, mut received) = tls_receiver(certified.cert.der().clone(), key).await;

    let model = ok_upstream("{}").await;
    let sidecar = sidecar(
        model.addr,
        &format!(
            "alerts:\n  evaluate_every: 50ms\n  resend_every: 1h\n  rules:\n\
             \x20   - {{ name: Slow, signal: latency.p99, above: 0 }}\n\
             \x20 sinks:\n\
             \x20   - {{ type: webhook, url: \"https://{receiver}/hook\", secret_file: \"{}\", ca_file: \"{}\" }}\n\
             \x20   - {{ type: alertmanager, url: \"https://{receiver}\", backoff: 10ms, max_attempts: 2 }}\n",
            secret_file.display(),
            ca_file.display()
        ),
    )
    .await;
    let metrics = traffic_until(&sidecar, |m| {
        notifications(m, "webhook", "sent") >= 1 && notifications(m, "alertmanager", "failed") >= 1
    })
    .await;
    assert_eq!(
        notifications(&metrics, "alertmanager", "sent"),
        0,
        "{metrics}"
    );
    assert_eq!(
        notifications(&metrics, "alertmanager", "retried"),
        1,
        "{metrics}"
    );

    let (path, headers, body) = tokio::time::timeout(DEADLINE, received.recv())
        .await
        .expect("in time")
        .expect("a delivery");
    assert_eq!(path, "/hook");
    assert!(headers.contains_key("x-sidewatch-signature"), "{headers:?}");
    let notification: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(
        notification["alert"]["labels"]["alertname"], "Slow",
        "{notification}"
    );
    // Nothing else got through: the untrusting sink never finished a handshake.
    assert!(received.try_recv().is_err());
    sidecar.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
