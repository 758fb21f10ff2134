//! Ground truth for the demo's predictions: the traffic knows which species
//! each flower was drawn from, and a labeller posts it to sidewatch's
//! `POST /v1/feedback` a moment after the answer, as a labelling service
//! would (only sooner). sidewatch joins each label to its prediction by
//! request id, keeps a rolling accuracy and runs DDM on the errors.
//!
//! A label posted before the monitor has taken its prediction is answered
//! `unknown_request_id`; the labeller waits [`DELAY`] to make that rare and
//! retries what still comes back unknown.

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
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long after its answer a label is posted.
pub const DELAY: Duration = Duration::from_millis(200);
/// How often the labeller posts what has waited long enough, as one batch.
const EVERY: Duration = Duration::from_millis(100);
/// Posts of a label answered `unknown_request_id` before it is given up.
const ATTEMPTS: u32 = 10;
/// How long the final flush may take once the traffic stopped.
const FLUSH: Duration = Duration::from_secs(3);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The species of each row of one answered request.
#[derive(Debug, Clone, PartialEq)]
pub struct Labelled {
    /// The request's `x-request-id`.
    pub request_id: String,
    /// Per row of its batch, the species it was drawn from.
    pub species: Vec<usize>,
}

/// What became of the labels, for the summary.
#[derive(Debug, Default)]
pub struct LabelStats {
    /// Labels (rows) handed to the labeller.
    queued: AtomicU64,
    /// Joined to their prediction.
    joined: AtomicU64,
    /// Answered with anything but `joined` in the end, or never posted.
    lost: AtomicU64,
}

/// One label waiting to be posted.
#[derive(Debug)]
struct Pending {
    request_id: Arc<str>,
    row: usize,
    label: usize,
    due: Instant,
    attempts: u32,
}

// === impl LabelStats ===

impl LabelStats {
    /// Labels handed to the labeller.
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// Labels joined to their prediction.
    pub fn joined(&self) -> u64 {
        self.joined.load(Ordering::Relaxed)
    }

    /// Labels that were refused, or given up on.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}

/// Posts the labels arriving on `labels` to the admin server at `admin`
/// until the channel closes (the traffic stopped), then flushes the rest.
pub async fn run(
    admin: SocketAddr,
    mut labels: mpsc::UnboundedReceiver<Labelled>,
    stats: Arc<LabelStats>,
) -> anyhow::Result<()> {
    let uri: Uri = format!("http://{admin}/v1/feedback")
        .parse()
        .context("the admin address does not make a valid URI")?;
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let mut pending: Vec<Pending> = Vec::new();
    let mut ticks = tokio::time::interval(EVERY);
    let mut failures = 0u64;
    loop {
        tokio::select! {
            received = labels.recv() => match received {
                Some(labelled) => queue(&mut pending, labelled, &stats),
                None => break,
            },
            _ = ticks.tick() => {
                if let Err(error) = post_due(&client, &uri, &mut pending, Instant::now(), &stats).await {
                    failures += 1;
                    log_failure(failures, &error);
                }
            }
        }
    }
    // The traffic stopped: post everything, retrying unknowns a few times.
    let deadline = Instant::now() + FLUSH;
    while !pending.is_empty() && Instant::now() < deadline {
        ticks.tick().await;
        let now = Instant::now() + DELAY;
        if let Err(error) = post_due(&client, &uri, &mut pending, now, &stats).await {
            failures += 1;
            log_failure(failures, &error);
        }
    }
    stats
        .lost
        .fetch_add(pending.len() as u64, Ordering::Relaxed);
    Ok(())
}

fn queue(pending: &mut Vec<Pending>, labelled: Labelled, stats: &LabelStats) {
    let request_id: Arc<str> = Arc::from(labelled.request_id);
    let due = Instant::now() + DELAY;
    stats
        .queued
        .fetch_add(labelled.species.len() as u64, Ordering::Relaxed);
    pending.extend(
        labelled
            .species
            .into_iter()
            .enumerate()
            .map(|(row, label)| Pending {
                request_id: request_id.clone(),
                row,
                label,
                due,
                attempts: 0,
            }),
    );
}

/// Posts the labels due by `now` as one batch; those answered unknown stay
/// pending for another attempt, the rest are counted.
async fn post_due(
    client: &Client<HttpConnector, Full<Bytes>>,
    uri: &Uri,
    pending: &mut Vec<Pending>,
    now: Instant,
    stats: &LabelStats,
) -> anyhow::Result<()> {
    let (mut batch, waiting): (Vec<Pending>, Vec<Pending>) =
        pending.drain(..).partition(|p| p.due <= now);
    *pending = waiting;
    if batch.is_empty() {
        return Ok(());
    }
    let body: Vec<Value> = batch
        .iter()
        .map(|p| json!({"request_id": &*p.request_id, "row": p.row, "label": p.label}))
        .collect();
    let results = match post(client, uri, Value::from(body).to_string()).await {
        Ok(results) if results.len() == batch.len() => results,
        Ok(results) => {
            stats.lost.fetch_add(batch.len() as u64, Ordering::Relaxed);
            bail!(
                "{} labels posted, {} results received",
                batch.len(),
                results.len()
            );
        }
        Err(error) => {
            stats.lost.fetch_add(batch.len() as u64, Ordering::Relaxed);
            return Err(error);
        }
    };
    let mut retry = Vec::new();
    for (mut label, result) in batch.drain(..).zip(results) {
        match result["result"].as_str() {
            Some("joined") => {
                stats.joined.fetch_add(1, Ordering::Relaxed);
            }
            Some("unknown") if label.attempts + 1 < ATTEMPTS => {
                label.attempts += 1;
                label.due = now + EVERY;
                retry.push(label);
            }
            _ => {
                stats.lost.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    pending.append(&mut retry);
    Ok(())
}

/// Posts one batch and returns its per-item results.
async fn post(
    client: &Client<HttpConnector, Full<Bytes>>,
    uri: &Uri,
    body: String,
) -> anyhow::Result<Vec<Value>> {
    let request = Request::post(uri.clone())
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .context("cannot build the feedback request")?;
    let response = tokio::time::timeout(REQUEST_TIMEOUT, client.request(request))
        .await
        .context("no answer to the feedback in time")?
        .context("feedback request failed")?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .context("the feedback answer broke off")?
        .to_bytes();
    if !status.is_success() {
        let excerpt = String::from_utf8_lossy(&body[..body.len().min(200)]);
        bail!("feedback answered {status}: {excerpt}");
    }
    let mut answer: Value =
        serde_json::from_slice(&body).context("the feedback answer is not JSON")?;
    match answer["results"].take() {
        Value::Array(results) => Ok(results),
        _ => bail!("the feedback answer has no results"),
    }
}

fn log_failure(earlier: u64, error: &anyhow::Error) {
    if earlier <= 3 {
        tracing::warn!(error = format!("{error:#}"), "Demo labels not posted.");
    } else {
        tracing::debug!(error = format!("{error:#}"), "Demo labels not posted.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_of_a_request_gets_its_own_label() {
        let stats = LabelStats::default();
        let mut pending = Vec::new();
        let labelled = Labelled {
            request_id: "demo-1-7".into(),
            species: vec![2, 0],
        };
        queue(&mut pending, labelled, &stats);
        let rows: Vec<(&str, usize, usize)> = pending
            .iter()
            .map(|p| (&*p.request_id, p.row, p.label))
            .collect();
        assert_eq!(rows, [("demo-1-7", 0, 2), ("demo-1-7", 1, 0)]);
        assert_eq!(stats.queued(), 2);
    }
}
