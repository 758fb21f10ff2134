//! Everything that can go wrong building, reading or matching a baseline.
//! Each message names the file, feature or option at fault, because it is
//! what an operator reads at start-up.

use std::path::PathBuf;

use super::source::SourceError;

/// Why a baseline could not be built, saved, loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// The baseline file could not be read or written.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error (in the message, so not also a `source()`
        /// that `{:#}` would print twice).
        error: std::io::Error,
    },
    /// The baseline file is not a baseline this version can read.
    #[error("{} is not a valid baseline file: {error}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the JSON parser reported, with line and column.
        error: serde_json::Error,
    },
    /// The file's `format` is not one this version understands.
    #[error(
        "{} has baseline format {found}; this sidewatch reads format {}",
        path.display(), super::FORMAT
    )]
    Format {
        /// The file.
        path: PathBuf,
        /// The format the file declares.
        found: u32,
    },
    /// The baseline parsed but is inconsistent (hand-edited or corrupt).
    #[error("{context} is not a consistent baseline: {}", problems.join("; "))]
    Invalid {
        /// The file or model concerned.
        context: String,
        /// Every problem found, not just the first.
        problems: Vec<String>,
    },
    /// The baseline's features are not the model's.
    #[error("{}", mismatch(model, missing, extra))]
    FeatureMismatch {
        /// The model.
        model: String,
        /// Model features the baseline has no profile for.
        missing: Vec<String>,
        /// Baseline features the model does not have.
        extra: Vec<String>,
    },
    /// Same features, different order: positions would be misread.
    #[error(
        "the baseline for model '{model}' lists its features as [{}] but the model's order is [{}]; \
         rebuild it with --features {}",
        baseline.join(", "), configured.join(", "), configured.join(",")
    )]
    FeatureOrder {
        /// The model.
        model: String,
        /// The baseline's order.
        baseline: Vec<String>,
        /// The model's configured order.
        configured: Vec<String>,
    },
    /// Builder options out of range.
    #[error("invalid baseline options: {0}")]
    Options(String),
    /// Rows with a different number of values than features were offered.
    #[error(
        "{rejected} rows did not have the {expected} values model '{model}' has features for; \
         the decoder producing them is out of step with the configured features"
    )]
    RowWidth {
        /// The model.
        model: String,
        /// The number of features.
        expected: usize,
        /// Rows refused.
        rejected: u64,
    },
    /// Nothing to profile.
    #[error("no rows to build the baseline for model '{model}' from")]
    NoRows {
        /// The model.
        model: String,
    },
    /// A feature without a single usable value.
    #[error(
        "feature '{feature}' has no usable values ({missing} missing, {invalid} invalid) \
         in {rows} rows"
    )]
    NoValues {
        /// The feature.
        feature: String,
        /// Rows where it was absent.
        missing: u64,
        /// Rows where it was NaN, ±Inf or of the wrong type.
        invalid: u64,
        /// Rows seen.
        rows: u64,
    },
    /// Mean vector and covariance need two rows with every numeric value.
    #[error(
        "only {found} of {rows} rows have every numeric feature present; \
         the mean vector and covariance need at least 2"
    )]
    TooFewCompleteRows {
        /// Complete rows seen.
        found: u64,
        /// Rows seen.
        rows: u64,
    },
    /// The reference data could not be read.
    #[error(transparent)]
    Source(#[from] SourceError),
}

fn mismatch(model: &str, missing: &[String], extra: &[String]) -> String {
    let mut message = format!("the baseline for model '{model}' does not match its features");
    if !missing.is_empty() {
        message.push_str(&format!(
            "; model features missing from the baseline: {}",
            missing.join(", ")
        ));
    }
    if !extra.is_empty() {
        message.push_str(&format!(
            "; baseline features the model does not have: {}",
            extra.join(", ")
        ));
    }
    message
}
