//! Checks on a baseline: does it fit the model it is loaded for, and is it
//! internally consistent (a hand-edited or truncated-then-fixed file must
//! not reach a window that indexes `proportions` by bin).

use std::collections::BTreeSet;

use super::{Baseline, BaselineError, FeatureKind, NumericProfile};

/// How far proportions or shares may sum from 1 after a JSON round trip.
const SUM_TOLERANCE: f64 = 1e-6;

// === impl Baseline ===

impl Baseline {
    /// Checks that the baseline profiles exactly the model's features, in
    /// the model's order. A mismatch is a start-up error that lists every
    /// model feature missing from the baseline and every baseline feature
    /// the model lacks; the same names in another order get their own
    /// error, because windows pair values with profiles by position.
    pub fn check_features<S: AsRef<str>>(&self, names: &[S]) -> Result<(), BaselineError> {
        let configured: Vec<&str> = names.iter().map(AsRef::as_ref).collect();
        let ours: Vec<&str> = self.features.iter().map(|f| f.name.as_str()).collect();
        let ours_set: BTreeSet<&str> = ours.iter().copied().collect();
        let configured_set: BTreeSet<&str> = configured.iter().copied().collect();
        let missing: Vec<String> = configured
            .iter()
            .filter(|name| !ours_set.contains(*name))
            .map(|name| (*name).to_owned())
            .collect();
        let extra: Vec<String> = ours
            .iter()
            .filter(|name| !configured_set.contains(*name))
            .map(|name| (*name).to_owned())
            .collect();
        if !missing.is_empty() || !extra.is_empty() {
            return Err(BaselineError::FeatureMismatch {
                model: self.model.clone(),
                missing,
                extra,
            });
        }
        if ours != configured {
            return Err(BaselineError::FeatureOrder {
                model: self.model.clone(),
                baseline: ours.iter().map(|name| (*name).to_owned()).collect(),
                configured: configured.iter().map(|name| (*name).to_owned()).collect(),
            });
        }
        Ok(())
    }

    /// Checks every invariant windows and detectors rely on and reports all
    /// violations at once; `context` names the file or model in the error.
    pub(crate) fn validate(&self, context: &str) -> Result<(), BaselineError> {
        let mut problems = Vec::new();
        let mut names = BTreeSet::new();
        let mut numeric_names = Vec::new();
        for feature in &self.features {
            let name = &feature.name;
            if !names.insert(name.as_str()) {
                problems.push(format!("feature '{name}' appears twice"));
            }
            match (feature.kind, &feature.numeric, &feature.categorical) {
                (FeatureKind::Numeric, Some(numeric), None) => {
                    numeric_names.push(name.clone());
                    check_numeric(&format!("feature '{name}'"), numeric, &mut problems);
                }
                (FeatureKind::Categorical, None, Some(categorical)) => {
                    check_sum(
                        &format!("feature '{name}': shares"),
                        categorical.shares.values(),
                        &mut problems,
                    );
                }
                (kind, _, _) => problems.push(format!(
                    "feature '{name}' is {kind:?} but does not carry exactly that profile"
                )),
            }
        }
        if let Some(prediction) = &self.prediction {
            if !prediction.class_shares.is_empty() {
                check_sum(
                    "prediction: class shares",
                    prediction.class_shares.values(),
                    &mut problems,
                );
            }
            if let Some(score) = &prediction.score {
                check_numeric("prediction score", score, &mut problems);
            }
        }
        if self.numeric_features != numeric_names {
            problems.push(format!(
                "numeric_features is [{}] but the numeric features are [{}]",
                self.numeric_features.join(", "),
                numeric_names.join(", ")
            ));
        }
        let dims = numeric_names.len();
        if self.mean.len() != dims {
            problems.push(format!(
                "mean has {} values for {dims} numeric features",
                self.mean.len()
            ));
        }
        if self.covariance.len() != dims || self.covariance.iter().any(|row| row.len() != dims) {
            problems.push(format!("covariance is not {dims} × {dims}"));
        }
        if self.rows.iter().any(|row| row.len() != dims) {
            problems.push(format!("a sampled row does not have {dims} values"));
        }
        let all_finite = self
            .mean
            .iter()
            .chain(self.covariance.iter().flatten())
            .chain(self.rows.iter().flatten())
            .all(|x| x.is_finite());
        if !all_finite {
            problems.push("mean, covariance or rows hold a non-finite number".to_owned());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(BaselineError::Invalid {
                context: context.to_owned(),
                problems,
            })
        }
    }
}

fn check_numeric(what: &str, profile: &NumericProfile, problems: &mut Vec<String>) {
    let increasing = profile.edges.windows(2).all(|pair| pair[0] < pair[1]);
    if !increasing || profile.edges.iter().any(|edge| !edge.is_finite()) {
        problems.push(format!(
            "{what}: edges are not finite and strictly increasing"
        ));
    }
    if profile.proportions.len() != profile.edges.len() + 1 {
        problems.push(format!(
            "{what}: {} proportions for {} edges (want one more than edges)",
            profile.proportions.len(),
            profile.edges.len()
        ));
    }
    check_sum(
        &format!("{what}: proportions"),
        profile.proportions.iter(),
        problems,
    );
    let summary = [
        profile.mean,
        profile.std,
        profile.median,
        profile.mad,
        profile.min,
        profile.max,
    ];
    if summary.iter().any(|x| !x.is_finite()) || profile.sample.iter().any(|x| !x.is_finite()) {
        problems.push(format!(
            "{what}: a summary statistic or sample value is not finite"
        ));
    }
    if profile.min > profile.max || profile.std < 0.0 || profile.mad < 0.0 {
        problems.push(format!("{what}: min > max or a negative spread"));
    }
    if profile.sample.is_empty() {
        problems.push(format!("{what}: the sample is empty"));
    }
}

fn check_sum<'a>(what: &str, values: impl Iterator<Item = &'a f64>, problems: &mut Vec<String>) {
    let mut sum = 0.0;
    for &value in values {
        if !(0.0..=1.0).contains(&value) {
            problems.push(format!("{what}: {value} is not a share between 0 and 1"));
            return;
        }
        sum += value;
    }
    if (sum - 1.0).abs() > SUM_TOLERANCE {
        problems.push(format!("{what} sum to {sum}, not 1"));
    }
}

#[cfg(test)]
mod tests {
    use crate::baseline::tests::baseline;

    #[test]
    fn check_features_names_missing_extra_and_order() {
        let b = baseline();
        assert!(b.check_features(&["a", "b"]).is_ok());
        let text = b
            .check_features(&["a", "c", "d"])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            text,
            "the baseline for model 'iris' does not match its features; \
             model features missing from the baseline: c, d; \
             baseline features the model does not have: b"
        );
        let text = b
            .check_features(&["b".to_owned(), "a".to_owned()])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(text.contains("lists its features as [a, b] but the model's order is [b, a]"));
        assert!(text.contains("--features b,a"), "{text}");
    }
}
