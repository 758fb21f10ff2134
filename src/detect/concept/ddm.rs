//! DDM, the Drift Detection Method (Gama et al. 2004), on a stream of
//! prediction errors, as `river.drift.binary.DDM`.

use super::mean::RunningMean;
use super::{InvalidParam, Verdict};

/// [`Ddm`]'s parameters, named as River's; [`Default`] gives River's
/// defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DdmParams {
    /// Nothing is reported until more than this many values were seen
    /// (since the last drift). River's default: 30.
    pub warm_start: u64,
    /// Warning when `p + s > p_min + warning_threshold · s_min`. River's
    /// default: 2 (about 95% confidence).
    pub warning_threshold: f64,
    /// Drift when `p + s > p_min + drift_threshold · s_min`. River's
    /// default: 3 (about 99% confidence).
    pub drift_threshold: f64,
}

/// The DDM change detector on a stream of errors (`true`: the model was
/// wrong).
///
/// It tracks the error rate `p` and its binomial standard deviation
/// `s = √(p(1 − p)/n)`. After `warm_start` values it remembers the point
/// where `p + s` was lowest (`p_min`, `s_min`; ties move the point to the
/// later value, as River's `<=` does) and reports [`Verdict::Warning`] or
/// [`Verdict::Drift`] when `p + s` rises past `p_min` plus the warning or
/// drift threshold times `s_min`. A drift is not also a warning; the next
/// update starts afresh. O(1) time and memory per value.
#[derive(Debug, Clone)]
pub struct Ddm {
    /// The validated parameters.
    params: DdmParams,
    /// The error rate since the last reset.
    errors: RunningMean,
    /// `p` at the lowest `p + s` seen after warm-up (meaningful once
    /// `ps_min` is finite).
    p_min: f64,
    /// `s` at the lowest `p + s` seen after warm-up.
    s_min: f64,
    /// The lowest `p + s` seen after warm-up (+∞ before).
    ps_min: f64,
    /// Whether the last update was in the warning zone.
    warning: bool,
    /// Whether the last update reported drift: the next one resets first.
    drift: bool,
}

// === impl DdmParams ===

impl Default for DdmParams {
    fn default() -> Self {
        DdmParams {
            warm_start: 30,
            warning_threshold: 2.0,
            drift_threshold: 3.0,
        }
    }
}

impl DdmParams {
    /// Checks both thresholds: finite and at least 0.
    pub fn validate(&self) -> Result<(), InvalidParam> {
        InvalidParam::non_negative("ddm", "warning_threshold", self.warning_threshold)?;
        InvalidParam::non_negative("ddm", "drift_threshold", self.drift_threshold)
    }
}

// === impl Ddm ===

impl Default for Ddm {
    /// River's defaults ([`DdmParams::default`]).
    fn default() -> Self {
        Ddm::with_valid(DdmParams::default())
    }
}

impl Ddm {
    /// A detector with these parameters, if they are valid
    /// ([`DdmParams::validate`]).
    pub fn new(params: DdmParams) -> Result<Self, InvalidParam> {
        params.validate()?;
        Ok(Ddm::with_valid(params))
    }

    fn with_valid(params: DdmParams) -> Self {
        Ddm {
            params,
            errors: RunningMean::default(),
            p_min: 0.0,
            s_min: 0.0,
            ps_min: f64::INFINITY,
            warning: false,
            drift: false,
        }
    }

    /// The parameters.
    pub fn params(&self) -> &DdmParams {
        &self.params
    }

    /// Forgets every value seen, as after a drift.
    pub fn reset(&mut self) {
        *self = Ddm::with_valid(self.params);
    }

    /// Adds one outcome (`true`: an error) and reports the state after it.
    pub fn update(&mut self, error: bool) -> Verdict {
        if self.drift {
            self.reset();
        }
        self.errors.add(if error { 1.0 } else { 0.0 });
        let p = self.errors.get();
        let n = self.errors.n();
        let s = (p * (1.0 - p) / n).sqrt();
        if n > self.params.warm_start as f64 {
            if p + s <= self.ps_min {
                self.p_min = p;
                self.s_min = s;
                self.ps_min = p + s;
            }
            let level = |threshold: f64| self.p_min + threshold * self.s_min;
            self.warning = p + s > level(self.params.warning_threshold);
            if p + s > level(self.params.drift_threshold) {
                self.drift = true;
                self.warning = false;
            }
        }
        if self.drift {
            Verdict::Drift
        } else if self.warning {
            Verdict::Warning
        } else {
            Verdict::Stable
        }
    }

    /// Whether the last update reported drift (River's `drift_detected`).
    pub fn drift_detected(&self) -> bool {
        self.drift
    }

    /// Whether the last update was in the warning zone (River's
    /// `warning_detected`; false when it reported drift).
    pub fn warning_detected(&self) -> bool {
        self.warning
    }

    /// The outcomes counted since the last reset.
    pub fn n(&self) -> u64 {
        self.errors.n() as u64
    }

    /// The error rate `p` since the last reset (0 before the first outcome).
    pub fn error_rate(&self) -> f64 {
        self.errors.get()
    }

    /// `p_min`: the error rate where `p + s` was lowest, once warmed up.
    pub fn min_error_rate(&self) -> Option<f64> {
        self.ps_min.is_finite().then_some(self.p_min)
    }

    /// `s_min`: the standard deviation where `p + s` was lowest, once
    /// warmed up.
    pub fn min_error_std(&self) -> Option<f64> {
        self.ps_min.is_finite().then_some(self.s_min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One error every `every` outcomes.
    fn periodic(every: usize, n: usize) -> impl Iterator<Item = bool> {
        (0..n).map(move |i| i % every == 0)
    }

    #[test]
    fn rising_error_rate_warns_then_drifts() {
        let mut ddm = Ddm::default();
        for error in periodic(10, 1000) {
            assert_eq!(ddm.update(error), Verdict::Stable);
        }
        let verdicts: Vec<Verdict> = periodic(2, 1000).map(|e| ddm.update(e)).collect();
        let warning = verdicts.iter().position(|v| *v == Verdict::Warning);
        let drift = verdicts.iter().position(|v| *v == Verdict::Drift);
        assert!(warning.is_some() && drift.is_some());
        assert!(warning < drift);
        assert!(!ddm.warning_detected() || !ddm.drift_detected());
    }

    #[test]
    fn drift_resets_at_the_next_update() {
        let mut ddm = Ddm::default();
        let errors = periodic(10, 500).chain(std::iter::repeat(true));
        for (i, error) in errors.enumerate() {
            if ddm.update(error).is_drift() {
                assert!(i > 500);
                assert_eq!(ddm.n(), i as u64 + 1);
                break;
            }
        }
        assert!(ddm.min_error_rate().is_some());
        assert_eq!(ddm.update(false), Verdict::Stable);
        assert_eq!(ddm.n(), 1);
        assert_eq!(ddm.error_rate(), 0.0);
        assert_eq!(ddm.min_error_rate(), None);
        assert!(!ddm.drift_detected() && !ddm.warning_detected());
    }

    #[test]
    fn silent_during_warm_start() {
        let mut ddm = Ddm::new(DdmParams {
            warm_start: 50,
            ..DdmParams::default()
        })
        .unwrap();
        // Errors from the 46th value: nothing is judged before the 51st.
        for i in 0..50 {
            assert_eq!(ddm.update(i >= 45), Verdict::Stable);
        }
        assert_eq!(ddm.min_error_rate(), None);
        ddm.update(true);
        assert_eq!(ddm.min_error_rate(), Some(6.0 / 51.0));
    }

    #[test]
    fn a_perfect_model_drifts_at_its_first_error() {
        // p_min = s_min = 0: any error exceeds both levels at once.
        let mut ddm = Ddm::default();
        for _ in 0..100 {
            assert_eq!(ddm.update(false), Verdict::Stable);
        }
        assert_eq!(ddm.min_error_std(), Some(0.0));
        assert_eq!(ddm.update(true), Verdict::Drift);
        assert!(!ddm.warning_detected());
    }

    #[test]
    fn reset_forgets_everything() {
        let mut ddm = Ddm::default();
        for error in periodic(3, 200) {
            ddm.update(error);
        }
        ddm.reset();
        assert_eq!((ddm.n(), ddm.error_rate()), (0, 0.0));
        assert_eq!(ddm.min_error_rate(), None);
    }

    #[test]
    fn rejects_bad_params() {
        for params in [
            DdmParams {
                warning_threshold: f64::INFINITY,
                ..DdmParams::default()
            },
            DdmParams {
                drift_threshold: -3.0,
                ..DdmParams::default()
            },
        ] {
            assert!(Ddm::new(params).is_err(), "{params:?}");
        }
    }
}
