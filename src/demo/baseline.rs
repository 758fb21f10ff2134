//! The iris model's baseline, built in process from the baseline phase's
//! own distribution (as a team would profile a sample of known-good
//! traffic) and saved to a file for the sidecar's config to name.
//!
//! Each row carries the prediction the model server would return for it,
//! so the sidecar can test the predictions for drift as well as the inputs.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context;

use crate::baseline::{Baseline, BaselineBuilder, BuildOptions, FeatureKind, LineageInputs};
use crate::observation::{FeatureValue, Prediction};

use super::model::{FEATURES, MODEL_NAME, served_probabilities};
use super::phase::{self, BASELINE};

/// Rows profiled: enough for stable decile edges and a full KS sample
/// (`BuildOptions::sample_cap` keeps 5,000 values per feature).
pub const ROWS: usize = 5000;
/// Not the traffic's seed: the baseline is an independent draw from the
/// same distribution, as a real reference sample would be.
const SEED: u64 = 0xba5e_1111;
const FILE_NAME: &str = "iris.baseline.json";

/// A baseline file in a directory of its own, removed when dropped.
#[derive(Debug)]
pub struct BaselineFile {
    dir: PathBuf,
    path: PathBuf,
}

// === impl BaselineFile ===

impl BaselineFile {
    /// Builds the baseline and saves it under the system's temp directory.
    pub fn create() -> anyhow::Result<BaselineFile> {
        // The process id keeps demos running side by side (the CLI tests)
        // apart.
        let dir = std::env::temp_dir().join(format!("sidewatch-demo-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {} for the baseline", dir.display()))?;
        let file = BaselineFile {
            path: dir.join(FILE_NAME),
            dir,
        };
        build()?
            .save(&file.path)
            .context("cannot save the demo's baseline")?;
        Ok(file)
    }

    /// Where the baseline is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for BaselineFile {
    fn drop(&mut self) {
        // Only what this run wrote; anything else in the directory stays.
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Profiles [`ROWS`] flowers of the baseline phase with their predictions.
pub(super) fn build() -> anyhow::Result<Baseline> {
    let features = FEATURES
        .iter()
        .map(|name| (name.to_string(), FeatureKind::Numeric))
        .collect();
    let mut builder = BaselineBuilder::new(MODEL_NAME, features, BuildOptions::default());
    let mut rng = fastrand::Rng::with_seed(SEED);
    let mut row = Vec::with_capacity(FEATURES.len());
    for _ in 0..ROWS {
        phase::sample_row(&mut rng, &BASELINE, &mut row);
        let values: Vec<FeatureValue> = row.iter().map(|&x| FeatureValue::Number(x)).collect();
        let measurements = std::array::from_fn(|f| row[f]);
        let prediction = Prediction::from_probabilities(&served_probabilities(&measurements));
        builder.add_row(&values, Some(&prediction));
    }
    builder
        .finish(LineageInputs::live(ROWS as u64, SystemTime::now()))
        .context("cannot build the demo's baseline")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_baseline_profiles_every_feature_and_the_predictions() {
        let baseline = build().expect("the baseline builds");
        assert_eq!(baseline.model, MODEL_NAME);
        assert_eq!(baseline.lineage.rows, ROWS as u64);
        let names: Vec<&str> = baseline.features.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, FEATURES);
        let prediction = baseline.prediction.as_ref().expect("predictions profiled");
        assert_eq!(prediction.class_counts.len(), 3, "{prediction:?}");
        assert!(prediction.score.is_some());
    }

    #[test]
    fn the_file_is_saved_and_removed_with_its_handle() {
        let file = BaselineFile::create().expect("created");
        let path = file.path().to_owned();
        let loaded = Baseline::load(&path).expect("loads");
        assert_eq!(loaded.lineage.rows, ROWS as u64);
        drop(file);
        assert!(!path.exists());
    }
}
