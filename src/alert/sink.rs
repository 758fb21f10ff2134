//! Sinks: each a task draining its own bounded queue, retrying with
//! exponential backoff and jitter up to a give-up limit. The engine only
//! ever `try_send`s, so a slow or dead receiver costs dropped (and counted)
//! notifications, never a stalled evaluation.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http::header::CONTENT_TYPE;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use sha2::Sha256;
use tokio::sync::mpsc;

use super::config::{Secret, SinkConfig, SinkKind};
use super::engine::AlertRegistry;
use super::rules::{Notification, NotificationKind, rfc3339_string};

/// Header carrying the Unix time (seconds) the webhook body was signed at.
pub const TIMESTAMP_HEADER: &str = "x-sidewatch-timestamp";
/// Header carrying `v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
pub const SIGNATURE_HEADER: &str = "x-sidewatch-signature";

/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The sending half of one sink.
#[derive(Debug, Clone)]
pub struct SinkHandle {
    /// The `sink` label.
    pub name: &'static str,
    queue: mpsc::Sender<Notification>,
}

/// Why one delivery attempt failed.
#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    /// Worth retrying: connection trouble, timeouts, 5xx, 429.
    #[error("{0}")]
    Transient(String),
    /// Retrying will not help (a 4xx other than 429).
    #[error("{0}")]
    Permanent(String),
}

/// HTTP client of a sink: `http://` as is, `https://` over rustls.
type SinkClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

struct Sink {
    config: SinkConfig,
    client: SinkClient,
    generator_url: String,
    resend_every: Duration,
}

// === impl SinkHandle ===

impl SinkHandle {
    /// Starts the sink's task on the current runtime.
    pub fn start(
        config: SinkConfig,
        registry: Arc<AlertRegistry>,
        generator_url: String,
        resend_every: Duration,
    ) -> (SinkHandle, tokio::task::JoinHandle<()>) {
        let name = match config.kind {
            SinkKind::Alertmanager { .. } => "alertmanager",
            SinkKind::Webhook { .. } => "webhook",
            SinkKind::Log => "log",
        };
        let (queue, receiver) = mpsc::channel(config.queue);
        let sink = Sink {
            client: client(&config.tls),
            config,
            generator_url,
            resend_every,
        };
        let task = tokio::spawn(sink.run(name, receiver, registry));
        (SinkHandle { name, queue }, task)
    }

    /// Queues a notification; a full queue drops it. Returns whether it was queued.
    pub fn offer(&self, notification: Notification) -> bool {
        self.queue.try_send(notification).is_ok()
    }
}

/// A client for `http://` and `https://` URLs, the latter verified as
/// the sink's config says (`SinkConfig::tls`).
fn client(tls: &rustls::ClientConfig) -> SinkClient {
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls.clone())
        .https_or_http()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(connector)
}

// === impl Sink ===

impl Sink {
    async fn run(
        self,
        name: &'static str,
        mut receiver: mpsc::Receiver<Notification>,
        registry: Arc<AlertRegistry>,
    ) {
        while let Some(notification) = receiver.recv().await {
            // Only Alertmanager wants firing alerts repeated; for a webhook or
            // a log they would be duplicates.
            if notification.kind == NotificationKind::Refresh
                && !matches!(self.config.kind, SinkKind::Alertmanager { .. })
            {
                continue;
            }
            let mut attempt = 1;
            loop {
                match self.deliver(&notification).await {
                    Ok(()) => {
                        registry.count(name, "sent");
                        break;
                    }
                    Err(DeliveryError::Transient(error)) if attempt < self.config.max_attempts => {
                        registry.count(name, "retried");
                        let delay = backoff(self.config.backoff, attempt);
                        tracing::debug!(sink = name, attempt, %error, ?delay, "Alert notification failed; retrying.");
                        tokio::time::sleep(delay).await;
                        attempt += 1;
                    }
                    Err(error) => {
                        registry.count(name, "failed");
                        tracing::warn!(
                            sink = name,
                            attempt,
                            %error,
                            alertname = notification.alert.labels.get("alertname").map_or("", String::as_str),
                            "Alert notification given up."
                        );
                        break;
                    }
                }
            }
        }
    }

    async fn deliver(&self, notification: &Notification) -> Result<(), DeliveryError> {
        match &self.config.kind {
            SinkKind::Log => {
                let alert = &notification.alert;
                let alertname = alert.labels.get("alertname").map_or("", String::as_str);
                let summary = alert.annotations.get("summary").map_or("", String::as_str);
                tracing::warn!(
                    alertname,
                    status = ?notification.kind,
                    fingerprint = %alert.fingerprint,
                    value = alert.value,
                    labels = ?alert.labels,
                    summary,
                    "Alert."
                );
                Ok(())
            }
            SinkKind::Alertmanager { url } => {
                let body = alertmanager_body(
                    notification,
                    &self.generator_url,
                    self.resend_every,
                    SystemTime::now(),
                );
                let uri = join(url, "/api/v2/alerts")?;
                self.post(uri, Bytes::from(body.to_string()), &[]).await
            }
            SinkKind::Webhook { url, secret } => {
                let body = Bytes::from(webhook_body(notification).to_string());
                let timestamp = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                let signature = sign(secret, timestamp, &body);
                self.post(
                    url.clone(),
                    body,
                    &[
                        (TIMESTAMP_HEADER, timestamp.to_string()),
                        (SIGNATURE_HEADER, signature),
                    ],
                )
                .await
            }
        }
    }

    async fn post(
        &self,
        uri: Uri,
        body: Bytes,
        headers: &[(&'static str, String)],
    ) -> Result<(), DeliveryError> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(CONTENT_TYPE, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("sidewatch/", env!("CARGO_PKG_VERSION")),
            );
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| DeliveryError::Permanent(format!("cannot build the request: {e}")))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| DeliveryError::Transient(format!("request failed: {e}")))?;
            let status = response.status();
            // Read the body so the connection can be reused.
            let text = response
                .into_body()
                .collect()
                .await
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                .unwrap_or_default();
            classify(status, &text)
        };
        tokio::time::timeout(self.config.timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(DeliveryError::Transient(format!(
                    "no answer within {:?}",
                    self.config.timeout
                )))
            })
    }
}

fn classify(status: StatusCode, body: &str) -> Result<(), DeliveryError> {
    let detail = || {
        format!(
            "answered {status}: {}",
            body.chars().take(200).collect::<String>()
        )
    };
    if status.is_success() {
        Ok(())
    } else if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        Err(DeliveryError::Transient(detail()))
    } else {
        Err(DeliveryError::Permanent(detail()))
    }
}

fn join(base: &Uri, path: &str) -> Result<Uri, DeliveryError> {
    let base = base.to_string();
    format!("{}{path}", base.trim_end_matches('/'))
        .parse()
        .map_err(|e| DeliveryError::Permanent(format!("bad URL {base}{path}: {e}")))
}

/// The delay before attempt `attempt + 1`: `base · 2^(attempt-1)`, capped,
/// then drawn uniformly from its upper half so that many sidecars retrying
/// the same receiver spread out.
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let full = base
        .saturating_mul(1u32 << (attempt.saturating_sub(1)).min(20))
        .min(MAX_BACKOFF);
    full / 2 + full.mul_f64(fastrand::f64() / 2.0)
}

/// Alertmanager's `postableAlerts`: one alert. A firing alert gets an
/// `endsAt` four resend intervals ahead (as Prometheus does), so Alertmanager
/// resolves it by itself if sidewatch stops re-sending.
pub fn alertmanager_body(
    notification: &Notification,
    generator_url: &str,
    resend_every: Duration,
    now: SystemTime,
) -> serde_json::Value {
    let alert = &notification.alert;
    let ends_at = match notification.kind {
        NotificationKind::Resolved => alert.resolved_at.unwrap_or(now),
        NotificationKind::Firing | NotificationKind::Refresh => now + resend_every * 4,
    };
    json!([{
        "labels": alert.labels,
        "annotations": alert.annotations,
        "startsAt": rfc3339_string(alert.fired_at.unwrap_or(alert.active_at)),
        "endsAt": rfc3339_string(ends_at),
        "generatorURL": generator_url,
    }])
}

/// The webhook's JSON body. `id` is the same on every retry of one
/// notification, so a receiver can drop repeats.
pub fn webhook_body(notification: &Notification) -> serde_json::Value {
    let alert = &notification.alert;
    let at = match notification.kind {
        NotificationKind::Resolved => alert.resolved_at,
        _ => alert.fired_at,
    }
    .unwrap_or(alert.active_at);
    let millis = at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    json!({
        "id": format!("{}-{}-{millis}", alert.fingerprint, status(notification.kind)),
        "status": status(notification.kind),
        "alert": alert,
    })
}

fn status(kind: NotificationKind) -> &'static str {
    match kind {
        NotificationKind::Resolved => "resolved",
        NotificationKind::Firing | NotificationKind::Refresh => "firing",
    }
}

/// `v1=` and the hex HMAC-SHA256 of `"<timestamp>.<body>"` under `secret`.
pub fn sign(secret: &Secret, timestamp: u64, body: &[u8]) -> String {
    let mut mac = mac(secret);
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// What a receiver does: checks the signature in constant time and that the
/// timestamp is within `tolerance` of `now` (seconds since the epoch).
pub fn verify(
    secret: &Secret,
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now: u64,
    tolerance: Duration,
) -> bool {
    let Ok(at) = timestamp.parse::<u64>() else {
        return false;
    };
    if now.abs_diff(at) > tolerance.as_secs() {
        return false;
    }
    let Some(Ok(tag)) = signature.strip_prefix("v1=").map(hex::decode) else {
        return false;
    };
    let mut mac = mac(secret);
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

fn mac(secret: &Secret) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so this cannot fail.
    <Hmac<Sha256> as KeyInit>::new_from_slice(&secret.0)
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::rules::{Alert, AlertState};

    fn notification(kind: NotificationKind) -> Notification {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        Notification {
            kind,
            alert: Alert {
                fingerprint: "00112233aabbccdd".to_owned(),
                state: AlertState::Firing,
                labels: [("alertname".to_owned(), "X".to_owned())].into(),
                annotations: [("summary".to_owned(), "s".to_owned())].into(),
                value: 1.0,
                active_at: t0,
                fired_at: Some(t0 + Duration::from_secs(5)),
                resolved_at: (kind == NotificationKind::Resolved)
                    .then_some(t0 + Duration::from_secs(60)),
            },
        }
    }

    #[test]
    fn webhook_signatures_verify_and_reject_tampering_and_replay() {
        let secret = Secret(b"0123456789abcdef-secret".to_vec());
        let body = webhook_body(&notification(NotificationKind::Firing)).to_string();
        let signature = sign(&secret, 1_700_000_100, body.as_bytes());
        assert!(signature.starts_with("v1=") && signature.len() == 3 + 64);
        let ok = |ts: &str, sig: &str, body: &[u8], now: u64| {
            verify(&secret, ts, sig, body, now, Duration::from_secs(300))
        };
        assert!(ok("1700000100", &signature, body.as_bytes(), 1_700_000_160));
        // A changed byte, timestamp or key fails.
        let mut tampered = body.clone().into_bytes();
        tampered[10] ^= 1;
        assert!(!ok("1700000100", &signature, &tampered, 1_700_000_160));
        assert!(!ok(
            "1700000101",
            &signature,
            body.as_bytes(),
            1_700_000_160
        ));
        assert!(!verify(
            &Secret(b"another-secret-of-16+".to_vec()),
            "1700000100",
            &signature,
            body.as_bytes(),
            1_700_000_160,
            Duration::from_secs(300)
        ));
        // A captured request replayed later than the tolerance fails.
        assert!(!ok(
            "1700000100",
            &signature,
            body.as_bytes(),
            1_700_000_500
        ));
        assert!(!ok("1700000100", "v1=zz", body.as_bytes(), 1_700_000_160));
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        // Key "Jefe", data "what do ya want for nothing?".
        let mut mac = mac(&Secret(b"Jefe".to_vec()));
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn alertmanager_bodies_carry_times() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_030);
        let firing = alertmanager_body(
            &notification(NotificationKind::Firing),
            "http://h/v1/alerts",
            Duration::from_secs(60),
            now,
        );
        assert_eq!(firing[0]["startsAt"], "2023-11-14T22:13:25.000Z");
        assert_eq!(firing[0]["endsAt"], "2023-11-14T22:17:50.000Z");
        assert_eq!(firing[0]["labels"]["alertname"], "X");
        assert_eq!(firing[0]["generatorURL"], "http://h/v1/alerts");
        let resolved = alertmanager_body(
            &notification(NotificationKind::Resolved),
            "",
            Duration::from_secs(60),
            now,
        );
        assert_eq!(resolved[0]["endsAt"], "2023-11-14T22:14:20.000Z");
    }

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let base = Duration::from_millis(100);
        for attempt in 1..=12 {
            let full = (base * (1 << (attempt - 1))).min(MAX_BACKOFF);
            let d = backoff(base, attempt);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
    }
}
