//! Per-request anomaly detectors: is this one observation unlike the
//! baseline (DESIGN.md §5)?
//!
//! | detector | flags when | reference |
//! |---|---|---|
//! | [`RobustZ`] | a feature's `\|x − median\| / (1.4826 · MAD)` exceeds `anomaly.zscore` | NumPy (`tests/reference_anomaly.rs`) |
//! | [`Mahalanobis`] | the squared distance from the baseline mean exceeds the χ²(d) quantile at `1 − anomaly.mahalanobis_p` | `scipy.spatial.distance.mahalanobis` |
//! | [`HalfSpaceTrees`] | the streaming Half-Space Trees score exceeds `anomaly.hst.threshold` (raised to the baseline's own 99.9th percentile score) | `river.anomaly.HalfSpaceTrees` 0.26.1 |
//! | [`ConfidenceCheck`] | a classification's top probability is below `min_confidence`, or its entropy above `max_entropy` | — |
//!
//! Numeric detectors read a *numeric row*: the values of the baseline's
//! `numeric_features`, in that order, with NaN for a missing value (see
//! [`NumericAxes`]). Each detector answers with an [`Option<Reason>`]: `None`
//! when the observation looks normal (no allocation), or the detector, the
//! model features involved, the score and the threshold it crossed.
//! [`AnomalyDetectors`] runs all of them over one [`Observation`] and
//! collects the reasons into a reusable [`Verdict`].
//!
//! Everything here is pure and synchronous. The one piece of state that
//! changes is the Half-Space Trees' mass profiles, so [`AnomalyDetectors`]
//! belongs to the model's single worker.
//!
//! [`Observation`]: crate::observation::Observation

mod axes;
mod confidence;
mod hst;
mod mahalanobis;
mod precision;
mod suite;
mod zscore;

pub use axes::NumericAxes;
pub use confidence::{ConfidenceCheck, ConfidenceConfig};
pub use hst::{CALIBRATION_MIN_ROWS, CALIBRATION_QUANTILE, HalfSpaceTrees, HstConfig, PADDING};
pub use mahalanobis::{Mahalanobis, chi_square_quantile};
pub use precision::{Precision, RIDGE, SINGULAR_PIVOT};
pub use suite::{AnomalyConfig, AnomalyDetectors};
pub use zscore::{MAD_TO_SIGMA, RobustZ, RobustZFeature};

/// Which detector raised a [`Reason`]. Its [`label`](Detector::label) is
/// the `detector` label of `sidewatch_anomalies_total` (a bounded set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Detector {
    /// One or more features far from their median, in robust z units.
    RobustZ,
    /// The row far from the baseline mean, in squared Mahalanobis distance.
    Mahalanobis,
    /// A high Half-Space Trees anomaly score.
    HalfSpaceTrees,
    /// A classification whose top probability is below the floor.
    LowConfidence,
    /// A classification whose entropy is above the ceiling.
    HighEntropy,
}

/// Why an observation was flagged: enough for a metric, an alert and an
/// audit record to say which detector, which features, how far and
/// against what.
#[derive(Debug, Clone, PartialEq)]
pub struct Reason {
    /// The detector that flagged it.
    pub detector: Detector,
    /// Indices (in the model's feature order, as in
    /// `Observation::features`) of the features responsible; see each
    /// detector for what it lists. Empty for prediction checks.
    pub features: Vec<usize>,
    /// The detector's score for this observation.
    pub score: f64,
    /// The threshold the score crossed: above it for every detector except
    /// [`Detector::LowConfidence`], which flags scores below it.
    pub threshold: f64,
}

/// Every reason one observation was flagged. Keep one per worker and
/// [`clear`](Verdict::clear) it between observations: a normal observation
/// then costs no allocation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdict {
    /// One entry per detector that flagged the observation, in the order
    /// the detectors ran.
    pub reasons: Vec<Reason>,
    /// Every detector's score for the observation, flagged or not, by
    /// [`Detector::index`]; `None` where a detector did not score it (so
    /// score distributions can be watched, not only the flags).
    pub scores: [Option<f64>; Detector::ALL.len()],
}

/// Why a detector could not be built from its configuration or baseline.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnomalyError {
    /// Parameters out of range, every problem in one sentence list.
    #[error("invalid anomaly settings: {0}")]
    Config(String),
    /// Vectors or matrices whose sizes do not fit together.
    #[error("{what} has {got} values where {expected} were expected")]
    Shape {
        /// Which input.
        what: &'static str,
        /// Size the other inputs imply.
        expected: usize,
        /// Size found.
        got: usize,
    },
    /// A NaN or infinite number where a finite one is required.
    #[error("{what} holds a value that is NaN or infinite")]
    NonFinite {
        /// Which input.
        what: &'static str,
    },
    /// The baseline lacks what the detector needs (e.g. no numeric
    /// features).
    #[error("baseline cannot support {detector}: {why}")]
    Baseline {
        /// The detector's label.
        detector: &'static str,
        /// What is missing.
        why: String,
    },
    /// A decomposition that should succeed did not (e.g. a covariance that
    /// stays indefinite even after regularisation).
    #[error("{0}")]
    Decomposition(String),
}

// === impl Detector ===

impl Detector {
    /// Every detector, in [`index`](Detector::index) order (the order they
    /// run in).
    pub const ALL: [Detector; 5] = [
        Detector::RobustZ,
        Detector::Mahalanobis,
        Detector::HalfSpaceTrees,
        Detector::LowConfidence,
        Detector::HighEntropy,
    ];

    /// The detector's position in [`Detector::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Stable snake_case name, for metric labels and JSON.
    pub fn label(self) -> &'static str {
        match self {
            Detector::RobustZ => "robust_z",
            Detector::Mahalanobis => "mahalanobis",
            Detector::HalfSpaceTrees => "half_space_trees",
            Detector::LowConfidence => "low_confidence",
            Detector::HighEntropy => "high_entropy",
        }
    }
}

// === impl Verdict ===

impl Verdict {
    /// An empty verdict.
    pub fn new() -> Verdict {
        Verdict::default()
    }

    /// Forgets the reasons and scores, keeping the allocation for the next
    /// observation.
    pub fn clear(&mut self) {
        self.reasons.clear();
        self.scores = [None; Detector::ALL.len()];
    }

    /// The score `detector` gave the observation, if it scored it.
    pub fn score(&self, detector: Detector) -> Option<f64> {
        self.scores[detector.index()]
    }

    /// Notes the score `detector` gave the observation.
    pub fn set_score(&mut self, detector: Detector, score: Option<f64>) {
        self.scores[detector.index()] = score;
    }

    /// Whether any detector flagged the observation.
    pub fn is_anomalous(&self) -> bool {
        !self.reasons.is_empty()
    }

    /// The reason given by `detector`, if it flagged the observation.
    pub fn reason(&self, detector: Detector) -> Option<&Reason> {
        self.reasons.iter().find(|r| r.detector == detector)
    }

    /// Adds a reason when there is one.
    pub fn push(&mut self, reason: Option<Reason>) {
        if let Some(reason) = reason {
            self.reasons.push(reason);
        }
    }
}

/// Checks that every value is finite.
fn check_finite(what: &'static str, values: &[f64]) -> Result<(), AnomalyError> {
    if values.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(AnomalyError::NonFinite { what })
    }
}
