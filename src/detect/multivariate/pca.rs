//! PCA reconstruction-error drift, in NannyML's manner
//! (`DataReconstructionDriftCalculator`).

use nalgebra::{DMatrix, SymmetricEigen};

use super::MultivariateError;
use crate::baseline::Baseline;

/// Reference chunks when [`PcaConfig::chunk_size`] is not set (NannyML's
/// default chunker makes 10).
pub const DEFAULT_CHUNKS: usize = 10;

/// Features up to which a row is standardised in a stack buffer; wider
/// models allocate one per row.
const STACK_DIMS: usize = 64;

/// PCA drift parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PcaConfig {
    /// Keep the fewest components whose explained variance ratio sums to
    /// *more* than this (scikit-learn's float `n_components`, NannyML's
    /// default 0.65). Strictly between 0 and 1.
    pub variance: f64,
    /// Rows per reference chunk. `None` (the default) splits the rows
    /// into [`DEFAULT_CHUNKS`] chunks. Set it to the live window's typical
    /// size so the band describes windows of that size: the spread of a
    /// chunk's mean error shrinks as 1/√size.
    pub chunk_size: Option<usize>,
    /// Half-width of the alert band in standard deviations of the
    /// reference chunks' mean errors (default 3).
    pub sigmas: f64,
}

/// A PCA fitted on the reference rows, and the band of mean
/// reconstruction error that reference chunks stay in.
///
/// Fit (on `rows`, as NannyML fits on reference data):
/// 1. standardise each feature with the rows' mean and population
///    standard deviation, as scikit-learn's `StandardScaler` (a feature
///    scikit-learn deems constant gets scale 1);
/// 2. eigen-decompose the covariance of the standardised rows (nalgebra's
///    symmetric eigen decomposition, like scikit-learn's
///    `covariance_eigh` solver) and keep the top components that explain
///    more than [`PcaConfig::variance`] of the variance;
/// 3. a row's reconstruction error is the Euclidean norm of what the kept
///    components miss, `‖(I − VVᵀ)(z − z̄)‖` for the standardised row `z`,
///    which is `‖z − inverse_transform(transform(z))‖` in scikit-learn
///    (the sign of each component cancels);
/// 4. split the rows, in their stored order, into consecutive chunks of
///    [`PcaConfig::chunk_size`] rows (or [`DEFAULT_CHUNKS`] equal chunks),
///    dropping the incomplete tail; the chunks' mean errors give the band
///    `mean ± sigmas · std` (population std, NannyML's
///    `StandardDeviationThreshold`), the lower end clipped at 0. The
///    baseline's `rows` are a uniform reservoir sample, so its chunks are
///    random subsets: the band measures sampling noise only.
///
/// Live windows: the mean reconstruction error of the window's rows,
/// drifted when outside the band. A missing or infinite value is imputed
/// with the feature's reference mean (NannyML's default mean imputer).
#[derive(Debug, Clone, PartialEq)]
pub struct PcaDrift {
    /// Reference mean of each feature.
    mean: Vec<f64>,
    /// Standardisation divisor of each feature.
    scale: Vec<f64>,
    /// Mean of the standardised rows (scikit-learn's `PCA.mean_`, ≈ 0).
    centre: Vec<f64>,
    /// `I − VVᵀ`, `d × d` row-major: maps a centred row to its residual.
    residual: Vec<f64>,
    /// Components kept.
    components: usize,
    /// Share of the variance they explain.
    explained: f64,
    /// Mean error over the reference chunks (the band's centre).
    reference_error: f64,
    /// Population std of the reference chunks' mean errors.
    reference_std: f64,
    /// Alert band.
    lower: f64,
    upper: f64,
    /// Chunks and rows per chunk the band came from.
    chunks: usize,
    chunk_size: usize,
}

/// One window's PCA drift evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PcaResult {
    /// Mean reconstruction error of the window's rows.
    pub mean_error: f64,
    /// Lower end of the reference band.
    pub lower: f64,
    /// Upper end of the reference band.
    pub upper: f64,
    /// Whether the mean error is outside the band.
    pub drifted: bool,
    /// Rows in the window.
    pub rows: u64,
}

// === impl PcaConfig ===

impl PcaConfig {
    /// Every parameter out of range, as sentences.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(self.variance > 0.0 && self.variance < 1.0) {
            problems.push(format!(
                "pca variance must be strictly between 0 and 1, not {}",
                self.variance
            ));
        }
        if self.chunk_size == Some(0) {
            problems.push("pca chunk_size must be at least 1".to_owned());
        }
        if !(self.sigmas > 0.0 && self.sigmas.is_finite()) {
            problems.push(format!("pca sigmas must be positive, not {}", self.sigmas));
        }
        problems
    }
}

impl Default for PcaConfig {
    fn default() -> PcaConfig {
        PcaConfig {
            variance: 0.65,
            chunk_size: None,
            sigmas: 3.0,
        }
    }
}

// === impl PcaDrift ===

impl PcaDrift {
    /// Fits on reference `rows` (all the same length, finite).
    pub fn fit(rows: &[Vec<f64>], config: &PcaConfig) -> Result<PcaDrift, MultivariateError> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(MultivariateError::Config(problems.join("; ")));
        }
        let (chunks, chunk_size) = chunking(rows.len(), config.chunk_size)?;
        let d = rows[0].len();
        if d == 0 {
            return Err(MultivariateError::NoFeatures);
        }
        for row in rows {
            if row.len() != d {
                return Err(MultivariateError::Shape {
                    what: "reference row",
                    expected: d,
                    got: row.len(),
                });
            }
            if !row.iter().all(|x| x.is_finite()) {
                return Err(MultivariateError::NonFinite {
                    what: "reference rows",
                });
            }
        }
        let (mean, scale) = standardiser(rows, d);
        let n = rows.len() as f64;
        let z = DMatrix::from_fn(rows.len(), d, |r, j| (rows[r][j] - mean[j]) / scale[j]);
        let centre: Vec<f64> = (0..d).map(|j| z.column(j).sum() / n).collect();
        let mut centred = z;
        for (j, c) in centre.iter().enumerate() {
            centred.column_mut(j).add_scalar_mut(-c);
        }
        let covariance = centred.tr_mul(&centred) / (n - 1.0);
        let (components, explained, residual) = project(covariance, config.variance)?;
        let mut pca = PcaDrift {
            mean,
            scale,
            centre,
            residual,
            components,
            explained,
            reference_error: 0.0,
            reference_std: 0.0,
            lower: 0.0,
            upper: 0.0,
            chunks,
            chunk_size,
        };
        let chunk_errors: Vec<f64> = rows
            .chunks_exact(chunk_size)
            .take(chunks)
            .map(|chunk| {
                let total: f64 = chunk.iter().map(|r| pca.reconstruction_error(r)).sum();
                total / chunk_size as f64
            })
            .collect();
        let centre_error = chunk_errors.iter().sum::<f64>() / chunks as f64;
        let variance = chunk_errors
            .iter()
            .map(|e| (e - centre_error) * (e - centre_error))
            .sum::<f64>()
            / chunks as f64;
        pca.reference_error = centre_error;
        pca.reference_std = variance.sqrt();
        pca.lower = (centre_error - config.sigmas * pca.reference_std).max(0.0);
        pca.upper = centre_error + config.sigmas * pca.reference_std;
        Ok(pca)
    }

    /// Fits on the baseline's sample of complete numeric `rows`.
    pub fn from_baseline(
        baseline: &Baseline,
        config: &PcaConfig,
    ) -> Result<PcaDrift, MultivariateError> {
        if baseline.numeric_features.is_empty() {
            return Err(MultivariateError::NoFeatures);
        }
        PcaDrift::fit(&baseline.rows, config)
    }

    /// Number of features `d`.
    pub fn dims(&self) -> usize {
        self.mean.len()
    }

    /// Components kept.
    pub fn components(&self) -> usize {
        self.components
    }

    /// Share of the reference variance the kept components explain.
    pub fn explained_variance(&self) -> f64 {
        self.explained
    }

    /// The alert band `(lower, upper)` for a window's mean error.
    pub fn band(&self) -> (f64, f64) {
        (self.lower, self.upper)
    }

    /// Mean and population std of the reference chunks' mean errors, and
    /// how many chunks of how many rows they came from.
    pub fn reference_chunks(&self) -> (f64, f64, usize, usize) {
        (
            self.reference_error,
            self.reference_std,
            self.chunks,
            self.chunk_size,
        )
    }

    /// The reconstruction error of one row (`d` values; NaN and ±∞
    /// imputed with the reference mean). `O(d²)` multiply-adds after `d`
    /// divisions; no allocation up to 64 features.
    pub fn reconstruction_error(&self, row: &[f64]) -> f64 {
        let d = self.dims();
        debug_assert_eq!(row.len(), d);
        let centred = |j: usize| {
            let x = row.get(j).copied().unwrap_or(f64::NAN);
            let x = if x.is_finite() { x } else { self.mean[j] };
            (x - self.mean[j]) / self.scale[j] - self.centre[j]
        };
        // Standardise each value once, not once per residual line: the
        // division dominated the cost at 16 features.
        if d <= STACK_DIMS {
            let mut z = [0.0; STACK_DIMS];
            for (j, slot) in z.iter_mut().enumerate().take(d) {
                *slot = centred(j);
            }
            self.residual_norm(&z[..d])
        } else {
            let z: Vec<f64> = (0..d).map(centred).collect();
            self.residual_norm(&z)
        }
    }

    /// `‖(I − VVᵀ) z‖` for a standardised, centred row `z`.
    fn residual_norm(&self, z: &[f64]) -> f64 {
        let mut squares = 0.0;
        for line in self.residual.chunks_exact(z.len()) {
            let r: f64 = line.iter().zip(z).map(|(m, c)| m * c).sum();
            squares += r * r;
        }
        squares.sqrt()
    }

    /// Judges a window whose rows' reconstruction errors sum to
    /// `error_sum` over `rows` rows (`None` for an empty window).
    pub fn evaluate(&self, error_sum: f64, rows: u64) -> Option<PcaResult> {
        if rows == 0 {
            return None;
        }
        let mean_error = error_sum / rows as f64;
        Some(PcaResult {
            mean_error,
            lower: self.lower,
            upper: self.upper,
            drifted: !(self.lower..=self.upper).contains(&mean_error),
            rows,
        })
    }
}

/// `(chunks, rows per chunk)` for `n` reference rows: at least two
/// chunks (for a spread) of at least one row, and two rows in all (for a
/// covariance).
fn chunking(n: usize, chunk_size: Option<usize>) -> Result<(usize, usize), MultivariateError> {
    let (chunks, size, need) = match chunk_size {
        Some(size) => (n / size.max(1), size.max(1), 2 * size.max(1)),
        None => (DEFAULT_CHUNKS, n / DEFAULT_CHUNKS, DEFAULT_CHUNKS),
    };
    if chunks < 2 || size == 0 || n < 2 {
        return Err(MultivariateError::TooFewRows {
            need: need.max(2),
            have: n,
        });
    }
    Ok((chunks, size))
}

/// Mean and `StandardScaler` scale (population std; 1 for a feature
/// scikit-learn deems constant) of each column.
fn standardiser(rows: &[Vec<f64>], d: usize) -> (Vec<f64>, Vec<f64>) {
    let n = rows.len() as f64;
    let mean: Vec<f64> = (0..d)
        .map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / n)
        .collect();
    let scale = (0..d)
        .map(|j| {
            let var = rows
                .iter()
                .map(|r| (r[j] - mean[j]) * (r[j] - mean[j]))
                .sum::<f64>()
                / n;
            // scikit-learn's `_is_constant_feature` bound on the rounding
            // error of a two-pass variance.
            let eps = f64::EPSILON;
            let bound = n * eps * var + (n * mean[j] * eps).powi(2);
            if var <= bound { 1.0 } else { var.sqrt() }
        })
        .collect();
    (mean, scale)
}

/// Components kept from `covariance` (`d × d`), the variance share they
/// explain, and the residual projector `I − VVᵀ` (row-major).
fn project(
    covariance: DMatrix<f64>,
    variance: f64,
) -> Result<(usize, f64, Vec<f64>), MultivariateError> {
    let d = covariance.nrows();
    let eigen =
        SymmetricEigen::try_new(covariance, f64::EPSILON, 1000 * d.max(1)).ok_or_else(|| {
            MultivariateError::Decomposition(
                "the eigen decomposition of the reference covariance did not converge".to_owned(),
            )
        })?;
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|&a, &b| eigen.eigenvalues[b].total_cmp(&eigen.eigenvalues[a]));
    // Rounding can make an eigenvalue of a semi-definite matrix negative.
    let values: Vec<f64> = order
        .iter()
        .map(|&i| eigen.eigenvalues[i].max(0.0))
        .collect();
    let total: f64 = values.iter().sum();
    if total.is_nan() || total <= 0.0 {
        return Err(MultivariateError::Decomposition(
            "the reference rows have no variance".to_owned(),
        ));
    }
    // scikit-learn: searchsorted(cumsum(ratios), variance, side='right') + 1.
    let mut cumulative = 0.0;
    let mut below = 0;
    for value in &values {
        cumulative += value / total;
        if cumulative <= variance {
            below += 1;
        } else {
            break;
        }
    }
    let components = (below + 1).min(d);
    let explained = values[..components].iter().sum::<f64>() / total;
    let mut residual = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            let kept: f64 = order[..components]
                .iter()
                .map(|&c| eigen.eigenvectors[(i, c)] * eigen.eigenvectors[(j, c)])
                .sum();
            residual[i * d + j] = if i == j { 1.0 } else { 0.0 } - kept;
        }
    }
    Ok((components, explained, residual))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error straight from the definition, `‖(I − VVᵀ)(z − z̄)‖`,
    /// standardising inside the product as the code once did.
    fn by_definition(pca: &PcaDrift, row: &[f64]) -> f64 {
        let d = pca.dims();
        let z = |j: usize| {
            let x = if row[j].is_finite() {
                row[j]
            } else {
                pca.mean[j]
            };
            (x - pca.mean[j]) / pca.scale[j] - pca.centre[j]
        };
        let squares: f64 = (0..d)
            .map(|i| (0..d).map(|j| pca.residual[i * d + j] * z(j)).sum::<f64>())
            .map(|r| r * r)
            .sum();
        squares.sqrt()
    }

    #[test]
    fn narrow_and_wide_rows_give_the_defined_error() {
        let mut rng = fastrand::Rng::with_seed(3);
        for d in [3, STACK_DIMS, STACK_DIMS + 6] {
            let rows: Vec<Vec<f64>> = (0..400)
                .map(|_| {
                    let common = rng.f64();
                    (0..d).map(|j| common * j as f64 + rng.f64()).collect()
                })
                .collect();
            let pca = PcaDrift::fit(&rows, &PcaConfig::default()).unwrap_or_else(|e| panic!("{e}"));
            let mut row = rows[7].clone();
            row[1] = f64::NAN;
            for row in [&rows[3], &row] {
                let (got, want) = (pca.reconstruction_error(row), by_definition(&pca, row));
                assert!(
                    (got - want).abs() <= 1e-12 * want.max(1.0),
                    "d = {d}: {got} vs {want}"
                );
            }
        }
    }
}
