//! The demo's traffic: a few keep-alive clients sending iris-like rows to
//! the model through the sidecar at a steady rate, one phase after another,
//! with an injected outlier now and then (see `outlier.rs`). Each answered
//! flower's species goes to the labeller, which posts it as ground truth.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use super::labels::Labelled;
use super::model::{CLASSES, FEATURES, MODEL_NAME};
use super::outlier::Outlier;
use super::phase::{self, Phase};

/// Concurrent clients, each with its own connection and request loop.
pub const CLIENTS: usize = 8;
/// Requests per second over all clients: a steady service load that is
/// easy to follow, not a benchmark.
pub const RATE: f64 = 200.0;
/// Makes every run send the same rows.
const SEED: u64 = 0x1a15_5eed;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Share of requests that carry a small batch instead of a single row.
const BATCH_SHARE: f64 = 0.15;
const MAX_BATCH: usize = 4;

/// Counters the clients write and the live view reads.
#[derive(Debug, Default)]
pub struct TrafficStats {
    /// Finished requests, successful or not.
    requests: AtomicU64,
    errors: AtomicU64,
    /// Rows in successful requests.
    rows: AtomicU64,
    predicted: [AtomicU64; CLASSES.len()],
    /// Predictions equal to the species the row was drawn from.
    agreed: AtomicU64,
    /// Rows of flowers, with a species to agree with.
    flowers: AtomicU64,
    /// Injected rows answered, per [`Outlier::ALL`].
    injected: [AtomicU64; Outlier::ALL.len()],
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Rows of one request and the species each was drawn from.
#[derive(Debug, Clone, PartialEq)]
struct Batch {
    /// Rows in `values`.
    rows: usize,
    /// The species of each row; empty for an injected row.
    species: Vec<usize>,
    values: Vec<f64>,
    /// What was injected instead of flowers, if anything.
    outlier: Option<Outlier>,
}

// === impl TrafficStats ===

impl TrafficStats {
    /// Finished requests, successful or not.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Requests that failed or got an unusable answer.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Rows answered.
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    /// Predictions per class, in [`CLASSES`] order.
    pub fn predicted(&self) -> [u64; CLASSES.len()] {
        std::array::from_fn(|i| self.predicted[i].load(Ordering::Relaxed))
    }

    /// Predictions that matched the species the row was drawn from.
    pub fn agreed(&self) -> u64 {
        self.agreed.load(Ordering::Relaxed)
    }

    /// Rows of flowers answered (rows that are not injected outliers).
    pub fn flowers(&self) -> u64 {
        self.flowers.load(Ordering::Relaxed)
    }

    /// Injected rows answered, per [`Outlier::ALL`].
    pub fn injected(&self) -> [u64; Outlier::ALL.len()] {
        std::array::from_fn(|i| self.injected[i].load(Ordering::Relaxed))
    }

    fn record_success(&self, batch: &Batch, predicted: &[usize]) {
        for &class in predicted {
            self.predicted[class].fetch_add(1, Ordering::Relaxed);
        }
        for (&truth, &class) in batch.species.iter().zip(predicted) {
            if truth == class {
                self.agreed.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(kind) = batch.outlier {
            let i = Outlier::ALL.iter().position(|k| *k == kind).unwrap_or(0);
            self.injected[i].fetch_add(1, Ordering::Relaxed);
        }
        self.flowers
            .fetch_add(batch.species.len() as u64, Ordering::Relaxed);
        self.rows.fetch_add(batch.rows as u64, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Returns how many errors came before this one.
    fn record_error(&self) -> u64 {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.errors.fetch_add(1, Ordering::Relaxed)
    }
}

/// Sends infer requests through the proxy at `proxy` for `duration`, and
/// the species of every flower answered to `labels`.
pub async fn run(
    proxy: SocketAddr,
    duration: Duration,
    stats: Arc<TrafficStats>,
    labels: mpsc::UnboundedSender<Labelled>,
) -> anyhow::Result<()> {
    let uri: Uri = format!("http://{proxy}/v2/models/{MODEL_NAME}/infer")
        .parse()
        .context("the proxy address does not make a valid URI")?;
    let start = Instant::now();
    // A JoinSet aborts the clients when this future is dropped or aborted
    // (Ctrl-C in the demo), where plain spawned tasks would keep sending.
    let mut clients = JoinSet::new();
    for id in 0..CLIENTS {
        clients.spawn(send_loop(
            id,
            http_client(),
            uri.clone(),
            start,
            duration,
            stats.clone(),
            labels.clone(),
        ));
    }
    while let Some(joined) = clients.join_next().await {
        joined.context("a traffic client failed")?;
    }
    Ok(())
}

/// One client's own pool, so that each client holds its own keep-alive
/// connection to the proxy as separate callers would.
fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_max_idle_per_host(1)
        .build(connector)
}

async fn send_loop(
    id: usize,
    client: HttpClient,
    uri: Uri,
    start: Instant,
    duration: Duration,
    stats: Arc<TrafficStats>,
    labels: mpsc::UnboundedSender<Labelled>,
) {
    let mut rng = fastrand::Rng::with_seed(SEED.wrapping_add(id as u64));
    let period = Duration::from_secs_f64(CLIENTS as f64 / RATE);
    // Staggered so that the clients do not fire in lockstep.
    let first = start + period.mul_f64(id as f64 / CLIENTS as f64);
    let mut ticks = tokio::time::interval_at(first, period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let deadline = start + duration;
    for sequence in 0u64.. {
        if ticks.tick().await >= deadline || Instant::now() >= deadline {
            break;
        }
        let phase = phase::phase_at(start.elapsed(), duration);
        let outlier = Outlier::scheduled(id, sequence);
        let (batch, request_id) = match outlier {
            Some(kind) => (
                sample_outlier(&mut rng, kind, phase),
                format!("demo-{id}-{sequence}-{}", kind.name()),
            ),
            None => (
                sample_batch(&mut rng, phase),
                format!("demo-{id}-{sequence}"),
            ),
        };
        let body = request_body(&request_id, &batch);
        let call = call(&client, &uri, &request_id, body);
        let outcome = match tokio::time::timeout(REQUEST_TIMEOUT, call).await {
            Ok(outcome) => outcome,
            Err(_) => Err(anyhow::anyhow!("no response within {REQUEST_TIMEOUT:?}")),
        };
        match outcome {
            Ok(predicted) if predicted.len() == batch.rows => {
                stats.record_success(&batch, &predicted);
                if !batch.species.is_empty() {
                    // Fails only once the labeller is gone, when no one wants labels.
                    let _ = labels.send(Labelled {
                        request_id,
                        species: batch.species,
                    });
                }
            }
            Ok(predicted) => {
                let error = format!(
                    "{} rows sent, {} predictions received",
                    batch.rows,
                    predicted.len()
                );
                log_error(stats.record_error(), &error);
            }
            Err(error) => log_error(stats.record_error(), &format!("{error:#}")),
        }
    }
}

fn log_error(earlier: u64, error: &str) {
    // The first few explain the problem; the rest would only bury the live view.
    if earlier < 3 {
        tracing::warn!(%error, "Demo request failed.");
    } else {
        tracing::debug!(%error, "Demo request failed.");
    }
}

fn sample_batch(rng: &mut fastrand::Rng, phase: &Phase) -> Batch {
    let rows = if rng.f64() < BATCH_SHARE {
        rng.usize(2..=MAX_BATCH)
    } else {
        1
    };
    let mut batch = Batch {
        rows,
        species: Vec::with_capacity(rows),
        values: Vec::with_capacity(rows * FEATURES.len()),
        outlier: None,
    };
    let mut row = Vec::with_capacity(FEATURES.len());
    for _ in 0..rows {
        batch.species.push(phase::sample_row(rng, phase, &mut row));
        batch.values.extend_from_slice(&row);
    }
    batch
}

/// One injected row of `kind`, alone in its request.
fn sample_outlier(rng: &mut fastrand::Rng, kind: Outlier, phase: &Phase) -> Batch {
    let mut values = Vec::with_capacity(FEATURES.len());
    kind.sample(rng, phase, &mut values);
    Batch {
        rows: 1,
        species: Vec::new(),
        values,
        outlier: Some(kind),
    }
}

fn request_body(id: &str, batch: &Batch) -> Bytes {
    let body = serde_json::json!({
        "id": id,
        "inputs": [{
            "name": "input",
            "shape": [batch.rows, FEATURES.len()],
            "datatype": "FP32",
            "data": batch.values,
        }],
    });
    Bytes::from(body.to_string())
}

/// Sends one infer request under `request_id` (the id labels are joined by).
async fn call(
    client: &HttpClient,
    uri: &Uri,
    request_id: &str,
    body: Bytes,
) -> anyhow::Result<Vec<usize>> {
    let request = Request::post(uri.clone())
        .header(CONTENT_TYPE, "application/json")
        .header("x-request-id", request_id)
        .body(Full::new(body))
        .context("cannot build the request")?;
    let response = client.request(request).await.context("request failed")?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .context("the response body broke off")?
        .to_bytes();
    if !status.is_success() {
        let excerpt = String::from_utf8_lossy(&body[..body.len().min(200)]);
        bail!("status {status}: {excerpt}");
    }
    predicted_classes(&body)
}

/// The `predicted_class` output of an infer response.
fn predicted_classes(body: &[u8]) -> anyhow::Result<Vec<usize>> {
    #[derive(Deserialize)]
    struct Response {
        outputs: Vec<Output>,
    }
    #[derive(Deserialize)]
    struct Output {
        name: String,
        data: serde_json::Value,
    }
    let response: Response =
        serde_json::from_slice(body).context("the response is not an infer response")?;
    let output = response
        .outputs
        .into_iter()
        .find(|o| o.name == "predicted_class")
        .context("the response has no predicted_class output")?;
    let classes: Vec<usize> =
        serde_json::from_value(output.data).context("predicted_class is not a list of classes")?;
    if let Some(bad) = classes.iter().find(|&&c| c >= CLASSES.len()) {
        bail!("predicted class {bad} does not exist");
    }
    Ok(classes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::phase::{BASELINE, DRIFT};

    #[test]
    fn the_same_seed_sends_the_same_rows() {
        let mut a = fastrand::Rng::with_seed(7);
        let mut b = fastrand::Rng::with_seed(7);
        for phase in [&BASELINE, &DRIFT] {
            for _ in 0..20 {
                assert_eq!(sample_batch(&mut a, phase), sample_batch(&mut b, phase));
            }
        }
    }

    #[test]
    fn some_requests_carry_a_small_batch() {
        let mut rng = fastrand::Rng::with_seed(1);
        let mut batched = 0;
        for _ in 0..5000 {
            let batch = sample_batch(&mut rng, &BASELINE);
            assert!((1..=MAX_BATCH).contains(&batch.species.len()));
            assert_eq!(batch.values.len(), batch.species.len() * FEATURES.len());
            batched += usize::from(batch.species.len() > 1);
        }
        assert!((500..1000).contains(&batched), "{batched} batched requests");
    }

    #[test]
    fn predictions_are_read_from_the_response() {
        let body = br#"{"model_name":"iris","outputs":[{"name":"probabilities","data":[0.9,0.1,0.0]},{"name":"predicted_class","data":[0,2]}]}"#;
        assert_eq!(predicted_classes(body).expect("valid"), vec![0, 2]);
        assert!(predicted_classes(br#"{"outputs":[]}"#).is_err());
        assert!(
            predicted_classes(br#"{"outputs":[{"name":"predicted_class","data":[3]}]}"#).is_err()
        );
        assert!(predicted_classes(b"<html>").is_err());
    }
}
