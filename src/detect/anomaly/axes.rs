//! The numeric axes of a model: where each of the baseline's
//! `numeric_features` sits among the model's features, and how an
//! observation becomes a numeric row.

use super::AnomalyError;
use crate::baseline::Baseline;
use crate::observation::FeatureValue;

/// The baseline's numeric features as positions in the model's feature
/// list (`Observation::features` order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumericAxes {
    /// `indices[axis]` is the model feature index of numeric axis `axis`.
    indices: Vec<usize>,
}

// === impl NumericAxes ===

impl NumericAxes {
    /// Axes from explicit model feature indices, one per numeric axis.
    pub fn new(indices: Vec<usize>) -> NumericAxes {
        NumericAxes { indices }
    }

    /// The axes of `baseline.numeric_features`, located by name in
    /// `baseline.features` (which is in the model's feature order).
    pub fn from_baseline(baseline: &Baseline) -> Result<NumericAxes, AnomalyError> {
        let indices = baseline
            .numeric_features
            .iter()
            .map(|name| {
                baseline
                    .features
                    .iter()
                    .position(|feature| &feature.name == name)
                    .ok_or_else(|| AnomalyError::Baseline {
                        detector: "numeric rows",
                        why: format!("numeric feature '{name}' has no profile"),
                    })
            })
            .collect::<Result<Vec<usize>, AnomalyError>>()?;
        Ok(NumericAxes { indices })
    }

    /// Number of numeric axes.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Whether the model has no numeric features.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// Model feature index of each axis.
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }

    /// Writes the numeric row of `features` into `row` (resized to
    /// [`len`](Self::len); no allocation once it has that capacity). A
    /// missing value, a label in a numeric feature or a feature beyond the
    /// end of `features` becomes NaN: validation reports those, detectors
    /// treat NaN as missing.
    pub fn fill(&self, features: &[FeatureValue], row: &mut Vec<f64>) {
        row.clear();
        row.extend(self.indices.iter().map(|&index| {
            features
                .get(index)
                .and_then(FeatureValue::as_number)
                .unwrap_or(f64::NAN)
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_maps_axes_and_marks_missing_as_nan() {
        let axes = NumericAxes::new(vec![0, 2, 5]);
        let features = [
            FeatureValue::Number(1.5),
            FeatureValue::Category("x".into()),
            FeatureValue::Missing,
        ];
        let mut row = Vec::new();
        axes.fill(&features, &mut row);
        assert_eq!(row[0], 1.5);
        assert!(row[1].is_nan() && row[2].is_nan());
        assert_eq!(row.len(), 3);
    }
}
