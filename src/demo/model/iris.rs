//! The demo's model: multinomial logistic regression over Fisher's four
//! iris measurements (centimetres), three species out.

/// Input feature names, in tensor order.
pub const FEATURES: [&str; 4] = ["sepal_length", "sepal_width", "petal_length", "petal_width"];

/// Class names, in output order.
pub const CLASSES: [&str; 3] = ["setosa", "versicolor", "virginica"];

// Close to what scikit-learn's default `LogisticRegression` (multinomial,
// L2 with C = 1) fits on the 150 flowers; it gets about 97% of them right.
// Petal size carries most of the signal, as it does in the data.
const WEIGHTS: [[f64; 4]; 3] = [
    [-0.418, 0.967, -2.521, -1.084],
    [0.531, -0.315, -0.201, -0.949],
    [-0.113, -0.652, 2.722, 2.033],
];
const BIASES: [f64; 3] = [9.850, 2.237, -12.087];

/// Class probabilities for one row of measurements; they sum to 1.
pub fn probabilities(row: &[f64; 4]) -> [f64; 3] {
    let mut logits = BIASES;
    for (logit, weights) in logits.iter_mut().zip(WEIGHTS) {
        *logit += weights.iter().zip(row).map(|(w, x)| w * x).sum::<f64>();
    }
    // Shifting by the largest logit keeps `exp` from overflowing on
    // outlandish inputs without changing the result.
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps = logits.map(|l| (l - max).exp());
    let total: f64 = exps.iter().sum();
    exps.map(|e| e / total)
}

/// The index of the most probable class (the first on ties).
pub fn argmax(probabilities: &[f64; 3]) -> usize {
    let mut best = 0;
    for (i, p) in probabilities.iter().enumerate() {
        if *p > probabilities[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    // Per-species means of the data set.
    const SETOSA: [f64; 4] = [5.006, 3.428, 1.462, 0.246];
    const VERSICOLOR: [f64; 4] = [5.936, 2.770, 4.260, 1.326];
    const VIRGINICA: [f64; 4] = [6.588, 2.974, 5.552, 2.026];

    #[test]
    fn probabilities_sum_to_one() {
        for row in [
            SETOSA,
            VERSICOLOR,
            VIRGINICA,
            [0.0; 4],
            [100.0, -50.0, 1e6, 3.0],
        ] {
            let p = probabilities(&row);
            assert!(
                (p.iter().sum::<f64>() - 1.0).abs() < 1e-12,
                "{row:?} -> {p:?}"
            );
            assert!(
                p.iter().all(|x| x.is_finite() && *x >= 0.0),
                "{row:?} -> {p:?}"
            );
        }
    }

    #[test]
    fn species_means_get_their_own_class() {
        assert_eq!(argmax(&probabilities(&SETOSA)), 0);
        assert_eq!(argmax(&probabilities(&VERSICOLOR)), 1);
        assert_eq!(argmax(&probabilities(&VIRGINICA)), 2);
    }

    #[test]
    fn familiar_flowers_are_classified_confidently() {
        // The first flower of each species in Fisher's table.
        let setosa = probabilities(&[5.1, 3.5, 1.4, 0.2]);
        assert!(setosa[0] > 0.95, "{setosa:?}");
        let versicolor = probabilities(&[7.0, 3.2, 4.7, 1.4]);
        assert_eq!(argmax(&versicolor), 1, "{versicolor:?}");
        let virginica = probabilities(&[6.3, 3.3, 6.0, 2.5]);
        assert!(virginica[2] > 0.9, "{virginica:?}");
    }

    #[test]
    fn argmax_prefers_the_first_of_equals() {
        assert_eq!(argmax(&[0.2, 0.4, 0.4]), 1);
        assert_eq!(argmax(&[1.0 / 3.0; 3]), 0);
    }
}
