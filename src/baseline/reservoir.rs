//! A seeded reservoir sample (Vitter's Algorithm R): a uniform sample of at
//! most `cap` items from a stream of unknown length, in O(cap) memory.
//!
//! Seeded so that the same data and seed always give the same baseline
//! file: a rebuilt baseline can be diffed, and its tests are exact.

/// Keeps a uniform random sample of at most `cap` of the items offered.
#[derive(Debug, Clone)]
pub struct Reservoir<T> {
    cap: usize,
    seen: u64,
    items: Vec<T>,
    rng: fastrand::Rng,
}

impl<T> Reservoir<T> {
    /// An empty reservoir keeping at most `cap` items, drawing from a
    /// generator seeded with `seed`.
    pub fn new(cap: usize, seed: u64) -> Reservoir<T> {
        Reservoir {
            cap,
            seen: 0,
            items: Vec::with_capacity(cap.min(1024)),
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// Offers one item, built by `make` only if the sample keeps it (rows
    /// are vectors: most offers past the cap are rejected without copying).
    pub fn offer_with(&mut self, make: impl FnOnce() -> T) {
        self.seen += 1;
        if self.items.len() < self.cap {
            self.items.push(make());
            return;
        }
        // Item number `seen` replaces a kept one with probability cap/seen.
        let slot = self.rng.u64(..self.seen);
        if let Some(kept) = usize::try_from(slot)
            .ok()
            .and_then(|slot| self.items.get_mut(slot))
        {
            *kept = make();
        }
    }

    /// The sample, in reservoir order.
    pub fn into_items(self) -> Vec<T> {
        self.items
    }
}

/// A seed for stream `index` derived from the user's `seed` (SplitMix64's
/// finaliser), so each feature's reservoir draws an independent sequence
/// while the whole baseline still depends on one number.
pub fn derive_seed(seed: u64, index: u64) -> u64 {
    let mut z = seed.wrapping_add(index.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(cap: usize, seed: u64, n: u32) -> Vec<u32> {
        let mut reservoir = Reservoir::new(cap, seed);
        for i in 0..n {
            reservoir.offer_with(|| i);
        }
        reservoir.into_items()
    }

    #[test]
    fn keeps_everything_below_the_cap() {
        assert_eq!(sample(10, 1, 4), [0, 1, 2, 3]);
        assert!(sample(0, 1, 4).is_empty());
    }

    #[test]
    fn same_seed_same_sample_other_seed_other_sample() {
        let a = sample(50, 42, 10_000);
        assert_eq!(a.len(), 50);
        assert_eq!(a, sample(50, 42, 10_000));
        assert_ne!(a, sample(50, 43, 10_000));
        let mut distinct = a.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 50, "a sample without replacement");
    }

    #[test]
    fn sample_is_roughly_uniform() {
        // Over many seeds each of 10 items is kept in ~half the samples of 5.
        let mut kept = [0u32; 10];
        for seed in 0..2000 {
            for i in sample(5, seed, 10) {
                kept[i as usize] += 1;
            }
        }
        for (i, &k) in kept.iter().enumerate() {
            assert!((850..1150).contains(&k), "item {i} kept {k} times of 2000");
        }
    }

    #[test]
    fn derived_seeds_differ() {
        assert_ne!(derive_seed(1, 0), derive_seed(1, 1));
        assert_ne!(derive_seed(1, 0), derive_seed(2, 0));
        assert_eq!(derive_seed(9, 3), derive_seed(9, 3));
    }
}
