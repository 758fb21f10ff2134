//! The reference profile that drift and anomaly detectors compare live
//! traffic against (DESIGN.md §4).
//!
//! A [`Baseline`] is built by one [`BaselineBuilder`] either from a file of
//! training data (`sidewatch baseline build`, via [`source`]) or from a
//! model's first N live observations (`baseline: { learn: N, save: FILE }`),
//! and saved as JSON (`M.baseline.json`). It is pure data plus the
//! statistics that make it: no clock (build time is passed in), no async.
//!
//! What windows rely on:
//! - numeric features: quantile bin `edges` (live values are binned with
//!   [`bin_index`], the same function that counted the reference
//!   `proportions`) and a raw-value `sample` for KS and Wasserstein;
//! - categorical features: reference `counts` and `shares`;
//! - the model: a mean vector and covariance over the numeric features and
//!   a sample of complete numeric rows for multivariate detectors.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

mod accumulate;
mod builder;
mod check;
mod error;
mod file;
mod options;
mod reservoir;
pub mod source;
mod stats;

pub use builder::BaselineBuilder;
pub use error::BaselineError;
pub use options::{BuildOptions, LineageInputs, MAX_BINS};
pub use stats::{bin_index, quantile};

/// The version of the file layout this code writes and reads.
pub const FORMAT: u32 = 1;

/// A model's reference profile, as stored in `M.baseline.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    /// File layout version ([`FORMAT`]); a reader refuses others.
    pub format: u32,
    /// The model this baseline describes.
    pub model: String,
    /// One profile per feature, in the model's feature order.
    pub features: Vec<FeatureProfile>,
    /// The model's answers, when the reference data had them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction: Option<PredictionProfile>,
    /// Names of the numeric features, in order: the axes of `mean`,
    /// `covariance` and `rows`.
    pub numeric_features: Vec<String>,
    /// Mean of each numeric feature over complete rows (rows with any
    /// numeric value missing or invalid are skipped for `mean`,
    /// `covariance` and `rows`, so the three describe the same rows).
    pub mean: Vec<f64>,
    /// Sample covariance (ddof = 1, like `np.cov`) over complete rows.
    pub covariance: Vec<Vec<f64>>,
    /// A seeded reservoir sample of complete numeric rows (at most
    /// `lineage.row_cap`), for PCA and other multivariate work.
    pub rows: Vec<Vec<f64>>,
    /// Where the profile came from and how it was made.
    pub lineage: Lineage,
}

/// One feature's reference profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureProfile {
    /// The feature's name, as the model's config spells it.
    pub name: String,
    /// Numeric or categorical: which of the two profiles below is set.
    pub kind: FeatureKind,
    /// Rows with a usable value.
    pub count: u64,
    /// Rows where the value was absent (empty cell, null, missing key).
    pub missing: u64,
    /// Rows where a value was present but unusable: NaN, ±Inf, or a label
    /// in a numeric feature. Kept apart from `missing` because a rise in
    /// either means something different live.
    #[serde(default)]
    pub invalid: u64,
    /// Set for numeric features.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numeric: Option<NumericProfile>,
    /// Set for categorical features.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub categorical: Option<CategoricalProfile>,
}

/// Whether a feature is a number or a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureKind {
    /// Real-valued: binned, summarised, sampled.
    Numeric,
    /// A label: counted per category.
    Categorical,
}

/// The distribution of one numeric variable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumericProfile {
    /// Strictly increasing interior cut points of the quantile bins: bin 0
    /// is (−∞, e₀], bin i is (eᵢ₋₁, eᵢ], the last is (eₖ₋₂, +∞); see
    /// [`bin_index`]. Quantiles as numpy's `np.quantile(x, i/k)`; repeated
    /// quantiles (discrete data) are dropped, so there may be fewer than k
    /// bins.
    pub edges: Vec<f64>,
    /// The reference share of values in each bin (`edges.len() + 1` of
    /// them, summing to 1). A share can be 0, so divergences must smooth.
    pub proportions: Vec<f64>,
    /// Arithmetic mean.
    pub mean: f64,
    /// Sample standard deviation (ddof = 1, as pandas and `np.std(x,
    /// ddof=1)`); 0 for a single value.
    pub std: f64,
    /// Median (numpy's linear quantile at 0.5).
    pub median: f64,
    /// Raw median absolute deviation, unscaled. A robust z-score is
    /// `(x − median) / (1.4826 · mad)`; 1.4826 makes MAD estimate σ for
    /// normal data. Can be 0 when most values are equal.
    pub mad: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// A seeded reservoir sample of the raw values (at most
    /// `lineage.sample_cap`), sorted ascending, for KS and Wasserstein.
    pub sample: Vec<f64>,
}

/// The distribution of one categorical variable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoricalProfile {
    /// Rows per category.
    pub counts: BTreeMap<String, u64>,
    /// Each category's share of `count` (summing to 1).
    pub shares: BTreeMap<String, f64>,
}

/// The model's answers in the reference data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictionProfile {
    /// Rows that had a prediction.
    pub count: u64,
    /// Rows per predicted class index.
    pub class_counts: BTreeMap<u32, u64>,
    /// Each class's share of the rows with a class (summing to 1).
    pub class_shares: BTreeMap<u32, f64>,
    /// The distribution of the score (max probability or scalar score).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<NumericProfile>,
}

/// Where a baseline came from: enough to rebuild it and to tell whether
/// the data it describes has changed since.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lineage {
    /// The source file's path, or `live`.
    pub source: String,
    /// Hex SHA-256 of the source file's bytes (none for live learning).
    pub sha256: Option<String>,
    /// Rows profiled.
    pub rows: u64,
    /// When it was built (RFC 3339, UTC).
    pub built_at: String,
    /// What built it: `sidewatch <version> baseline build` or `learned
    /// from N live observations`.
    pub built_by: String,
    /// Quantile bins asked for (a feature may have fewer, see `edges`).
    pub bins: usize,
    /// Cap of each per-feature `sample`.
    pub sample_cap: usize,
    /// Cap of the model-level `rows` sample.
    pub row_cap: usize,
    /// Seed of the reservoir samples: same data and seed, same file.
    pub seed: u64,
}

// === impl Baseline ===

impl Baseline {
    /// The profile of feature `name`, if the baseline has one.
    pub fn feature(&self, name: &str) -> Option<&FeatureProfile> {
        self.features.iter().find(|feature| feature.name == name)
    }

    /// One paragraph for a person: rows, features and their kinds, bins,
    /// predictions and the source's SHA-256.
    pub fn summary(&self) -> String {
        let features: Vec<String> = self
            .features
            .iter()
            .map(|feature| match (&feature.numeric, &feature.categorical) {
                (Some(numeric), _) => format!(
                    "{} (numeric, {} bins)",
                    feature.name,
                    numeric.proportions.len()
                ),
                (_, Some(categorical)) => format!(
                    "{} (categorical, {} categories)",
                    feature.name,
                    categorical.counts.len()
                ),
                _ => format!("{} (no profile)", feature.name),
            })
            .collect();
        let mut text = format!(
            "Baseline for model '{}' from {}: {} rows; {} features: {}; {} quantile bins asked for",
            self.model,
            self.lineage.source,
            self.lineage.rows,
            self.features.len(),
            features.join(", "),
            self.lineage.bins,
        );
        if let Some(prediction) = &self.prediction {
            let mut what = Vec::new();
            if !prediction.class_counts.is_empty() {
                what.push(format!("{} classes", prediction.class_counts.len()));
            }
            if prediction.score.is_some() {
                what.push("scores".to_owned());
            }
            text.push_str(&format!(
                "; predictions on {} rows ({})",
                prediction.count,
                what.join(", ")
            ));
        }
        if let Some(sha256) = &self.lineage.sha256 {
            text.push_str(&format!("; source sha256 {sha256}"));
        }
        text.push('.');
        text
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::observation::FeatureValue;

    /// A small baseline for model `iris`: numeric `a` (0..20) and
    /// categorical `b` (a quarter `x`, the rest `y`).
    pub(crate) fn baseline() -> Baseline {
        let features = vec![
            ("a".to_owned(), FeatureKind::Numeric),
            ("b".to_owned(), FeatureKind::Categorical),
        ];
        let mut builder = BaselineBuilder::new("iris", features, BuildOptions::default());
        for i in 0..20 {
            let label = if i % 4 == 0 { "x" } else { "y" };
            builder.add_row(
                &[
                    FeatureValue::Number(f64::from(i)),
                    FeatureValue::Category(label.into()),
                ],
                None,
            );
        }
        let lineage = LineageInputs::live(20, SystemTime::UNIX_EPOCH);
        builder.finish(lineage).unwrap_or_else(|e| panic!("{e}"))
    }

    pub(crate) fn to_value(baseline: &Baseline) -> serde_json::Value {
        serde_json::to_value(baseline).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn json_shape_and_summary() {
        let b = baseline();
        let json = to_value(&b);
        assert_eq!(json["format"], 1);
        assert_eq!(json["features"][1]["kind"], "categorical");
        assert_eq!(json["features"][1]["categorical"]["shares"]["x"], 0.25);
        assert!(json["features"][1].get("numeric").is_none());
        assert_eq!(json["lineage"]["built_at"], "1970-01-01T00:00:00Z");
        assert_eq!(b.feature("b").map(|f| f.count), Some(20));
        let summary = b.summary();
        assert!(
            summary.contains(
                "20 rows; 2 features: a (numeric, 10 bins), b (categorical, 2 categories)"
            ),
            "{summary}"
        );
    }
}
