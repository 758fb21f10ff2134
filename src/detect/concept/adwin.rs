//! ADWIN (ADaptive WINdowing, Bifet & Gavaldà 2007, the ADWIN2 variant
//! with an exponential histogram) as `river.drift.ADWIN`.

mod histogram;

use histogram::Histogram;

use super::{InvalidParam, Verdict};

/// [`Adwin`]'s parameters, named as River's; [`Default`] gives River's
/// defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdwinParams {
    /// The significance δ of the cut test, in (0, 1): smaller means fewer
    /// false alarms and later detections. River's default: 0.002.
    pub delta: f64,
    /// Check for a cut every this many values (since the last reset); 1
    /// checks every value. River's default: 32.
    pub clock: u32,
    /// How many buckets of each size are kept before the two oldest are
    /// merged into one of twice the size (at least 1). River's default: 5.
    ///
    /// With 1, River 0.26.1 can panic in a check that drops more than one
    /// bucket (a row below the highest can be empty, and River then drops
    /// from an empty row); [`Adwin`] drops the true oldest bucket and goes
    /// on. Until that point the two agree.
    pub max_buckets: usize,
    /// Cuts leaving fewer values than this on either side are not tested.
    /// River's default: 5. With 0 and `max_buckets` 1, a cut that leaves
    /// nothing on the newer side can be tested (as River does) and the
    /// whole window may be dropped.
    pub min_window_length: u32,
    /// No cut is tested until the window holds more than this many values.
    /// River's default: 10.
    pub grace_period: u32,
}

/// The ADWIN change detector on a stream of scores.
///
/// The window is an exponential histogram: row `i` holds up to
/// `max_buckets` buckets (briefly one more) that each summarise 2^i
/// consecutive values by their sum and sum of squared deviations. A new
/// value enters row 0 as a bucket of one; a row that overflows merges its
/// two oldest buckets into one bucket of the next row, and so on up.
///
/// Every `clock` values, once the window holds more than `grace_period`,
/// every boundary between buckets is tried as a cut, oldest first: with
/// `W₀` the older and `W₁` the newer part (each at least
/// `min_window_length` long), `n` the window length, `σ²` its variance,
/// `δ' = ln(2 ln n / δ)` and `m = 1/(n₀ − l + 1) + 1/(n₁ − l + 1)` (`l` the
/// minimum window length), the cut holds when
/// `|mean(W₀) − mean(W₁)| > √(2 m σ² δ') + ⅔ δ' m`. Each time one holds the
/// oldest bucket is dropped and the scan starts over; any cut means
/// [`Verdict::Drift`], and the next update starts from an empty window
/// (River's `ADWIN` starts a new window after every detection).
///
/// Cost: inserting is O(1) amortised (a merge cascade is rare); a check
/// scans O(`max_buckets` · log₂ n) cuts, once more for each bucket
/// dropped, so O(`max_buckets` · log₂ n / `clock`) per value on average
/// while nothing drifts. Memory is O(`max_buckets` · log₂ n); rows are kept allocated
/// across resets, so a warmed-up detector does not allocate.
#[derive(Debug, Clone)]
pub struct Adwin {
    /// The validated parameters.
    params: AdwinParams,
    /// The window.
    window: Histogram,
    /// Values since the last reset: a cut is tested when it is a multiple
    /// of `clock`.
    tick: u64,
    /// Whether the last update reported drift: the next one resets first.
    drift: bool,
}

// === impl AdwinParams ===

impl Default for AdwinParams {
    fn default() -> Self {
        AdwinParams {
            delta: 0.002,
            clock: 32,
            max_buckets: 5,
            min_window_length: 5,
            grace_period: 10,
        }
    }
}

impl AdwinParams {
    /// Checks `delta` (in (0, 1)), `clock` and `max_buckets` (at least 1).
    pub fn validate(&self) -> Result<(), InvalidParam> {
        let invalid = |param, requirement| InvalidParam {
            detector: "adwin",
            param,
            requirement,
        };
        if !(self.delta > 0.0 && self.delta < 1.0) {
            return Err(invalid("delta", "must be in (0, 1)"));
        }
        if self.clock == 0 {
            return Err(invalid("clock", "must be at least 1"));
        }
        if self.max_buckets == 0 {
            return Err(invalid("max_buckets", "must be at least 1"));
        }
        Ok(())
    }
}

// === impl Adwin ===

impl Default for Adwin {
    /// River's defaults ([`AdwinParams::default`]).
    fn default() -> Self {
        Adwin::with_valid(AdwinParams::default())
    }
}

impl Adwin {
    /// A detector with these parameters, if they are valid
    /// ([`AdwinParams::validate`]).
    pub fn new(params: AdwinParams) -> Result<Self, InvalidParam> {
        params.validate()?;
        Ok(Adwin::with_valid(params))
    }

    fn with_valid(params: AdwinParams) -> Self {
        Adwin {
            params,
            window: Histogram::new(params.max_buckets),
            tick: 0,
            drift: false,
        }
    }

    /// The parameters.
    pub fn params(&self) -> &AdwinParams {
        &self.params
    }

    /// Empties the window, as after a drift (keeping the allocations).
    pub fn reset(&mut self) {
        self.window.clear();
        self.tick = 0;
        self.drift = false;
    }

    /// Adds one value and reports whether the window was cut:
    /// [`Verdict::Drift`] or [`Verdict::Stable`] (never a warning). A
    /// non-finite value is dropped (see the [module docs](super)).
    pub fn update(&mut self, x: f64) -> Verdict {
        if self.drift {
            self.reset();
        }
        if !x.is_finite() {
            return Verdict::Stable;
        }
        self.window.insert(x);
        self.tick += 1;
        let AdwinParams {
            delta,
            clock,
            min_window_length,
            grace_period,
            ..
        } = self.params;
        if self.tick.is_multiple_of(u64::from(clock))
            && self.window.width() > u64::from(grace_period)
        {
            while self.window.width() > 0 && self.window.cut_found(delta, min_window_length) {
                self.drift = true;
                self.window.drop_oldest();
            }
        }
        if self.drift {
            Verdict::Drift
        } else {
            Verdict::Stable
        }
    }

    /// Whether the last update reported drift (River's `drift_detected`).
    pub fn drift_detected(&self) -> bool {
        self.drift
    }

    /// The number of values in the window (River's `width`).
    pub fn width(&self) -> u64 {
        self.window.width()
    }

    /// The sum of the values in the window (River's `total`).
    pub fn total(&self) -> f64 {
        self.window.total()
    }

    /// The mean of the window (River's `estimation`; 0 when empty).
    pub fn mean(&self) -> f64 {
        match self.window.width() {
            0 => 0.0,
            width => self.window.total() / width as f64,
        }
    }

    /// The population variance of the window, the `σ²` of the cut test (0
    /// when empty). River's `ADWIN.variance` property returns the sum of
    /// squared deviations instead, i.e. this times [`Adwin::width`].
    pub fn variance(&self) -> f64 {
        match self.window.width() {
            0 => 0.0,
            width => self.window.m2() / width as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_statistics() {
        let mut adwin = Adwin::default();
        assert_eq!(
            (adwin.width(), adwin.mean(), adwin.variance()),
            (0, 0.0, 0.0)
        );
        for x in [1.0, 2.0, 3.0, 4.0, 5.0] {
            assert_eq!(adwin.update(x), Verdict::Stable);
        }
        // River: width 5, total 15, variance property 10 (= 2 × 5).
        assert_eq!((adwin.width(), adwin.total(), adwin.mean()), (5, 15.0, 3.0));
        assert_eq!(adwin.variance(), 2.0);
    }

    #[test]
    fn detects_a_shift_then_starts_a_new_window() {
        let mut adwin = Adwin::default();
        let stream = (0..2000).map(|i| if i < 1000 { f64::from(i % 2) } else { 5.0 });
        let first = stream
            .enumerate()
            .find_map(|(i, x)| adwin.update(x).is_drift().then_some(i))
            .expect("a drift");
        assert!((1000..1100).contains(&first), "drift at {first}");
        // The window was cut, and keeps its state until the next update.
        assert!(adwin.width() < first as u64 + 1);
        assert!(adwin.drift_detected());
        assert_eq!(adwin.update(5.0), Verdict::Stable);
        assert_eq!((adwin.width(), adwin.mean()), (1, 5.0));
        assert!(!adwin.drift_detected());
    }

    #[test]
    fn checks_only_on_the_clock() {
        let params = AdwinParams {
            clock: 10,
            grace_period: 0,
            min_window_length: 1,
            ..AdwinParams::default()
        };
        let mut adwin = Adwin::new(params).unwrap();
        for _ in 0..50 {
            adwin.update(0.0);
        }
        // A jump is only seen at a multiple of the clock.
        let at = (50..200).find(|_| adwin.update(100.0).is_drift());
        assert_eq!(at.map(|i| (i + 1) % 10), Some(0));
    }

    #[test]
    fn max_buckets_one_goes_on_where_river_panics() {
        // River 0.26.1 panics on this configuration once a check drops a
        // second bucket above an empty row (see the fixture script).
        let mut adwin = Adwin::new(AdwinParams {
            max_buckets: 1,
            clock: 1,
            min_window_length: 0,
            ..AdwinParams::default()
        })
        .unwrap();
        let mut drifts = 0;
        for i in 0..20_000 {
            let x = f64::from((i / 97) % 3) * 10.0 + f64::from(i % 5);
            drifts += usize::from(adwin.update(x).is_drift());
        }
        assert!(drifts > 0);
    }

    #[test]
    fn non_finite_values_are_dropped() {
        let mut adwin = Adwin::default();
        adwin.update(1.0);
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(adwin.update(x), Verdict::Stable);
        }
        assert_eq!(adwin.width(), 1);
        assert_eq!(adwin.total(), 1.0);
        assert_eq!(adwin.tick, 1);
    }

    #[test]
    fn reset_empties_the_window() {
        let mut adwin = Adwin::default();
        for i in 0..5000 {
            adwin.update(f64::from(i % 3));
        }
        adwin.reset();
        assert_eq!(
            (adwin.width(), adwin.mean(), adwin.variance()),
            (0, 0.0, 0.0)
        );
        assert_eq!(adwin.tick, 0);
        assert!(!adwin.drift_detected());
    }

    #[test]
    fn rejects_bad_params() {
        let bad = [
            AdwinParams {
                delta: 0.0,
                ..AdwinParams::default()
            },
            AdwinParams {
                delta: 1.0,
                ..AdwinParams::default()
            },
            AdwinParams {
                clock: 0,
                ..AdwinParams::default()
            },
            AdwinParams {
                max_buckets: 0,
                ..AdwinParams::default()
            },
        ];
        for params in bad {
            assert!(Adwin::new(params).is_err(), "{params:?}");
        }
    }
}
