//! What a caller chooses about a baseline ([`BuildOptions`]) and what it
//! must tell the builder about where the rows came from ([`LineageInputs`]).

use std::path::Path;
use std::time::SystemTime;

use super::BaselineError;

/// The most quantile bins a feature may have: each bin is a
/// `feature_bin_total` series per feature, so this bounds label values.
pub const MAX_BINS: usize = 100;

/// How a baseline is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildOptions {
    /// Quantile bins per numeric feature (2 ..= [`MAX_BINS`]; default 10).
    pub bins: usize,
    /// Cap of each feature's raw-value sample (≥ 1; default 5000).
    pub sample_cap: usize,
    /// Cap of the sample of complete numeric rows (default 2000).
    pub row_cap: usize,
    /// Seed of every reservoir sample, so a rebuild is byte-identical.
    pub seed: u64,
}

impl BuildOptions {
    /// Checks the ranges, for callers (config validation) that want to
    /// fail before rows are collected rather than at `finish`.
    pub fn validate(&self) -> Result<(), BaselineError> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(BaselineError::Options(problems.join("; ")))
        }
    }

    /// Every option out of range, as sentences.
    pub(super) fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(2..=MAX_BINS).contains(&self.bins) {
            problems.push(format!("bins must be 2 to {MAX_BINS}, not {}", self.bins));
        }
        if self.sample_cap == 0 {
            problems.push("sample_cap must be at least 1".to_owned());
        }
        problems
    }
}

impl Default for BuildOptions {
    fn default() -> BuildOptions {
        BuildOptions {
            bins: 10,
            sample_cap: 5000,
            row_cap: 2000,
            seed: 1,
        }
    }
}

/// What the builder cannot know by itself: where the rows came from, and
/// the time (the statistical core has no clock; the caller passes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineageInputs {
    /// The source file's path, or `live`.
    pub source: String,
    /// Hex SHA-256 of the source file's bytes.
    pub sha256: Option<String>,
    /// When the baseline is being built.
    pub built_at: SystemTime,
    /// What built it.
    pub built_by: String,
}

impl LineageInputs {
    /// Lineage of `sidewatch baseline build` from the file at `path`.
    pub fn file(path: &Path, sha256: String, built_at: SystemTime) -> LineageInputs {
        LineageInputs {
            source: path.display().to_string(),
            sha256: Some(sha256),
            built_at,
            built_by: format!("sidewatch {} baseline build", env!("CARGO_PKG_VERSION")),
        }
    }

    /// Lineage of a baseline learned from a model's first `observations`.
    pub fn live(observations: u64, built_at: SystemTime) -> LineageInputs {
        LineageInputs {
            source: "live".to_owned(),
            sha256: None,
            built_at,
            built_by: format!("learned from {observations} live observations"),
        }
    }
}
