//! The baseline's inverse covariance (precision matrix), computed once
//! through a Cholesky decomposition, for Mahalanobis distances of single
//! rows ([`Mahalanobis`](super::Mahalanobis)) and of window means
//! ([`MeanShift`](crate::detect::multivariate::MeanShift)).

use nalgebra::{Cholesky, DMatrix};

use super::{AnomalyError, check_finite};
use crate::baseline::Baseline;

/// Relative ridge added to a singular covariance: `Σ + λ·diag(Σ)` with
/// `λ = RIDGE` (multiplied by 10 until the Cholesky decomposition
/// succeeds). Scaling by each variance makes it a ridge of `λ` on the
/// correlation matrix, the same for every unit of measure.
pub const RIDGE: f64 = 1e-6;

/// A covariance counts as singular when, for some feature `i`, the
/// Cholesky pivot `Lᵢᵢ²` (the part of feature `i`'s variance that the
/// features before it do not explain) is below `SINGULAR_PIVOT · Σᵢᵢ`:
/// the feature is, to ten digits, a linear combination of others. A bare
/// "decomposition succeeded" test would let rounding decide.
pub const SINGULAR_PIVOT: f64 = 1e-10;

/// Ridges tried (`λ = 1e-6 … 1e-3`) before giving up: a covariance
/// computed from data is positive semi-definite and needs only the first;
/// one that needs more than 1e-3 is not a covariance.
const RIDGE_ATTEMPTS: usize = 4;

/// The baseline mean and inverse covariance of `d` numeric features.
#[derive(Debug, Clone, PartialEq)]
pub struct Precision {
    /// Baseline mean, one per numeric axis.
    mean: Vec<f64>,
    /// `Σ⁻¹`, `d × d`, row-major, symmetric.
    inverse: Vec<f64>,
    /// The `λ` that was added (0 when the covariance was regular), so
    /// reports can say the distance is regularised.
    ridge: f64,
}

// === impl Precision ===

impl Precision {
    /// Inverts `covariance` (`d × d`, symmetrised as `(Σ + Σᵀ)/2`) around
    /// `mean` (`d` values). A singular covariance (see [`SINGULAR_PIVOT`])
    /// is regularised with [`RIDGE`]; a zero variance is replaced by the
    /// mean of the positive variances (or 1) before the ridge is scaled, so
    /// a constant feature gets a tiny variance and any deviation from its
    /// value is a very large distance.
    pub fn new(mean: &[f64], covariance: &[Vec<f64>]) -> Result<Precision, AnomalyError> {
        let d = mean.len();
        if d == 0 {
            return Err(AnomalyError::Baseline {
                detector: "mahalanobis",
                why: "there are no numeric features".to_owned(),
            });
        }
        check_finite("mean", mean)?;
        if covariance.len() != d {
            return Err(AnomalyError::Shape {
                what: "covariance",
                expected: d,
                got: covariance.len(),
            });
        }
        for row in covariance {
            if row.len() != d {
                return Err(AnomalyError::Shape {
                    what: "covariance row",
                    expected: d,
                    got: row.len(),
                });
            }
            check_finite("covariance", row)?;
        }
        if (0..d).any(|i| covariance[i][i] < 0.0) {
            return Err(AnomalyError::Decomposition(
                "the covariance has a negative variance".to_owned(),
            ));
        }
        let sigma = DMatrix::from_fn(d, d, |i, j| 0.5 * (covariance[i][j] + covariance[j][i]));
        let (cholesky, ridge) = decompose(&sigma)?;
        let inverse = cholesky.inverse();
        let inverse = (0..d * d)
            .map(|k| {
                let (i, j) = (k / d, k % d);
                0.5 * (inverse[(i, j)] + inverse[(j, i)])
            })
            .collect();
        Ok(Precision {
            mean: mean.to_vec(),
            inverse,
            ridge,
        })
    }

    /// The precision of the baseline's numeric features (`mean`,
    /// `covariance`).
    pub fn from_baseline(baseline: &Baseline) -> Result<Precision, AnomalyError> {
        Precision::new(&baseline.mean, &baseline.covariance)
    }

    /// Number of numeric axes `d`.
    pub fn dims(&self) -> usize {
        self.mean.len()
    }

    /// The baseline mean.
    pub fn mean(&self) -> &[f64] {
        &self.mean
    }

    /// The ridge `λ` added to the covariance, 0 when none was needed.
    pub fn ridge(&self) -> f64 {
        self.ridge
    }

    /// `Σ⁻¹[i][j]`.
    pub fn inverse(&self, i: usize, j: usize) -> f64 {
        self.inverse[i * self.dims() + j]
    }

    /// The squared Mahalanobis distance `(x − μ)ᵀ Σ⁻¹ (x − μ)` of `x`
    /// (`d` finite values; NaN in, NaN out). `O(d²)`, no allocation.
    pub fn squared_distance(&self, x: &[f64]) -> f64 {
        let d = self.dims();
        debug_assert_eq!(x.len(), d);
        let mut total = 0.0;
        for (i, row) in self.inverse.chunks_exact(d).enumerate() {
            let mut weighted = 0.0;
            for ((p, xj), mj) in row.iter().zip(x).zip(&self.mean) {
                weighted += p * (xj - mj);
            }
            total += (x[i] - self.mean[i]) * weighted;
        }
        // A positive definite form is ≥ 0; rounding can dip below by ulps.
        total.max(0.0)
    }

    /// Each axis's share of [`squared_distance`](Self::squared_distance):
    /// `cᵢ = δᵢ · (Σ⁻¹δ)ᵢ` with `δ = x − μ`; they sum to the squared
    /// distance (a term can be negative when correlated features deviate
    /// in opposite directions). Written into `out`.
    pub fn contributions(&self, x: &[f64], out: &mut Vec<f64>) {
        let d = self.dims();
        out.clear();
        out.extend(self.inverse.chunks_exact(d).enumerate().map(|(i, row)| {
            let weighted: f64 = row
                .iter()
                .zip(x)
                .zip(&self.mean)
                .map(|((p, xj), mj)| p * (xj - mj))
                .sum();
            (x[i] - self.mean[i]) * weighted
        }));
    }
}

/// The Cholesky decomposition of `sigma`, regularised when singular, and
/// the ridge used.
fn decompose(sigma: &DMatrix<f64>) -> Result<(Cholesky<f64, nalgebra::Dyn>, f64), AnomalyError> {
    let d = sigma.nrows();
    if let Some(cholesky) = Cholesky::new(sigma.clone()) {
        let l = cholesky.l_dirty();
        let regular = (0..d).all(|i| {
            let variance = sigma[(i, i)];
            variance > 0.0 && l[(i, i)] * l[(i, i)] >= SINGULAR_PIVOT * variance
        });
        if regular {
            return Ok((cholesky, 0.0));
        }
    }
    let positive: Vec<f64> = (0..d).map(|i| sigma[(i, i)]).filter(|v| *v > 0.0).collect();
    let fallback = if positive.is_empty() {
        1.0
    } else {
        positive.iter().sum::<f64>() / positive.len() as f64
    };
    let mut ridge = RIDGE;
    for _ in 0..RIDGE_ATTEMPTS {
        let mut regularised = sigma.clone();
        for i in 0..d {
            let variance = sigma[(i, i)];
            let scale = if variance > 0.0 { variance } else { fallback };
            regularised[(i, i)] += ridge * scale;
        }
        if let Some(cholesky) = Cholesky::new(regularised) {
            return Ok((cholesky, ridge));
        }
        ridge *= 10.0;
    }
    Err(AnomalyError::Decomposition(format!(
        "the covariance is not positive definite even with a ridge of {:e}",
        ridge / 10.0
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn precision(mean: &[f64], covariance: &[&[f64]]) -> Precision {
        let covariance: Vec<Vec<f64>> = covariance.iter().map(|r| r.to_vec()).collect();
        Precision::new(mean, &covariance).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn diagonal_covariance_is_a_sum_of_squared_z() {
        let p = precision(&[1.0, 2.0], &[&[4.0, 0.0], &[0.0, 9.0]]);
        assert_eq!(p.ridge(), 0.0);
        let d2 = p.squared_distance(&[3.0, -1.0]);
        assert!((d2 - (1.0 + 1.0)).abs() < 1e-12, "{d2}");
        let mut c = Vec::new();
        p.contributions(&[3.0, -1.0], &mut c);
        assert!((c[0] - 1.0).abs() < 1e-12 && (c[1] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn singular_covariance_gets_a_ridge() {
        // x2 = x0 + x1 exactly: rank 2 of 3.
        let p = precision(
            &[0.0, 0.0, 0.0],
            &[&[1.0, 0.0, 1.0], &[0.0, 1.0, 1.0], &[1.0, 1.0, 2.0]],
        );
        assert_eq!(p.ridge(), RIDGE);
        // On the plane the distance is ordinary; off it, enormous.
        assert!((p.squared_distance(&[1.0, 1.0, 2.0]) - 2.0).abs() < 1e-4);
        assert!(p.squared_distance(&[0.0, 0.0, 1.0]) > 1e5);
        // A constant feature: any deviation is far.
        let constant = precision(&[0.0, 5.0], &[&[1.0, 0.0], &[0.0, 0.0]]);
        assert!(constant.squared_distance(&[0.0, 5.0]) == 0.0);
        // 0.01² / (1e-6 · 1): the ridge borrows the other variance.
        assert!((constant.squared_distance(&[0.0, 5.01]) - 100.0).abs() < 1e-3);
    }

    #[test]
    fn rejects_bad_shapes_and_values() {
        assert!(Precision::new(&[], &[]).is_err());
        assert!(Precision::new(&[0.0], &[vec![1.0, 0.0]]).is_err());
        assert!(Precision::new(&[f64::NAN], &[vec![1.0]]).is_err());
        assert!(Precision::new(&[0.0], &[vec![-1.0]]).is_err());
    }
}
