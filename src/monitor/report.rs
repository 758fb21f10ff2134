//! What a drift evaluation found, in the shape `GET /v1/drift` serves.

use serde::Serialize;

/// The latest evaluation of every model.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DriftReports {
    /// One entry per model with a baseline.
    pub models: Vec<ModelDrift>,
}

/// One model's latest evaluation.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ModelDrift {
    /// The model.
    pub model: String,
    /// Where the baseline stands: `learning`, `ready`, or `missing`.
    pub baseline: &'static str,
    /// Whether the tests ran at the latest evaluation; false while the window
    /// holds fewer than `drift.min_samples` (then "no drift" means "unknown").
    pub evaluated: bool,
    /// Observations in the evaluated window.
    pub window_count: u64,
    /// RFC 3339 time of the evaluation; `None` before the first one.
    pub evaluated_at: Option<String>,
    /// Share of evaluated features that drifted. Univariate only: the
    /// multivariate verdict is about the model, not a feature, and has its
    /// own flag.
    pub drifted_share: f64,
    /// Whether a multivariate detector flagged the latest window (see
    /// [`MultivariateReport::drifted`]).
    pub multivariate_drifted: bool,
    /// Per feature, in model order.
    pub features: Vec<FeatureDrift>,
    /// The same tests on the predictions.
    pub prediction: PredictionDrift,
    /// The numeric features taken together; absent when
    /// `drift.multivariate.enabled` is false or no baseline is ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multivariate: Option<MultivariateReport>,
    /// Change detectors on the stream of prediction scores.
    pub concept: Vec<ConceptState>,
    /// Why nothing was evaluated yet, when that is so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One feature's evaluation.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FeatureDrift {
    /// Feature name.
    pub feature: String,
    /// `numeric` or `categorical`.
    pub kind: &'static str,
    /// Values of this feature in the window.
    pub count: u64,
    /// Whether any of its tests flagged it (see [`MethodResult::drifted`]).
    pub drifted: bool,
    /// One result per configured method that applies to this kind.
    pub methods: Vec<MethodResult>,
}

/// The predictions' evaluation.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PredictionDrift {
    /// Whether any test on the predictions flagged drift.
    pub drifted: bool,
    /// Class-share tests (`class`) and score tests (`score`).
    pub methods: Vec<MethodResult>,
}

/// One test's outcome.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MethodResult {
    /// `psi`, `ks`, `js`, `wasserstein`, `hellinger` or `chi2`.
    pub method: &'static str,
    /// What was tested, for predictions: `class` or `score`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<&'static str>,
    /// The statistic or distance (Wasserstein: normalised by the reference std).
    pub score: f64,
    /// Wasserstein only: the distance in the feature's own units.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_score: Option<f64>,
    /// For tests with one (ks, chi2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// What `score` (or, for tests, the p-value after correction) is compared with.
    pub threshold: f64,
    /// The verdict.
    pub drifted: bool,
}

/// Multivariate drift: has the joint distribution of the numeric features
/// moved, even where no single feature has?
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct MultivariateReport {
    /// Whether the detectors ran: the window held `drift.min_samples`
    /// complete numeric rows and the detectors could be fitted.
    pub evaluated: bool,
    /// Whether any method flagged the window.
    pub drifted: bool,
    /// The numeric features that make up a row, in row order.
    pub features: Vec<String>,
    /// Rows in the window (PCA imputes a missing value with the baseline mean).
    pub rows: u64,
    /// Rows with every numeric value present (the mean shift's rows).
    pub complete_rows: u64,
    /// `pca_reconstruction`, then `mahalanobis_shift`.
    pub methods: Vec<MultivariateMethod>,
    /// Why nothing was evaluated, when that is so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One multivariate method's outcome.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MultivariateMethod {
    /// `pca_reconstruction` or `mahalanobis_shift`.
    pub method: &'static str,
    /// PCA: the window's mean reconstruction error. Mean shift: Hotelling's
    /// `T = (x̄ − μ)ᵀ Σ⁻¹ (x̄ − μ) / (1/n + 1/N)`.
    pub score: f64,
    /// Mean shift: the χ²(d) quantile at `1 − alpha` that `score` must exceed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// PCA: lower end of the reference band (mean − sigmas · std of the
    /// reference chunks' mean errors, at least 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lower: Option<f64>,
    /// PCA: upper end of the reference band.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upper: Option<f64>,
    /// Mean shift: `χ²(d).sf(score)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// PCA: principal components kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub components: Option<usize>,
    /// PCA: share of the reference variance they explain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explained_variance: Option<f64>,
    /// The verdict: PCA outside its band, or the mean shift above its threshold.
    pub drifted: bool,
    /// Rows the method used.
    pub samples: u64,
}

/// One streaming change detector: on the prediction scores, or (DDM) on
/// the errors of joined feedback.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ConceptState {
    /// `page_hinkley`, `adwin` or `ddm`.
    pub detector: &'static str,
    /// Changes detected since start.
    pub events: u64,
    /// RFC 3339 time of the latest change, if any.
    pub last_event_at: Option<String>,
    /// DDM only: whether the error rate is in its warning zone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<bool>,
}

/// The latest flagged observations of every model (`GET /v1/anomalies`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct AnomalyReports {
    /// One entry per model.
    pub models: Vec<ModelAnomalies>,
}

/// One model's latest flagged observations.
#[derive(Debug, Clone, Serialize)]
pub struct ModelAnomalies {
    /// The model.
    pub model: String,
    /// Newest last, at most the last 100.
    pub anomalies: Vec<FlaggedObservation>,
}

/// An observation an anomaly detector flagged, with its reasons.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FlaggedObservation {
    /// The request it came from.
    pub request_id: String,
    /// Its row within the request's batch.
    pub row: u32,
    /// RFC 3339 time the request arrived.
    pub time: String,
    /// Why it was flagged.
    pub reasons: Vec<FlagReason>,
}

/// One detector's reason for flagging an observation.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FlagReason {
    /// `robust_z`, `mahalanobis`, `half_space_trees`, `low_confidence` or `high_entropy`.
    pub detector: &'static str,
    /// The features responsible, by name (empty for prediction checks).
    pub features: Vec<String>,
    /// The detector's score.
    pub score: f64,
    /// The threshold it crossed.
    pub threshold: f64,
}
