//! The join store of one model: the predictions awaiting their ground
//! truth, keyed by request id and row, with bounded memory.
//!
//! Pending predictions live in a map and, in arrival order, in a queue.
//! They leave it three ways: feedback joins them, `feedback.ttl` expires
//! them, or a full store (`feedback.capacity`) evicts the oldest. Each way
//! is remembered in a second bounded map, so that a later feedback for the
//! same id is answered 409 (already joined) or 410 (expired, evicted)
//! rather than 404, for as long as that memory holds it (the latest
//! `feedback.capacity` settled ids).
//!
//! Joined and re-recorded entries leave stale positions in the queues;
//! each position carries the sequence number of the entry it was made for,
//! so stale ones are skipped, and a queue that grows past twice the
//! capacity is compacted (amortised O(1) per entry).

use std::collections::{HashMap, VecDeque};
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
    /// The prediction, now removed from the store, and when it was made.
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
    seq: u64,
    at: SystemTime,
    predicted: Predicted,
}

/// Pending predictions and recently settled ids of one model.
#[derive(Debug)]
pub struct JoinStore {
    ttl: Duration,
    capacity: usize,
    pending: HashMap<Key, Entry>,
    /// Pending keys in arrival order, with their sequence numbers.
    order: VecDeque<(u64, Key)>,
    settled: HashMap<Key, (u64, Settled)>,
    /// Settled keys, oldest first.
    settled_order: VecDeque<(u64, Key)>,
    next_seq: u64,
    /// Entries expired and evicted so far.
    expired: u64,
    evicted: u64,
}

// === impl JoinStore ===

impl JoinStore {
    /// An empty store keeping at most `capacity` pending predictions for
    /// `ttl` each.
    pub fn new(ttl: Duration, capacity: usize) -> JoinStore {
        JoinStore {
            ttl,
            capacity: capacity.max(1),
            pending: HashMap::new(),
            order: VecDeque::new(),
            settled: HashMap::new(),
            settled_order: VecDeque::new(),
            next_seq: 0,
            expired: 0,
            evicted: 0,
        }
    }

    /// Predictions awaiting feedback.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Predictions expired and evicted since start.
    pub fn expired_evicted(&self) -> (u64, u64) {
        (self.expired, self.evicted)
    }

    /// Records a prediction made at `at`. A key recorded again (a client
    /// reusing its request id) replaces the earlier prediction.
    pub fn record(&mut self, key: Key, at: SystemTime, predicted: Predicted) {
        if !self.pending.contains_key(&key) {
            while self.pending.len() >= self.capacity {
                if !self.evict_oldest() {
                    break;
                }
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.settled.remove(&key);
        self.order.push_back((seq, key.clone()));
        self.pending.insert(key, Entry { seq, at, predicted });
        if self.order.len() > 2 * self.capacity {
            let pending = &self.pending;
            self.order
                .retain(|(seq, key)| pending.get(key).is_some_and(|e| e.seq == *seq));
        }
    }

    /// Expires every prediction made more than `ttl` before `now`.
    pub fn expire(&mut self, now: SystemTime) {
        while let Some((seq, key)) = self.order.front() {
            match self.pending.get(key) {
                Some(entry) if entry.seq == *seq => {
                    if !self.is_expired(entry.at, now) {
                        return;
                    }
                    self.expired += 1;
                    self.settle_front(Settled::Expired);
                }
                _ => {
                    self.order.pop_front();
                }
            }
        }
    }

    /// Looks `key` up as of `now`. A pending prediction that `accept`
    /// approves is removed and remembered as joined.
    pub fn take(
        &mut self,
        key: &Key,
        now: SystemTime,
        accept: impl FnOnce(Predicted) -> bool,
    ) -> Lookup {
        self.expire(now);
        match self.pending.get(key).copied() {
            // Arrival order and time may disagree a little (several mirror
            // workers): an entry behind a younger one expires here.
            Some(entry) if self.is_expired(entry.at, now) => {
                self.expired += 1;
                self.pending.remove(key);
                self.remember(key.clone(), Settled::Expired);
                Lookup::Settled(Settled::Expired)
            }
            Some(entry) if accept(entry.predicted) => {
                self.pending.remove(key);
                self.remember(key.clone(), Settled::Joined);
                Lookup::Found(entry.predicted, entry.at)
            }
            Some(entry) => Lookup::Refused(entry.predicted),
            None => match self.settled.get(key) {
                Some((_, settled)) => Lookup::Settled(*settled),
                None => Lookup::Unknown,
            },
        }
    }

    fn is_expired(&self, at: SystemTime, now: SystemTime) -> bool {
        now.duration_since(at).is_ok_and(|age| age > self.ttl)
    }

    /// Evicts the oldest pending prediction; false when there is none.
    fn evict_oldest(&mut self) -> bool {
        while let Some((seq, key)) = self.order.front() {
            if self.pending.get(key).is_some_and(|e| e.seq == *seq) {
                self.evicted += 1;
                self.settle_front(Settled::Evicted);
                return true;
            }
            self.order.pop_front();
        }
        false
    }

    /// Moves the (live) front of the queue to the settled memory.
    fn settle_front(&mut self, how: Settled) {
        if let Some((_, key)) = self.order.pop_front() {
            self.pending.remove(&key);
            self.remember(key, how);
        }
    }

    fn remember(&mut self, key: Key, how: Settled) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.settled_order.push_back((seq, key.clone()));
        self.settled.insert(key, (seq, how));
        while self.settled.len() > self.capacity {
            let Some((seq, key)) = self.settled_order.pop_front() else {
                break;
            };
            if self.settled.get(&key).is_some_and(|(s, _)| *s == seq) {
                self.settled.remove(&key);
            }
        }
        if self.settled_order.len() > 2 * self.capacity {
            let settled = &self.settled;
            self.settled_order
                .retain(|(seq, key)| settled.get(key).is_some_and(|(s, _)| s == seq));
        }
    }
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
        store.record(key("a"), at(0), Predicted::Class(2));
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
            let key = Key {
                request_id: Arc::from("r"),
                row,
            };
            store.record(key, at(0), Predicted::Value(f64::from(row)));
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
        store.record(key("old"), at(0), Predicted::Class(0));
        store.record(key("new"), at(8), Predicted::Class(1));
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
        store.record(key("edge"), at(20), Predicted::Class(0));
        assert!(matches!(
            store.take(&key("edge"), at(30), any),
            Lookup::Found(..)
        ));
        assert_eq!(store.expired_evicted(), (1, 0));
    }

    #[test]
    fn an_out_of_order_entry_expires_at_lookup() {
        let mut store = JoinStore::new(Duration::from_secs(10), 10);
        store.record(key("young"), at(9), Predicted::Class(0));
        store.record(key("late"), at(0), Predicted::Class(0));
        assert_eq!(
            store.take(&key("late"), at(12), any),
            Lookup::Settled(Settled::Expired)
        );
    }

    #[test]
    fn a_full_store_evicts_the_oldest_first() {
        let mut store = JoinStore::new(Duration::from_secs(600), 3);
        for (i, id) in ["a", "b", "c", "d"].iter().enumerate() {
            store.record(key(id), at(i as u64), Predicted::Class(0));
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
        store.record(key("a"), at(0), Predicted::Class(0));
        store.record(key("b"), at(1), Predicted::Class(0));
        assert!(matches!(
            store.take(&key("a"), at(2), any),
            Lookup::Found(..)
        ));
        // Room for c without evicting b.
        store.record(key("c"), at(3), Predicted::Class(0));
        assert!(matches!(
            store.take(&key("b"), at(4), any),
            Lookup::Found(..)
        ));
        assert_eq!(store.expired_evicted(), (0, 0));
    }

    #[test]
    fn refused_feedback_leaves_the_prediction_pending() {
        let mut store = JoinStore::new(Duration::from_secs(600), 2);
        store.record(key("a"), at(0), Predicted::Value(1.5));
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
        store.record(key("a"), at(0), Predicted::Class(0));
        assert!(matches!(
            store.take(&key("a"), at(1), any),
            Lookup::Found(..)
        ));
        store.record(key("a"), at(2), Predicted::Class(1));
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
            store.record(key(&id), at(i / 100), Predicted::Class(0));
            if i % 3 == 0 {
                store.take(&key(&id), at(i / 100), any);
            }
            assert!(store.pending.len() <= capacity);
            assert!(store.order.len() <= 2 * capacity + 1);
            assert!(store.settled.len() <= capacity);
            assert!(store.settled_order.len() <= 2 * capacity + 1);
        }
        // Long forgotten: unknown, not expired.
        assert_eq!(store.take(&key("r0"), at(1000), any), Lookup::Unknown);
    }
}
