//! The join store of one model: the predictions awaiting their ground
//! truth, keyed by request id and row, with bounded memory.
//!
//! Pending predictions leave three ways: feedback joins them,
//! `feedback.ttl` expires them, or a full store (`feedback.capacity`)
//! evicts the oldest. The way each left is remembered, so that a later
//! feedback for the same id is answered 409 (already joined) or 410
//! (expired, evicted) rather than 404, for as long as that memory holds it
//! (the latest `feedback.capacity` settled predictions).
//!
//! The shard records every prediction, so the layout is chosen for its
//! path. Entries are keyed by a 64-bit fingerprint of (request id, row),
//! SipHash with a per-store random key, not by the id itself: the strings
//! are neither kept alive nor read again when an entry ages out, which
//! keeps a record at one hash and about three cache misses once the store
//! is larger than the CPU's caches. Two ids sharing a fingerprint (odds
//! about `n / 2⁶⁴` per lookup, and not steerable without the key) would
//! have one's feedback joined to the other. Pending and settled entries
//! share one map, so settling one changes its state in place; two queues
//! of `(fingerprint, sequence)` keep arrival and settling order. Positions
//! whose entry has since changed carry an old sequence number and are
//! skipped; a queue past twice the capacity is compacted (amortised O(1)).

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A prediction as feedback is compared with it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Predicted {
    /// A classifier's predicted class index.
    Class(u32),
    /// A regression output.
    Value(f64),
}

/// Which prediction a feedback names: a request id and the row within its
/// batch (0 for single-row requests).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// The request's `x-request-id`.
    pub request_id: Arc<str>,
    /// The row within the request's batch.
    pub row: u32,
}

/// What happened to a prediction that is no longer pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Feedback was joined to it.
    Joined,
    /// It waited longer than `feedback.ttl`.
    Expired,
    /// The store was full and it was the oldest.
    Evicted,
}

/// The answer of [`JoinStore::take`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Lookup {
    /// The prediction, now joined, and when it was made.
    Found(Predicted, SystemTime),
    /// The prediction is pending but `accept` refused it; it stays.
    Refused(Predicted),
    /// No longer pending, and why.
    Settled(Settled),
    /// Never seen, or forgotten.
    Unknown,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Changes whenever the entry does, so queue positions can tell
    /// whether they still describe it.
    seq: u64,
    /// Milliseconds since the epoch when the prediction was made.
    at_ms: u64,
    predicted: Predicted,
    /// `None` while pending.
    settled: Option<Settled>,
}

/// A hasher for keys that already are uniformly random 64-bit values.
#[derive(Debug, Default)]
struct Fingerprint(u64);

type Entries = HashMap<u64, Entry, BuildHasherDefault<Fingerprint>>;

/// Pending predictions and recently settled ones of one model.
#[derive(Debug)]
pub struct JoinStore {
    ttl_ms: u64,
    capacity: usize,
    keys: RandomState,
    entries: Entries,
    /// Pending entries in arrival order.
    arrivals: VecDeque<(u64, u64)>,
    /// Settled entries in settling order.
    departures: VecDeque<(u64, u64)>,
    pending: usize,
    settled: usize,
    next_seq: u64,
    /// Entries expired and evicted so far.
    expired: u64,
    evicted: u64,
}

// === impl Fingerprint ===

impl Hasher for Fingerprint {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; this keeps other callers correct.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

// === impl JoinStore ===

impl JoinStore {
    /// An empty store keeping at most `capacity` pending predictions for
    /// `ttl` each.
    pub fn new(ttl: Duration, capacity: usize) -> JoinStore {
        JoinStore {
            ttl_ms: ttl.as_millis().try_into().unwrap_or(u64::MAX),
            capacity: capacity.max(1),
            keys: RandomState::new(),
            entries: Entries::default(),
            arrivals: VecDeque::new(),
            departures: VecDeque::new(),
            pending: 0,
            settled: 0,
            next_seq: 0,
            expired: 0,
            evicted: 0,
        }
    }

    /// Predictions awaiting feedback.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Predictions expired and evicted since start.
    pub fn expired_evicted(&self) -> (u64, u64) {
        (self.expired, self.evicted)
    }

    fn fingerprint(&self, request_id: &str, row: u32) -> u64 {
        let mut hasher = self.keys.build_hasher();
        hasher.write(request_id.as_bytes());
        hasher.write_u32(row);
        hasher.finish()
    }

    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Records a prediction made at `at`. A key recorded again (a client
    /// reusing its request id) replaces the earlier prediction.
    pub fn record(&mut self, request_id: &str, row: u32, at: SystemTime, predicted: Predicted) {
        let fingerprint = self.fingerprint(request_id, row);
        let pending = match self.entries.get(&fingerprint) {
            Some(entry) if entry.settled.is_none() => true,
            Some(_) => {
                // Settled before: it starts over as a new prediction.
                self.entries.remove(&fingerprint);
                self.settled -= 1;
                false
            }
            None => false,
        };
        if !pending {
            while self.pending >= self.capacity && self.evict_oldest() {}
            self.pending += 1;
        }
        let seq = self.seq();
        self.entries.insert(
            fingerprint,
            Entry {
                seq,
                at_ms: unix_ms(at),
                predicted,
                settled: None,
            },
        );
        self.arrivals.push_back((fingerprint, seq));
        if self.arrivals.len() > 2 * self.capacity {
            let entries = &self.entries;
            self.arrivals
                .retain(|(f, seq)| entries.get(f).is_some_and(|e| e.seq == *seq));
        }
    }

    /// Expires every prediction made more than `ttl` before `now`.
    pub fn expire(&mut self, now: SystemTime) {
        let now_ms = unix_ms(now);
        while let Some(&(fingerprint, seq)) = self.arrivals.front() {
            match self.entries.get(&fingerprint) {
                Some(entry) if entry.seq == seq => {
                    if !self.is_expired(entry.at_ms, now_ms) {
                        return;
                    }
                    self.arrivals.pop_front();
                    self.expired += 1;
                    self.settle(fingerprint, Settled::Expired);
                }
                _ => {
                    self.arrivals.pop_front();
                }
            }
        }
    }

    /// Looks `key` up as of `now`. A pending prediction that `accept`
    /// approves is settled as joined.
    pub fn take(
        &mut self,
        key: &Key,
        now: SystemTime,
        accept: impl FnOnce(Predicted) -> bool,
    ) -> Lookup {
        self.expire(now);
        let fingerprint = self.fingerprint(&key.request_id, key.row);
        let Some(entry) = self.entries.get(&fingerprint).copied() else {
            return Lookup::Unknown;
        };
        match entry.settled {
            Some(settled) => Lookup::Settled(settled),
            // Arrival order and time may disagree a little (several mirror
            // workers): an entry behind a younger one expires here.
            None if self.is_expired(entry.at_ms, unix_ms(now)) => {
                self.expired += 1;
                self.settle(fingerprint, Settled::Expired);
                Lookup::Settled(Settled::Expired)
            }
            None if accept(entry.predicted) => {
                self.settle(fingerprint, Settled::Joined);
                Lookup::Found(
                    entry.predicted,
                    SystemTime::UNIX_EPOCH + Duration::from_millis(entry.at_ms),
                )
            }
            None => Lookup::Refused(entry.predicted),
        }
    }

    fn is_expired(&self, at_ms: u64, now_ms: u64) -> bool {
        now_ms.saturating_sub(at_ms) > self.ttl_ms
    }

    /// Evicts the oldest pending prediction; false when there is none.
    fn evict_oldest(&mut self) -> bool {
        while let Some((fingerprint, seq)) = self.arrivals.pop_front() {
            if self
                .entries
                .get(&fingerprint)
                .is_some_and(|e| e.seq == seq && e.settled.is_none())
            {
                self.evicted += 1;
                self.settle(fingerprint, Settled::Evicted);
                return true;
            }
        }
        false
    }

    /// Turns a pending entry into a settled one, forgetting the oldest
    /// settled entries past the capacity.
    fn settle(&mut self, fingerprint: u64, how: Settled) {
        let seq = self.seq();
        let Some(entry) = self.entries.get_mut(&fingerprint) else {
            return;
        };
        entry.seq = seq;
        entry.settled = Some(how);
        self.pending -= 1;
        self.settled += 1;
        self.departures.push_back((fingerprint, seq));
        while self.settled > self.capacity {
            let Some((fingerprint, seq)) = self.departures.pop_front() else {
                break;
            };
            if self.entries.get(&fingerprint).is_some_and(|e| e.seq == seq) {
                self.entries.remove(&fingerprint);
                self.settled -= 1;
            }
        }
        if self.departures.len() > 2 * self.capacity {
            let entries = &self.entries;
            self.departures
                .retain(|(f, seq)| entries.get(f).is_some_and(|e| e.seq == *seq));
        }
    }
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis().try_into().unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: SystemTime = SystemTime::UNIX_EPOCH;

    fn key(id: &str) -> Key {
        Key {
            request_id: Arc::from(id),
            row: 0,
        }
    }

    fn at(secs: u64) -> SystemTime {
        T0 + Duration::from_secs(secs)
    }

    fn any(_: Predicted) -> bool {
        true
    }

    #[test]
    fn joins_once_then_remembers_the_join() {
        let mut store = JoinStore::new(Duration::from_secs(60), 10);
        store.record("a", 0, at(0), Predicted::Class(2));
        assert_eq!(store.pending(), 1);
        assert_eq!(
            store.take(&key("a"), at(1), any),
            Lookup::Found(Predicted::Class(2), at(0))
        );
        assert_eq!(store.pending(), 0);
        assert_eq!(
            store.take(&key("a"), at(2), any),
            Lookup::Settled(Settled::Joined)
        );
        assert_eq!(store.take(&key("b"), at(2), any), Lookup::Unknown);
    }

    #[test]
    fn rows_of_one_request_are_separate_predictions() {
        let mut store = JoinStore::new(Duration::from_secs(60), 10);
        for row in 0..3 {
            store.record("r", row, at(0), Predicted::Value(f64::from(row)));
        }
        let row2 = Key {
            request_id: Arc::from("r"),
            row: 2,
        };
        assert_eq!(
            store.take(&row2, at(1), any),
            Lookup::Found(Predicted::Value(2.0), at(0))
        );
        assert_eq!(store.pending(), 2);
    }

    #[test]
    fn past_the_ttl_a_prediction_is_expired_not_unknown() {
        let mut store = JoinStore::new(Duration::from_secs(10), 10);
        store.record("old", 0, at(0), Predicted::Class(0));
        store.record("new", 0, at(8), Predicted::Class(1));
        assert_eq!(
            store.take(&key("old"), at(11), any),
            Lookup::Settled(Settled::Expired)
        );
        // The younger one is still there.
        assert!(matches!(
            store.take(&key("new"), at(11), any),
            Lookup::Found(..)
        ));
        // At exactly the TTL it is still joinable.
        store.record("edge", 0, at(20), Predicted::Class(0));
        assert!(matches!(
            store.take(&key("edge"), at(30), any),
            Lookup::Found(..)
        ));
        assert_eq!(store.expired_evicted(), (1, 0));
    }

    #[test]
    fn an_out_of_order_entry_expires_at_lookup() {
        let mut store = JoinStore::new(Duration::from_secs(10), 10);
        store.record("young", 0, at(9), Predicted::Class(0));
        store.record("late", 0, at(0), Predicted::Class(0));
        assert_eq!(
            store.take(&key("late"), at(12), any),
            Lookup::Settled(Settled::Expired)
        );
        assert_eq!(store.pending(), 1);
    }

    #[test]
    fn a_full_store_evicts_the_oldest_first() {
        let mut store = JoinStore::new(Duration::from_secs(600), 3);
        for (i, id) in ["a", "b", "c", "d"].iter().enumerate() {
            store.record(id, 0, at(i as u64), Predicted::Class(0));
        }
        assert_eq!(store.pending(), 3);
        assert_eq!(
            store.take(&key("a"), at(5), any),
            Lookup::Settled(Settled::Evicted)
        );
        for id in ["b", "c", "d"] {
            assert!(matches!(
                store.take(&key(id), at(5), any),
                Lookup::Found(..)
            ));
        }
        assert_eq!(store.expired_evicted(), (0, 1));
    }

    #[test]
    fn joined_entries_free_their_place() {
        let mut store = JoinStore::new(Duration::from_secs(600), 2);
        store.record("a", 0, at(0), Predicted::Class(0));
        store.record("b", 0, at(1), Predicted::Class(0));
        assert!(matches!(
            store.take(&key("a"), at(2), any),
            Lookup::Found(..)
        ));
        // Room for c without evicting b.
        store.record("c", 0, at(3), Predicted::Class(0));
        assert!(matches!(
            store.take(&key("b"), at(4), any),
            Lookup::Found(..)
        ));
        assert_eq!(store.expired_evicted(), (0, 0));
    }

    #[test]
    fn refused_feedback_leaves_the_prediction_pending() {
        let mut store = JoinStore::new(Duration::from_secs(600), 2);
        store.record("a", 0, at(0), Predicted::Value(1.5));
        assert_eq!(
            store.take(&key("a"), at(1), |_| false),
            Lookup::Refused(Predicted::Value(1.5))
        );
        assert!(matches!(
            store.take(&key("a"), at(1), any),
            Lookup::Found(..)
        ));
    }

    #[test]
    fn a_reused_request_id_is_pending_again() {
        let mut store = JoinStore::new(Duration::from_secs(600), 4);
        store.record("a", 0, at(0), Predicted::Class(0));
        store.record("a", 0, at(1), Predicted::Class(3));
        assert_eq!(
            store.pending(),
            1,
            "the later prediction replaces the first"
        );
        assert!(matches!(
            store.take(&key("a"), at(1), any),
            Lookup::Found(..)
        ));
        store.record("a", 0, at(2), Predicted::Class(1));
        assert_eq!(
            store.take(&key("a"), at(3), any),
            Lookup::Found(Predicted::Class(1), at(2))
        );
    }

    #[test]
    fn memory_stays_bounded_under_churn() {
        let capacity = 100;
        let mut store = JoinStore::new(Duration::from_secs(5), capacity);
        for i in 0..100_000u64 {
            let id = format!("r{i}");
            store.record(&id, 0, at(i / 100), Predicted::Class(0));
            if i % 3 == 0 {
                store.take(&key(&id), at(i / 100), any);
            }
            if i % 7 == 0 {
                // A reused id.
                store.record("again", 0, at(i / 100), Predicted::Class(0));
            }
            assert!(store.pending <= capacity);
            assert!(store.settled <= capacity);
            assert_eq!(store.entries.len(), store.pending + store.settled);
            assert!(store.arrivals.len() <= 2 * capacity + 1);
            assert!(store.departures.len() <= 2 * capacity + 1);
        }
        // Long forgotten: unknown, not expired.
        assert_eq!(store.take(&key("r0"), at(1000), any), Lookup::Unknown);
    }
}
