//! Page–Hinkley test: a CUSUM of each value's deviation from the running
//! mean, with a forgetting factor, as `river.drift.PageHinkley`.

use std::fmt;
use std::str::FromStr;

use super::mean::RunningMean;
use super::{InvalidParam, Verdict};

/// Which direction of change [`PageHinkley`] looks for (River's `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PageHinkleyMode {
    /// An increase of the mean (`"up"`).
    Up,
    /// A decrease of the mean (`"down"`).
    Down,
    /// Either (`"both"`, River's default).
    #[default]
    Both,
}

/// A mode name that is not `up`, `down` or `both`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not one of up, down, both")]
pub struct UnknownMode(pub String);

/// [`PageHinkley`]'s parameters, named as River's; [`Default`] gives
/// River's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PageHinkleyParams {
    /// No drift is reported before this many values (since the last
    /// drift). River's default: 30.
    pub min_instances: u64,
    /// The magnitude of change tolerated: subtracted from (added to) every
    /// deviation in the increase (decrease) sum. River's default: 0.005.
    pub delta: f64,
    /// λ: drift is reported when a cumulative statistic exceeds it.
    /// River's default: 50.
    pub threshold: f64,
    /// The forgetting factor applied to both sums before each value, in
    /// (0, 1]; 1 forgets nothing. River's default: `1 − 0.0001`.
    pub alpha: f64,
    /// Which direction of change to detect. River's default: both.
    pub mode: PageHinkleyMode,
}

/// The Page–Hinkley change detector on a stream of scores.
///
/// With the running mean `x̄ₙ`, each value updates two cumulative sums,
/// `up = α·up + (x − x̄ₙ) − δ` and `down = α·down + (x − x̄ₙ) + δ`, and
/// tracks `min(up)` and `max(down)`. Once `min_instances` values were
/// seen, drift is reported when `up − min(up)` (an increase) or
/// `max(down) − down` (a decrease) exceeds the threshold, per
/// [`PageHinkleyMode`]. The next update starts afresh.
/// O(1) time and memory per value.
#[derive(Debug, Clone)]
pub struct PageHinkley {
    /// The validated parameters.
    params: PageHinkleyParams,
    /// The mean of the values since the last reset: deviations are taken
    /// from it.
    mean: RunningMean,
    /// The cumulative sum that grows when the mean increases.
    sum_increase: f64,
    /// The cumulative sum that falls when the mean decreases.
    sum_decrease: f64,
    /// The smallest `sum_increase` so far (+∞ before the first value).
    min_increase: f64,
    /// The largest `sum_decrease` so far (−1 before the first value, as in
    /// River; the first value sets it, since it makes `sum_decrease = δ`).
    max_decrease: f64,
    /// Whether the last update reported drift: the next one resets first.
    drift: bool,
}

// === impl PageHinkleyMode ===

impl PageHinkleyMode {
    /// River's name: `up`, `down` or `both`.
    pub fn as_str(self) -> &'static str {
        match self {
            PageHinkleyMode::Up => "up",
            PageHinkleyMode::Down => "down",
            PageHinkleyMode::Both => "both",
        }
    }
}

impl fmt::Display for PageHinkleyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PageHinkleyMode {
    type Err = UnknownMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "up" => Ok(PageHinkleyMode::Up),
            "down" => Ok(PageHinkleyMode::Down),
            "both" => Ok(PageHinkleyMode::Both),
            other => Err(UnknownMode(other.to_owned())),
        }
    }
}

// === impl PageHinkleyParams ===

impl Default for PageHinkleyParams {
    fn default() -> Self {
        PageHinkleyParams {
            min_instances: 30,
            delta: 0.005,
            threshold: 50.0,
            alpha: 1.0 - 0.0001,
            mode: PageHinkleyMode::Both,
        }
    }
}

impl PageHinkleyParams {
    /// Checks `delta` and `threshold` (finite, ≥ 0) and `alpha` (in (0, 1]).
    pub fn validate(&self) -> Result<(), InvalidParam> {
        InvalidParam::non_negative("page_hinkley", "delta", self.delta)?;
        InvalidParam::non_negative("page_hinkley", "threshold", self.threshold)?;
        if !(self.alpha > 0.0 && self.alpha <= 1.0) {
            return Err(InvalidParam {
                detector: "page_hinkley",
                param: "alpha",
                requirement: "must be in (0, 1]",
            });
        }
        Ok(())
    }
}

// === impl PageHinkley ===

impl Default for PageHinkley {
    /// River's defaults ([`PageHinkleyParams::default`]).
    fn default() -> Self {
        PageHinkley::with_valid(PageHinkleyParams::default())
    }
}

impl PageHinkley {
    /// A detector with these parameters, if they are valid
    /// ([`PageHinkleyParams::validate`]).
    pub fn new(params: PageHinkleyParams) -> Result<Self, InvalidParam> {
        params.validate()?;
        Ok(PageHinkley::with_valid(params))
    }

    fn with_valid(params: PageHinkleyParams) -> Self {
        PageHinkley {
            params,
            mean: RunningMean::default(),
            sum_increase: 0.0,
            sum_decrease: 0.0,
            min_increase: f64::INFINITY,
            max_decrease: -1.0,
            drift: false,
        }
    }

    /// The parameters.
    pub fn params(&self) -> &PageHinkleyParams {
        &self.params
    }

    /// Forgets every value seen, as after a drift.
    pub fn reset(&mut self) {
        *self = PageHinkley::with_valid(self.params);
    }

    /// Adds one value and reports whether it completes a change:
    /// [`Verdict::Drift`] or [`Verdict::Stable`] (never a warning). A
    /// non-finite value is dropped (see the [module docs](super)).
    pub fn update(&mut self, x: f64) -> Verdict {
        if self.drift {
            self.reset();
        }
        if !x.is_finite() {
            return Verdict::Stable;
        }
        self.mean.add(x);
        let deviation = x - self.mean.get();
        let PageHinkleyParams { delta, alpha, .. } = self.params;
        self.sum_increase = alpha * self.sum_increase + deviation - delta;
        self.sum_decrease = alpha * self.sum_decrease + deviation + delta;
        if self.sum_increase < self.min_increase {
            self.min_increase = self.sum_increase;
        }
        if self.sum_decrease > self.max_decrease {
            self.max_decrease = self.sum_decrease;
        }
        if self.mean.n() >= self.params.min_instances as f64 {
            self.drift = self.statistic() > self.params.threshold;
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

    /// The values counted since the last reset.
    pub fn n(&self) -> u64 {
        self.mean.n() as u64
    }

    /// The mean of the values since the last reset (0 before the first).
    pub fn mean(&self) -> f64 {
        self.mean.get()
    }

    /// The increase statistic `up − min(up)` (0 before the first value).
    pub fn increase_statistic(&self) -> f64 {
        if self.mean.n() == 0.0 {
            return 0.0;
        }
        self.sum_increase - self.min_increase
    }

    /// The decrease statistic `max(down) − down` (0 before the first value).
    pub fn decrease_statistic(&self) -> f64 {
        if self.mean.n() == 0.0 {
            return 0.0;
        }
        self.max_decrease - self.sum_decrease
    }

    /// The statistic compared with the threshold: the increase statistic,
    /// the decrease statistic, or the larger of the two, per the mode.
    pub fn statistic(&self) -> f64 {
        match self.params.mode {
            PageHinkleyMode::Up => self.increase_statistic(),
            PageHinkleyMode::Down => self.decrease_statistic(),
            PageHinkleyMode::Both => self.increase_statistic().max(self.decrease_statistic()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// River's docstring example, with the `random.Random(12345)` stream
    /// replaced by a fixed pattern: 0/1 for 1000 values, then 4..7.
    fn two_levels() -> impl Iterator<Item = f64> {
        (0..1000)
            .map(|i| f64::from(i % 2))
            .chain((0..1000).map(|i| 4.0 + f64::from(i % 4)))
    }

    #[test]
    fn detects_a_shift_and_resets_at_the_next_update() {
        let mut ph = PageHinkley::default();
        let first = two_levels()
            .position(|x| ph.update(x) == Verdict::Drift)
            .expect("a drift");
        assert!((1000..1020).contains(&first), "drift at {first}");
        assert!(ph.drift_detected());
        assert!(ph.statistic() > 50.0);
        let n = ph.n();
        assert_eq!(n, first as u64 + 1);
        assert_eq!(ph.update(5.0), Verdict::Stable);
        assert_eq!(ph.n(), 1);
        assert_eq!(ph.mean(), 5.0);
        assert!(!ph.drift_detected());
    }

    #[test]
    fn waits_for_min_instances() {
        let params = PageHinkleyParams {
            min_instances: 10,
            threshold: 1.0,
            ..PageHinkleyParams::default()
        };
        let mut ph = PageHinkley::new(params).unwrap();
        let verdicts: Vec<_> = (0..10).map(|i| ph.update(f64::from(i) * 100.0)).collect();
        assert!(verdicts[..9].iter().all(|v| *v == Verdict::Stable));
        assert_eq!(verdicts[9], Verdict::Drift);
    }

    #[test]
    fn mode_selects_the_direction() {
        let down = |mode| {
            let mut ph = PageHinkley::new(PageHinkleyParams {
                mode,
                ..PageHinkleyParams::default()
            })
            .unwrap();
            (0..2000).any(|i| ph.update(if i < 1000 { 5.0 } else { -5.0 }).is_drift())
        };
        assert!(down(PageHinkleyMode::Down));
        assert!(down(PageHinkleyMode::Both));
        assert!(!down(PageHinkleyMode::Up));
    }

    #[test]
    fn non_finite_values_are_dropped() {
        let mut ph = PageHinkley::default();
        ph.update(1.0);
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(ph.update(x), Verdict::Stable);
        }
        assert_eq!(ph.n(), 1);
        assert_eq!(ph.mean(), 1.0);
        assert!(ph.statistic().is_finite());
    }

    #[test]
    fn a_dropped_value_still_performs_the_pending_reset() {
        let mut ph = PageHinkley::new(PageHinkleyParams {
            min_instances: 1,
            threshold: 0.5,
            ..PageHinkleyParams::default()
        })
        .unwrap();
        ph.update(0.0);
        assert!(ph.update(10.0).is_drift());
        assert_eq!(ph.update(f64::NAN), Verdict::Stable);
        assert!(!ph.drift_detected());
        assert_eq!(ph.n(), 0);
        assert_eq!(ph.statistic(), 0.0);
    }

    #[test]
    fn reset_forgets_everything() {
        let mut ph = PageHinkley::default();
        for x in two_levels() {
            ph.update(x);
        }
        ph.reset();
        assert_eq!(ph.n(), 0);
        assert_eq!(ph.mean(), 0.0);
        assert!(!ph.drift_detected());
    }

    #[test]
    fn rejects_bad_params() {
        for params in [
            PageHinkleyParams {
                alpha: 0.0,
                ..PageHinkleyParams::default()
            },
            PageHinkleyParams {
                alpha: 1.5,
                ..PageHinkleyParams::default()
            },
            PageHinkleyParams {
                threshold: f64::NAN,
                ..PageHinkleyParams::default()
            },
            PageHinkleyParams {
                delta: -0.1,
                ..PageHinkleyParams::default()
            },
        ] {
            assert!(PageHinkley::new(params).is_err(), "{params:?}");
        }
        assert!(
            PageHinkley::new(PageHinkleyParams {
                alpha: 1.0,
                ..PageHinkleyParams::default()
            })
            .is_ok()
        );
    }

    #[test]
    fn mode_names_round_trip() {
        for mode in [
            PageHinkleyMode::Up,
            PageHinkleyMode::Down,
            PageHinkleyMode::Both,
        ] {
            assert_eq!(mode.as_str().parse::<PageHinkleyMode>(), Ok(mode));
        }
        assert_eq!(
            "sideways".parse::<PageHinkleyMode>(),
            Err(UnknownMode("sideways".into()))
        );
    }
}
