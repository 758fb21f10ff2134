//! Concept drift: streaming change detectors fed one value at a time.
//!
//! Each detector reports the same detections as River 0.26.1 on the same
//! stream with the same parameters, and `tests/reference_concept.rs` proves
//! it against detection indices computed once by River
//! (`scripts/reference/generate`):
//!
//! | detector | reference | input |
//! |---|---|---|
//! | [`PageHinkley`] | `river.drift.PageHinkley` | a score per request |
//! | [`Adwin`] | `river.drift.ADWIN` | a score per request |
//! | [`Ddm`] | `river.drift.binary.DDM` | an error bit per labelled request |
//!
//! All three are pure and synchronous, O(1) amortised per value (ADWIN:
//! O(log W) on the values where it checks for a cut, W the window length)
//! and do not allocate per value once warmed up. `update` returns a
//! [`Verdict`] for that value; like River, a detector that reported
//! [`Verdict::Drift`] keeps its state (so its getters still describe the
//! window that drifted) and starts afresh at the next `update`.
//!
//! Non-finite values (NaN, ±∞) are not counted: they would poison River's
//! running sums for good. The reset pending after a drift still happens, as
//! at the start of every update, then the value is dropped and `update`
//! returns [`Verdict::Stable`]. Callers that want to count such values do
//! it in validation, before the detector.

mod adwin;
mod ddm;
mod mean;
mod page_hinkley;

pub use adwin::{Adwin, AdwinParams};
pub use ddm::{Ddm, DdmParams};
pub use page_hinkley::{PageHinkley, PageHinkleyMode, PageHinkleyParams, UnknownMode};

/// What a detector concluded from the value just given to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// No change detected.
    Stable,
    /// A change may be starting (DDM's warning zone; never returned by
    /// Page–Hinkley or ADWIN, which have no warning level).
    Warning,
    /// A change was detected at this value. The detector resets at its next
    /// update.
    Drift,
}

/// A detector parameter outside the range the detector accepts.
///
/// The ranges are narrower than River's (which checks almost nothing) only
/// where River would panic or compute nonsense: a zero ADWIN clock, an
/// ADWIN row of zero buckets, a significance outside (0, 1), a non-finite
/// or negative threshold, a forgetting factor outside (0, 1].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detector} {param}: {requirement}")]
pub struct InvalidParam {
    /// The detector, e.g. `"adwin"`.
    pub detector: &'static str,
    /// The parameter, named as in River, e.g. `"clock"`.
    pub param: &'static str,
    /// What the value must satisfy, e.g. `"must be at least 1"`.
    pub requirement: &'static str,
}

// === impl Verdict ===

impl Verdict {
    /// The name used in logs and metric labels: `stable`, `warning` or
    /// `drift`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Stable => "stable",
            Verdict::Warning => "warning",
            Verdict::Drift => "drift",
        }
    }

    /// Whether this is [`Verdict::Drift`].
    pub fn is_drift(self) -> bool {
        self == Verdict::Drift
    }
}

// === impl InvalidParam ===

impl InvalidParam {
    /// Checks that `value` is finite and at least 0.
    fn non_negative(
        detector: &'static str,
        param: &'static str,
        value: f64,
    ) -> Result<(), InvalidParam> {
        if value.is_finite() && value >= 0.0 {
            Ok(())
        } else {
            Err(InvalidParam {
                detector,
                param,
                requirement: "must be finite and at least 0",
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_names() {
        assert_eq!(Verdict::Stable.as_str(), "stable");
        assert_eq!(Verdict::Warning.as_str(), "warning");
        assert_eq!(Verdict::Drift.as_str(), "drift");
        assert!(Verdict::Drift.is_drift());
        assert!(!Verdict::Warning.is_drift());
    }

    #[test]
    fn invalid_param_message() {
        let error = InvalidParam::non_negative("ddm", "drift_threshold", f64::NAN).unwrap_err();
        assert_eq!(
            error.to_string(),
            "ddm drift_threshold: must be finite and at least 0"
        );
        assert!(InvalidParam::non_negative("ddm", "drift_threshold", 0.0).is_ok());
        assert!(InvalidParam::non_negative("ddm", "drift_threshold", -1.0).is_err());
    }
}
