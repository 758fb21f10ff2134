//! Latency recording that stays off the hot path's critical section: each
//! thread writes to its own stripe (an uncontended mutex), and readers merge
//! the stripes into quantiles (hdrhistogram) and Prometheus buckets.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

/// Upper bounds of the Prometheus buckets, in seconds: fine at the low end
/// for proxy overhead, wide enough for slow model servers.
pub const BUCKETS: [f64; 21] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Longest latency the quantile histograms resolve (longer ones saturate).
const MAX_MICROS: u64 = 3_600_000_000;

static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static STRIPE: usize = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed);
}

/// One request's latencies.
#[derive(Debug, Clone, Copy)]
pub struct LatencySample {
    /// From the request head arriving to the response's last byte.
    pub request: Duration,
    /// Time spent in the upstream call; `None` when the upstream was not reached.
    pub upstream: Option<Duration>,
    /// The proxy's own handling time (see `sidewatch_proxy_overhead_seconds`).
    pub overhead: Duration,
}

/// Latency distributions of the proxy, striped for contention-free recording.
#[derive(Debug)]
pub struct LatencyStats {
    stripes: Box<[Mutex<Stripe>]>,
}

/// A merged view of one latency series.
#[derive(Debug, Clone)]
pub struct Series {
    hdr: Histogram<u64>,
    buckets: [u64; BUCKETS.len()],
    sum_micros: u64,
}

/// The three series at one moment.
#[derive(Debug, Clone)]
pub struct LatencySnapshot {
    /// Whole request, client's view.
    pub request: Series,
    /// The upstream call.
    pub upstream: Series,
    /// The proxy's own handling time.
    pub overhead: Series,
}

#[derive(Debug)]
struct Stripe {
    request: Series,
    upstream: Series,
    overhead: Series,
}

// === impl LatencyStats ===

impl LatencyStats {
    /// Creates enough stripes that threads rarely share one.
    pub fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let stripes = (cores * 2).clamp(4, 32);
        LatencyStats {
            stripes: (0..stripes).map(|_| Mutex::new(Stripe::new())).collect(),
        }
    }

    /// How many stripes there are.
    pub fn stripe_count(&self) -> usize {
        self.stripes.len()
    }

    /// The calling thread's stripe.
    pub fn stripe_index(&self) -> usize {
        STRIPE.with(|i| *i) % self.stripes.len()
    }

    /// Records one request.
    pub fn record(&self, sample: LatencySample) {
        let index = self.stripe_index();
        // A poisoned stripe only means a panic elsewhere mid-record; the
        // counts are still usable, so keep recording into it.
        let mut stripe = match self.stripes[index].lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        stripe.request.record(sample.request);
        if let Some(upstream) = sample.upstream {
            stripe.upstream.record(upstream);
            stripe
                .overhead
                .record(sample.request.saturating_sub(upstream));
        } else {
            stripe.overhead.record(sample.request);
        }
    }

    /// Merges all stripes.
    pub fn snapshot(&self) -> LatencySnapshot {
        let mut merged = Stripe::new();
        for stripe in self.stripes.iter() {
            let stripe = match stripe.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            merged.request.merge(&stripe.request);
            merged.upstream.merge(&stripe.upstream);
            merged.overhead.merge(&stripe.overhead);
        }
        LatencySnapshot {
            request: merged.request,
            upstream: merged.upstream,
            overhead: merged.overhead,
        }
    }
}

impl Default for LatencyStats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stripe {
    fn new() -> Self {
        Stripe {
            request: Series::new(),
            upstream: Series::new(),
            overhead: Series::new(),
        }
    }
}

// === impl Series ===

impl Series {
    fn new() -> Self {
        // Three significant digits from 1 µs to an hour; the bounds are
        // constants, so construction cannot fail.
        let hdr = Histogram::new_with_bounds(1, MAX_MICROS, 3)
            .unwrap_or_else(|_| unreachable!("constant histogram bounds are valid"));
        Series {
            hdr,
            buckets: [0; BUCKETS.len()],
            sum_micros: 0,
        }
    }

    fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.hdr.saturating_record(micros.max(1));
        let seconds = latency.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&le| seconds <= le) {
            self.buckets[i] += 1;
        }
        self.sum_micros = self.sum_micros.saturating_add(micros);
    }

    fn merge(&mut self, other: &Series) {
        // Both histograms share bounds, so adding cannot fail.
        let _ = self.hdr.add(&other.hdr);
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine += theirs;
        }
        self.sum_micros = self.sum_micros.saturating_add(other.sum_micros);
    }

    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.hdr.len()
    }

    /// Sum of recorded values in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_micros as f64 / 1e6
    }

    /// The value at quantile `q` (0..=1) in seconds; 0 when empty.
    pub fn quantile_seconds(&self, q: f64) -> f64 {
        if self.hdr.is_empty() {
            return 0.0;
        }
        self.hdr.value_at_quantile(q) as f64 / 1e6
    }

    /// The largest recorded value in seconds.
    pub fn max_seconds(&self) -> f64 {
        self.hdr.max() as f64 / 1e6
    }

    /// Per-bucket counts `(le, count)` ending with `+Inf`, in the form the
    /// encoder expects: it accumulates them into Prometheus' cumulative `le`
    /// series itself.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        let mut out: Vec<(f64, u64)> = BUCKETS.iter().copied().zip(self.buckets).collect();
        let bounded: u64 = self.buckets.iter().sum();
        out.push((f64::INFINITY, self.count().saturating_sub(bounded)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_buckets_agree_with_what_was_recorded() {
        let stats = LatencyStats::new();
        for ms in 1..=100u64 {
            stats.record(LatencySample {
                request: Duration::from_millis(ms),
                upstream: Some(Duration::from_millis(ms) - Duration::from_micros(50)),
                overhead: Duration::from_micros(50),
            });
        }
        let snap = stats.snapshot();
        assert_eq!(snap.request.count(), 100);
        let p50 = snap.request.quantile_seconds(0.5);
        assert!((p50 - 0.050).abs() < 0.0005, "p50 {p50}");
        let overhead = snap.overhead.quantile_seconds(0.99);
        assert!(
            (overhead - 0.000_05).abs() < 0.000_002,
            "overhead {overhead}"
        );
        let buckets = snap.request.buckets();
        let up_to_10ms: u64 = buckets
            .iter()
            .filter(|(le, _)| *le <= 0.01)
            .map(|b| b.1)
            .sum();
        assert_eq!(up_to_10ms, 10);
        assert_eq!(buckets.iter().map(|b| b.1).sum::<u64>(), 100);
        assert!((snap.request.sum_seconds() - 5.05).abs() < 1e-9);
    }

    #[test]
    fn stripes_merge_across_threads() {
        let stats = std::sync::Arc::new(LatencyStats::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let stats = stats.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        stats.record(LatencySample {
                            request: Duration::from_micros(200),
                            upstream: None,
                            overhead: Duration::from_micros(200),
                        });
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("recorder thread");
        }
        assert_eq!(stats.snapshot().request.count(), 4000);
    }
}
