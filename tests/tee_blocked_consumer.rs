//! A consumer that blocks forever must not slow the proxy: 5,000 requests
//! keep throughput and p99 within 10% of a run with a no-op consumer, and
//! every exchange that did not fit the queue is counted as dropped.
//!
//! Both sidecars run side by side in this one process, and in each round
//! the two loads run at the same time, so whatever else the machine is
//! doing hits both alike; the comparison uses the median over rounds.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::{BodyExt, Full};
use sidewatch::mirror::{Consumer, Discard, DropReason};
use sidewatch::{Exchange, Sidecar};

const REQUESTS: usize = 5_000;
const CONCURRENCY: usize = 8;
const ROUNDS: usize = 5;
const QUEUE: usize = 64;

/// Blocks on its first exchange until the test drops the sender.
struct Blocked(std::sync::mpsc::Receiver<()>);

impl Consumer for Blocked {
    fn consume(&mut self, _exchange: Exchange) {
        let _ = self.0.recv();
    }
}

struct Run {
    throughput: f64,
    p99: Duration,
}

type TestClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

/// POSTs `body` and reads the whole 200 answer, which must come without
/// waiting for the consumer.
async fn post_ok(client: &TestClient, url: &http::Uri, body: &Bytes) {
    let request = Request::post(url.clone())
        .body(Full::new(body.clone()))
        .expect("request");
    let response = tokio::time::timeout(DEADLINE, client.request(request))
        .await
        .expect("the proxy answered without waiting for the consumer")
        .expect("response");
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.expect("body");
}

async fn load(sidecar: &Sidecar) -> Run {
    let client = http1_client::<Full<Bytes>>();
    let url: http::Uri = format!("http://{}/v2/models/m/infer", sidecar.proxy_addr())
        .parse()
        .expect("uri");
    let body = Bytes::from(vec![b'x'; 1024]);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (client, url, body, next) =
                (client.clone(), url.clone(), body.clone(), next.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < REQUESTS {
                    let t = Instant::now();
                    post_ok(&client, &url, &body).await;
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(REQUESTS);
    for task in tasks {
        latencies.extend(task.await.expect("load task"));
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Run {
        throughput: REQUESTS as f64 / elapsed.as_secs_f64(),
        p99: latencies[latencies.len() * 99 / 100],
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_consumer_does_not_slow_requests_and_drops_are_counted() {
    let upstream =
        ok_upstream(r#"{"outputs":[{"name":"p","shape":[1],"datatype":"FP32","data":[0.5]}]}"#)
            .await;
    let extra = format!("mirror: {{ queue: {QUEUE} }}\n");
    let noop = Sidecar::start(&config(upstream.addr, &extra), || Box::new(Discard))
        .await
        .expect("no-op sidecar");
    let (release, blocked_rx) = std::sync::mpsc::channel();
    let mut blocked_rx = Some(blocked_rx);
    let blocked = Sidecar::start(&config(upstream.addr, &extra), move || {
        Box::new(Blocked(blocked_rx.take().expect("one mirror worker")))
    })
    .await
    .expect("blocked sidecar");

    // Warm both: connection pools, allocator, the upstream.
    tokio::join!(load(&noop), load(&blocked));

    let (mut noop_runs, mut blocked_runs) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let (a, b) = tokio::join!(load(&noop), load(&blocked));
        noop_runs.push(a);
        blocked_runs.push(b);
    }
    let throughput = |runs: &[Run]| median(runs.iter().map(|r| r.throughput).collect());
    let p99 = |runs: &[Run]| median(runs.iter().map(|r| r.p99.as_secs_f64()).collect());
    let throughput_ratio = throughput(&blocked_runs) / throughput(&noop_runs);
    let p99_ratio = p99(&blocked_runs) / p99(&noop_runs);
    println!(
        "no-op: {:.0} req/s p99 {:.3} ms; blocked: {:.0} req/s p99 {:.3} ms; ratios: throughput {throughput_ratio:.3}, p99 {p99_ratio:.3}",
        throughput(&noop_runs),
        p99(&noop_runs) * 1e3,
        throughput(&blocked_runs),
        p99(&blocked_runs) * 1e3,
    );
    assert!(
        throughput_ratio >= 0.9,
        "blocked consumer cut throughput to {throughput_ratio:.3}x"
    );
    assert!(
        p99_ratio <= 1.1,
        "blocked consumer raised p99 to {p99_ratio:.3}x"
    );

    // One exchange is stuck in the consumer, QUEUE wait behind it, and
    // every other one was dropped and counted.
    let mirror = blocked.mirror_stats().expect("tee on").clone();
    let offered = ((ROUNDS + 1) * REQUESTS) as u64;
    // An offer counts itself before it settles: wait for every one to be
    // queued or dropped.
    wait_until("every exchange is queued or dropped", || {
        let mirror = mirror.clone();
        async move {
            mirror.offered() == offered
                && 1 + mirror.queue_depth() as u64 + mirror.dropped(DropReason::QueueFull)
                    == offered
        }
    })
    .await;
    assert_eq!(mirror.queue_depth(), QUEUE);
    assert_eq!(
        mirror.dropped(DropReason::QueueFull),
        offered - QUEUE as u64 - 1
    );
    let (_, metrics) = admin_get(&blocked, "/metrics").await;
    let line = format!(
        "sidewatch_mirror_dropped_total{{reason=\"queue_full\"}} {}",
        offered - QUEUE as u64 - 1
    );
    assert!(metrics.contains(&line), "{line} missing from\n{metrics}");

    drop(release);
    assert!(blocked.shutdown().await.mirror_flushed);
    noop.shutdown().await;
}

/// Says when it holds its first exchange, then blocks until released.
struct Holding {
    entered: std::sync::mpsc::Sender<()>,
    release: std::sync::mpsc::Receiver<()>,
}

impl Consumer for Holding {
    fn consume(&mut self, _exchange: Exchange) {
        let _ = self.entered.send(());
        let _ = self.release.recv();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_payloads_are_bounded_by_the_queue_byte_budget() {
    // 64 KiB request bodies against a 1 MiB budget: the count (4096) would
    // let 256 MiB queue up behind a blocked consumer; the budget about 15.
    const BODY: usize = 64 << 10;
    const BUDGET: usize = 1 << 20;
    const SENT: usize = 40;
    let upstream = ok_upstream(r#"{"ok":true}"#).await;
    let extra = "mirror: { queue: 4096, max_queue_bytes: 1MiB, max_payload: 128KiB }\n";
    let (entered_tx, entered) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel();
    let mut holding = Some(Holding {
        entered: entered_tx,
        release: release_rx,
    });
    let blocked = Sidecar::start(&config(upstream.addr, extra), move || {
        Box::new(holding.take().expect("one mirror worker"))
    })
    .await
    .expect("blocked sidecar");
    let client = http1_client::<Full<Bytes>>();
    let url: http::Uri = format!("http://{}/v2/models/m/infer", blocked.proxy_addr())
        .parse()
        .expect("uri");
    let body = Bytes::from(vec![b'x'; BODY]);
    let mirror = blocked.mirror_stats().expect("tee on").clone();
    let mut entered = Some(entered);
    for sent in 0..SENT {
        if sent == 1
            && let Some(entered) = entered.take()
        {
            // The worker holds the first exchange before the queue fills,
            // so what stays queued does not depend on when it woke.
            tokio::task::spawn_blocking(move || {
                entered
                    .recv_timeout(DEADLINE)
                    .expect("the consumer took the first exchange")
            })
            .await
            .expect("waiting task");
        }
        post_ok(&client, &url, &body).await;
    }
    // Every exchange settled: one held by the consumer, the rest queued or
    // dropped by bytes (an offer counts itself before it settles).
    wait_until("every exchange is queued or dropped", || {
        let mirror = mirror.clone();
        async move {
            mirror.offered() == SENT as u64
                && 1 + mirror.queue_depth() as u64 + mirror.dropped(DropReason::QueueBytes)
                    == SENT as u64
        }
    })
    .await;
    let queued = mirror.queue_depth();
    let bytes = mirror.queue_bytes();
    assert!(queued >= 1, "nothing queued");
    assert!(bytes <= BUDGET, "{bytes} bytes queued over the budget");
    assert!(
        bytes >= queued * BODY,
        "{bytes} bytes for {queued} exchanges"
    );
    // The next exchange would not have fit.
    assert!(
        bytes + bytes / queued > BUDGET,
        "{queued} exchanges, {bytes} bytes"
    );
    let dropped = mirror.dropped(DropReason::QueueBytes);
    assert_eq!(mirror.dropped(DropReason::QueueFull), 0);
    let (_, metrics) = admin_get(&blocked, "/metrics").await;
    for line in [
        format!("sidewatch_mirror_dropped_total{{reason=\"queue_bytes\"}} {dropped}"),
        format!("sidewatch_mirror_queue_bytes {bytes}"),
    ] {
        assert!(metrics.contains(&line), "{line} missing from\n{metrics}");
    }

    // Released, the worker drains the queue and gives every byte back.
    drop(release);
    wait_until("the queue drains", || {
        let mirror = mirror.clone();
        async move { mirror.queue_depth() == 0 && mirror.queue_bytes() == 0 }
    })
    .await;
    assert!(blocked.shutdown().await.mirror_flushed);
}
