#!/usr/bin/env python3
"""Writes the reference vectors for sidewatch's anomaly and multivariate
detectors (src/detect/anomaly, src/detect/multivariate).

Run through scripts/reference/generate, which pins NumPy, SciPy, River and
scikit-learn in .venv/reference. Usage: anomaly_fixtures.py OUT.json

Families:
- robust_z: median, raw MAD and z = |x - median| / (1.4826 MAD) (NumPy),
  with sidewatch's documented fallbacks for a zero MAD;
- mahalanobis: scipy.spatial.distance.mahalanobis with the inverse of
  np.cov, plus sidewatch's documented ridge for singular covariances, and
  chi-square thresholds (scipy.stats.chi2.ppf);
- pca: StandardScaler + PCA(n_components=variance) reconstruction errors
  (inverse_transform) and the mean +- 3 std band over reference chunks;
- hst: river.anomaly.HalfSpaceTrees scores on a stream (score_one, then
  learn_one), for one seed and averaged over several.

Deterministic: fixed seeds, sorted keys, floats written with repr. A
missing value (NaN) is written as null, an infinite z-score as null.
"""

import json
import math
import sys

import numpy as np
import river
import scipy
import sklearn
from river import anomaly
from scipy.spatial.distance import mahalanobis
from scipy.stats import chi2
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

# Constants of src/detect/anomaly (MAD_TO_SIGMA, RIDGE, SINGULAR_PIVOT)
# and src/detect/multivariate (DEFAULT_CHUNKS).
MAD_TO_SIGMA = 1.4826
RIDGE = 1e-6
RIDGE_ATTEMPTS = 4
SINGULAR_PIVOT = 1e-10
DEFAULT_CHUNKS = 10


def floats(values):
    return [None if math.isnan(v) else float(v) for v in values]


def matrix(rows):
    return [floats(row) for row in rows]


# === robust z ===


def robust_z_case(name, columns, tests):
    """columns: one array per feature (the reference); tests: rows."""
    features = []
    for values in columns:
        median = float(np.median(values))
        mad = float(np.median(np.abs(values - median)))
        std = float(np.std(values, ddof=1))
        if mad > 0:
            scale = MAD_TO_SIGMA * mad
        elif std > 0:
            scale = std
        else:
            scale = 0.0
        features.append({"median": median, "mad": mad, "std": std, "scale": scale})
    z = []
    for row in tests:
        out = []
        for x, f in zip(row, features):
            d = abs(x - f["median"])
            if f["scale"] > 0:
                out.append(d / f["scale"])
            else:
                out.append(0.0 if d == 0 else None)  # None: +infinity
        z.append(out)
    return {
        "name": name,
        "rows": matrix(np.column_stack(columns)),
        "features": features,
        "tests": matrix(tests),
        "z": z,
    }


def robust_z_cases():
    rng = np.random.default_rng(20250101)
    n = 501
    normal = np.round(rng.normal(10.0, 2.0, n), 6)
    skewed = np.round(rng.lognormal(0.0, 1.0, n), 6)
    # More than half the values equal: MAD 0, std > 0.
    spiky = np.where(rng.random(n) < 0.7, 3.0, np.round(rng.normal(3.0, 1.0, n), 6))
    constant = np.full(n, 7.0)
    columns = [normal, skewed, spiky, constant]
    tests = np.column_stack(
        [
            np.round(rng.normal(10.0, 6.0, 40), 6),
            np.round(rng.lognormal(0.0, 2.0, 40), 6),
            np.where(rng.random(40) < 0.3, 3.0, np.round(rng.normal(3.0, 3.0, 40), 6)),
            np.where(rng.random(40) < 0.5, 7.0, 7.5),
        ]
    )
    return [robust_z_case("four_features_with_zero_mad_and_constant", columns, tests)]


# === Mahalanobis ===


def precision(cov):
    """sidewatch's Precision: Cholesky, with a relative ridge when singular."""
    d = cov.shape[0]
    diag = np.diag(cov)
    try:
        chol = np.linalg.cholesky(cov)
        if all(diag[i] > 0 and chol[i, i] ** 2 >= SINGULAR_PIVOT * diag[i] for i in range(d)):
            return np.linalg.inv(cov), 0.0
    except np.linalg.LinAlgError:
        pass
    positive = diag[diag > 0]
    fallback = float(positive.mean()) if positive.size else 1.0
    scale = np.where(diag > 0, diag, fallback)
    ridge = RIDGE
    for _ in range(RIDGE_ATTEMPTS):
        regularised = cov + np.diag(ridge * scale)
        try:
            np.linalg.cholesky(regularised)
            return np.linalg.inv(regularised), ridge
        except np.linalg.LinAlgError:
            ridge *= 10
    raise ValueError("not positive definite")


def mahalanobis_case(name, data, tests):
    mean = data.mean(axis=0)
    cov = np.atleast_2d(np.cov(data, rowvar=False))
    vi, ridge = precision(cov)
    distances = [float(mahalanobis(row, mean, vi)) for row in tests]
    return {
        "name": name,
        "rows": matrix(data),
        "mean": floats(mean),
        "covariance": matrix(cov),
        "ridge": ridge,
        "tests": matrix(tests),
        "distance": distances,
    }


def mahalanobis_cases():
    rng = np.random.default_rng(20250102)
    cases = []
    mix = rng.normal(0, 1, (3, 3))
    data = np.round(rng.normal(0, 1, (400, 3)) @ mix + [1.0, -2.0, 5.0], 6)
    tests = np.round(rng.normal(0, 2, (30, 3)) @ mix + [1.0, -2.0, 5.0], 6)
    cases.append(mahalanobis_case("correlated_3d", data, tests))
    scales = np.array([1e-3, 1.0, 10.0, 1e3, 0.5])
    mix = rng.normal(0, 1, (5, 5)) * scales
    data = np.round(rng.normal(0, 1, (800, 5)) @ mix, 6)
    tests = np.round(rng.normal(0, 1.5, (30, 5)) @ mix, 6)
    cases.append(mahalanobis_case("mixed_scales_5d", data, tests))
    data = np.round(rng.normal(3, 2, (200, 1)), 6)
    tests = np.round(rng.normal(3, 5, (10, 1)), 6)
    cases.append(mahalanobis_case("one_feature", data, tests))
    # Singular: the third feature is the sum of the first two (rounded
    # values, so exactly representable sums).
    base = np.round(rng.normal(0, 1, (300, 2)), 3)
    data = np.column_stack([base, base[:, 0] + base[:, 1]])
    tb = np.round(rng.normal(0, 1, (20, 2)), 3)
    on_plane = np.column_stack([tb, tb[:, 0] + tb[:, 1]])
    off_plane = on_plane + [0.0, 0.0, 0.01]
    cases.append(mahalanobis_case("singular_sum", data, np.vstack([on_plane, off_plane])))
    # A constant feature: zero variance.
    data = np.column_stack([np.round(rng.normal(0, 1, 300), 6), np.full(300, 4.0)])
    tests = np.array([[0.5, 4.0], [-1.0, 4.0], [0.0, 4.001], [2.0, 3.9]])
    cases.append(mahalanobis_case("constant_feature", data, tests))
    return cases


def chi2_threshold_cases():
    return [
        {"dof": d, "p": p, "threshold": float(chi2.ppf(1 - p, d))}
        for d in (1, 2, 3, 5, 10, 30, 100)
        for p in (0.05, 0.01, 0.001, 1e-6)
    ]


# === PCA reconstruction error ===


def pca_case(name, reference, tests, variance, chunk_size):
    scaler = StandardScaler().fit(reference)
    z_ref = scaler.transform(reference)
    pca = PCA(n_components=variance).fit(z_ref)

    def errors(rows):
        rows = np.where(np.isnan(rows), scaler.mean_, rows)  # mean imputation
        z = scaler.transform(rows)
        return np.linalg.norm(z - pca.inverse_transform(pca.transform(z)), axis=1)

    n = reference.shape[0]
    if chunk_size is None:
        size, chunks = n // DEFAULT_CHUNKS, DEFAULT_CHUNKS
    else:
        size, chunks = chunk_size, n // chunk_size
    chunk_errors = [float(errors(reference[i * size : (i + 1) * size]).mean()) for i in range(chunks)]
    centre, spread = float(np.mean(chunk_errors)), float(np.std(chunk_errors))
    return {
        "name": name,
        "rows": matrix(reference),
        "tests": matrix(tests),
        "variance": variance,
        "chunk_size": chunk_size,
        "components": int(pca.n_components_),
        "explained": float(np.sum(pca.explained_variance_ratio_)),
        "solver": pca._fit_svd_solver,
        "errors": floats(errors(tests)),
        "chunk_errors": chunk_errors,
        "lower": max(0.0, centre - 3 * spread),
        "upper": centre + 3 * spread,
    }


def pca_cases():
    rng = np.random.default_rng(20250103)
    cases = []
    mix = rng.normal(0, 1, (5, 5)) * [1.0, 5.0, 0.1, 2.0, 30.0]
    reference = np.round(rng.normal(0, 1, (600, 5)) @ mix + [0, 1, 2, 3, 4], 6)
    tests = np.round(rng.normal(0, 1.3, (60, 5)) @ mix + [0, 1, 2, 3, 4], 6)
    tests[3, 1] = np.nan
    tests[7, 4] = np.nan
    cases.append(pca_case("covariance_eigh_5d", reference, tests, 0.65, None))
    cases.append(pca_case("covariance_eigh_5d_90pct_chunks_of_50", reference, tests, 0.9, 50))
    # Fewer than 10 rows per feature: scikit-learn's full SVD solver.
    mix = rng.normal(0, 1, (8, 8))
    reference = np.round(rng.normal(0, 1, (60, 8)) @ mix, 6)
    tests = np.round(rng.normal(0, 1, (20, 8)) @ mix, 6)
    cases.append(pca_case("full_svd_8d", reference, tests, 0.65, 6))
    # A constant feature (StandardScaler scale 1) beside two correlated ones.
    a = np.round(rng.normal(0, 1, 300), 6)
    b = np.round(0.9 * a + 0.3 * rng.normal(0, 1, 300), 6)
    reference = np.column_stack([a, b, np.full(300, 2.5)])
    tests = np.array([[0.1, 0.1, 2.5], [1.0, -1.0, 2.5], [0.0, 0.0, 3.0], [2.0, 1.8, 2.5]])
    cases.append(pca_case("constant_feature", reference, tests, 0.65, None))
    return cases


# === Half-Space Trees ===


def hst_scores(stream, n_trees, height, window_size, limits, seed):
    model = anomaly.HalfSpaceTrees(
        n_trees=n_trees, height=height, window_size=window_size, limits=limits, seed=seed
    )
    scores = []
    for row in stream:
        x = {i: float(v) for i, v in enumerate(row) if not math.isnan(v)}
        scores.append(float(model.score_one(x)))
        model.learn_one(x)
    return scores


def hst_case(name, stream, n_trees, height, window_size, limits, seed, seeds=()):
    limits_dict = {i: tuple(lim) for i, lim in enumerate(limits)}
    case = {
        "name": name,
        "stream": matrix(stream),
        "n_trees": n_trees,
        "height": height,
        "window_size": window_size,
        "limits": [list(map(float, lim)) for lim in limits],
        "seed": seed,
        "scores": hst_scores(stream, n_trees, height, window_size, limits_dict, seed),
        "seeds": list(seeds),
    }
    if seeds:
        runs = [hst_scores(stream, n_trees, height, window_size, limits_dict, s) for s in seeds]
        case["mean_scores"] = [float(v) for v in np.mean(runs, axis=0)]
    return case


def hst_cases():
    cases = []
    # River's own docstring example: 0.107, 0.071, ..., 0.853.
    docstring = np.array([[0.5], [0.45], [0.43], [0.44], [0.445], [0.45], [0.0]])
    warm_up = docstring[:3]
    cases.append(
        hst_case("river_docstring", np.vstack([warm_up, docstring]), 5, 3, 3, [(0.0, 1.0)], 42)
    )
    # Two clusters, 3% uniform outliers, a wide third feature, and a few
    # missing values (absent keys for River) after the first row.
    rng = np.random.default_rng(20250104)
    n = 2000
    centres = np.array([[0.3, 0.3, -2.0], [0.7, 0.6, 2.0]])
    spread = np.array([0.06, 0.06, 0.8])
    which = rng.integers(0, 2, n)
    stream = centres[which] + rng.normal(0, 1, (n, 3)) * spread
    outliers = rng.random(n) < 0.03
    stream[outliers] = rng.random((outliers.sum(), 3)) * [1.0, 1.0, 10.0] - [0.0, 0.0, 5.0]
    stream = np.round(stream, 6)
    missing = rng.random((n, 3)) < 0.01
    missing[0] = False
    stream[missing] = np.nan
    limits = [(0.0, 1.0), (0.0, 1.0), (-5.0, 5.0)]
    cases.append(hst_case("clusters_25_trees", stream, 25, 8, 250, limits, 42, seeds=range(10)))
    cases.append(hst_case("clusters_10_trees_h6", stream[:800], 10, 6, 100, limits, 7))
    return cases


def render(fixtures):
    """Sorted-key JSON with one case per line (see drift_fixtures.py)."""

    def one_line(value):
        return json.dumps(value, sort_keys=True, allow_nan=False, separators=(", ", ": "))

    lines = ["{"]
    keys = sorted(fixtures)
    for i, key in enumerate(keys):
        value = fixtures[key]
        comma = "," if i + 1 < len(keys) else ""
        if isinstance(value, list):
            lines.append(f" {json.dumps(key)}: [")
            lines.extend(f"  {one_line(case)}{',' if j + 1 < len(value) else ''}" for j, case in enumerate(value))
            lines.append(f" ]{comma}")
        else:
            lines.append(f" {json.dumps(key)}: {one_line(value)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: anomaly_fixtures.py OUT.json")
    fixtures = {
        "meta": {
            "generator": "scripts/reference/anomaly_fixtures.py",
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "river": river.__version__,
            "scikit-learn": sklearn.__version__,
            "mad_to_sigma": MAD_TO_SIGMA,
            "ridge": RIDGE,
            "singular_pivot": SINGULAR_PIVOT,
        },
        "robust_z": robust_z_cases(),
        "mahalanobis": mahalanobis_cases(),
        "chi2_threshold": chi2_threshold_cases(),
        "pca": pca_cases(),
        "hst": hst_cases(),
    }
    with open(sys.argv[1], "w", encoding="utf-8") as out:
        out.write(render(fixtures))


if __name__ == "__main__":
    main()
