//! Observe-mode input validation: each observation is checked against the
//! baseline's view of the world and violations are counted, never acted on.

use crate::baseline::{Baseline, FeatureKind};
use crate::observation::{FeatureValue, Observation};

/// A kind of violation; its name is the `kind` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// A configured feature was absent.
    Missing,
    /// The request carried an input the model does not declare.
    Extra,
    /// A category where a number belongs, or the reverse.
    WrongType,
    /// NaN or ±Inf.
    NonFinite,
    /// Outside the baseline's [min, max] widened by its range.
    OutOfRange,
    /// A category the baseline never saw.
    UnknownCategory,
}

impl Violation {
    /// Every kind, in metric order.
    pub const ALL: [Violation; 6] = [
        Violation::Missing,
        Violation::Extra,
        Violation::WrongType,
        Violation::NonFinite,
        Violation::OutOfRange,
        Violation::UnknownCategory,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Violation::Missing => "missing",
            Violation::Extra => "extra",
            Violation::WrongType => "wrong_type",
            Violation::NonFinite => "non_finite",
            Violation::OutOfRange => "out_of_range",
            Violation::UnknownCategory => "unknown_category",
        }
    }
}

/// Calls `report(feature index, violation)` for each problem in `observation`.
///
/// Out of range means beyond the baseline's observed span widened by half
/// its width on each side: training data rarely covers the extremes, and a
/// tighter rule would flag ordinary tails.
pub fn check(
    observation: &Observation,
    baseline: Option<&Baseline>,
    categorical: &[bool],
    mut report: impl FnMut(usize, Violation),
) {
    for (i, value) in observation.features.iter().enumerate() {
        let is_categorical = categorical.get(i).copied().unwrap_or(false);
        let profile = baseline.and_then(|b| b.features.get(i));
        match value {
            FeatureValue::Missing => report(i, Violation::Missing),
            FeatureValue::Number(x) if !x.is_finite() => report(i, Violation::NonFinite),
            FeatureValue::Number(_) if is_categorical => {}
            FeatureValue::Number(x) => {
                if let Some(numeric) = profile.and_then(|p| p.numeric.as_ref()) {
                    let slack = (numeric.max - numeric.min).abs() * 0.5;
                    if *x < numeric.min - slack || *x > numeric.max + slack {
                        report(i, Violation::OutOfRange);
                    }
                }
            }
            FeatureValue::Category(_) if !is_categorical => report(i, Violation::WrongType),
            FeatureValue::Category(label) => {
                let known = profile
                    .filter(|p| p.kind == FeatureKind::Categorical)
                    .and_then(|p| p.categorical.as_ref())
                    .map(|c| c.counts.contains_key(&**label));
                if known == Some(false) {
                    report(i, Violation::UnknownCategory);
                }
            }
        }
    }
}
