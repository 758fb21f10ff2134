#!/usr/bin/env python3
"""Writes the SciPy reference vectors for sidewatch's drift statistics.

Run through scripts/reference/generate, which pins NumPy and SciPy in
.venv/reference. Usage: drift_fixtures.py OUT.json

Every case stores its inputs and the reference outputs, so the Rust test
(tests/reference_drift.rs) needs nothing but the JSON. The output is
deterministic: fixed seeds, sorted keys and floats written with repr (the
shortest string that round-trips to the same double). Sample values are
rounded to 6 decimals to keep the file small; rounding also creates ties,
which the KS statistic must handle.
"""

import json
import sys

import numpy as np
import scipy
from scipy import stats
from scipy.spatial.distance import jensenshannon

# The PSI floor and the normalised-Wasserstein std floor used by
# src/detect/drift (PSI_EPSILON, WASSERSTEIN_STD_FLOOR).
PSI_EPSILON = 1e-4
WASSERSTEIN_STD_FLOOR = 1e-3


def floats(values):
    return [float(v) for v in values]


def sample(rng, n, loc=0.0, scale=1.0):
    return floats(np.round(rng.normal(loc, scale, n), 6))


# === Kolmogorov–Smirnov ===


def ks_case(name, a, b, method):
    result = stats.ks_2samp(np.array(a), np.array(b), alternative="two-sided", method=method)
    return {
        "name": name,
        "a": floats(a),
        "b": floats(b),
        "method": method,
        "statistic": float(result.statistic),
        "p_value": float(result.pvalue),
    }


def ks_cases():
    rng = np.random.default_rng(20241125)
    cases = []
    # Exact mode: small samples, equal and unequal sizes, ties, extremes.
    cases.append(ks_case("exact_equal_10_shifted", sample(rng, 10), sample(rng, 10, 1.0), "exact"))
    cases.append(ks_case("exact_8_vs_13", sample(rng, 8), sample(rng, 13), "exact"))
    ties_a = floats(rng.integers(0, 5, 15))
    ties_b = floats(rng.integers(0, 6, 20))
    cases.append(ks_case("exact_ties_15_vs_20", ties_a, ties_b, "exact"))
    same = sample(rng, 12)
    cases.append(ks_case("exact_identical", same, list(same), "exact"))
    cases.append(ks_case("exact_disjoint_6_vs_9", sample(rng, 6), sample(rng, 9, 100.0), "exact"))
    cases.append(ks_case("exact_singleton_1_vs_3", sample(rng, 1), sample(rng, 3), "exact"))
    cases.append(ks_case("exact_gcd_30_vs_45", sample(rng, 30), sample(rng, 45, 0.5), "exact"))
    cases.append(ks_case("exact_50_vs_60", sample(rng, 50), sample(rng, 60), "exact"))
    cases.append(ks_case("exact_equal_100", sample(rng, 100), sample(rng, 100), "exact"))
    cases.append(ks_case("exact_equal_100_shifted", sample(rng, 100), sample(rng, 100, 0.6), "exact"))
    cases.append(ks_case("exact_200_vs_150_shifted", sample(rng, 200), sample(rng, 150, 0.3), "exact"))
    cases.append(ks_case("exact_400_vs_500_shifted", sample(rng, 400), sample(rng, 500, 0.25), "exact"))
    # Auto: exact while max(n1, n2) <= 10000, asymptotic above.
    cases.append(ks_case("auto_300_vs_250", sample(rng, 300), sample(rng, 250), "auto"))
    cases.append(ks_case("auto_2000_vs_3000", sample(rng, 2000), sample(rng, 3000), "auto"))
    cases.append(
        ks_case("auto_2000_vs_3000_shifted", sample(rng, 2000), sample(rng, 3000, 0.1), "auto")
    )
    cases.append(ks_case("auto_10001_vs_40_asymp", sample(rng, 10001), sample(rng, 40, 0.2), "auto"))
    # Asymptotic mode: kstwo.sf(d, round(m*n/(m+n))) over many n.
    cases.append(ks_case("asymp_2000_vs_3000", sample(rng, 2000), sample(rng, 3000), "asymp"))
    cases.append(
        ks_case("asymp_2000_vs_3000_shifted", sample(rng, 2000), sample(rng, 3000, 0.1), "asymp")
    )
    cases.append(
        ks_case("asymp_2000_vs_3000_scaled", sample(rng, 2000), sample(rng, 3000, 0.0, 1.15), "asymp")
    )
    cases.append(
        ks_case("asymp_2000_vs_3000_far", sample(rng, 2000), sample(rng, 3000, 0.5), "asymp")
    )
    cases.append(ks_case("asymp_5_vs_7", sample(rng, 5), sample(rng, 7, 0.5), "asymp"))
    # en = 2.5 and 3.5: NumPy rounds half to even (2 and 4).
    cases.append(ks_case("asymp_5_vs_5_round_half_even", sample(rng, 5), sample(rng, 5, 1.0), "asymp"))
    cases.append(ks_case("asymp_7_vs_7_round_half_even", sample(rng, 7), sample(rng, 7, 0.3), "asymp"))
    cases.append(ks_case("asymp_20_vs_30", sample(rng, 20), sample(rng, 30, 0.4), "asymp"))
    ties_a = floats(rng.integers(0, 8, 40))
    ties_b = floats(rng.integers(1, 9, 40))
    cases.append(ks_case("asymp_ties_40_vs_40", ties_a, ties_b, "asymp"))
    cases.append(ks_case("asymp_150_vs_300", sample(rng, 150), sample(rng, 300, 0.15), "asymp"))
    cases.append(ks_case("asymp_1000_vs_800", sample(rng, 1000), sample(rng, 800, 0.05), "asymp"))
    return cases


def kstwo_cases():
    """Direct checks of the one-sample distribution across its regimes."""
    cases = []
    grid = {
        1: [0.3, 0.6, 0.9],
        2: [0.2, 0.3, 0.6, 0.8],
        3: [0.2, 0.4, 0.55, 0.7, 0.95],
        5: [0.05, 0.15, 0.3, 0.45, 0.6, 0.85],
        10: [0.04, 0.08, 0.2, 0.3, 0.5, 0.95],
        50: [0.01, 0.05, 0.1, 0.2, 0.3, 0.6],
        140: [0.005, 0.05, 0.07, 0.1, 0.17, 0.25],
        141: [0.05, 0.07, 0.1, 0.13, 0.25],
        500: [0.01, 0.03, 0.05, 0.066, 0.1],
        1200: [0.01, 0.02, 0.03, 0.04, 0.05, 0.08],
        5000: [0.005, 0.01, 0.015, 0.02, 0.025, 0.05],
        50000: [0.002, 0.004, 0.006, 0.01, 0.02],
        150000: [0.0005, 0.002, 0.003, 0.0035, 0.006],
        # Beyond 10**7 sidewatch uses Pelz–Good where SciPy sums exactly.
        20000000: [0.0002, 0.0004, 0.0006],
    }
    for n, ds in grid.items():
        for d in ds:
            cases.append({"n": n, "d": d, "sf": float(stats.kstwo.sf(d, n))})
    return cases


# === Chi-square ===


def chi2_case(name, reference, current):
    table = np.array([reference, current], dtype=float)
    # SciPy raises on zero expected frequencies; sidewatch drops columns that
    # are empty in both rows first, so the reference is computed on the
    # reduced table.
    keep = table.sum(axis=0) > 0
    result = stats.chi2_contingency(table[:, keep])
    return {
        "name": name,
        "reference": floats(reference),
        "current": floats(current),
        "statistic": float(result.statistic),
        "dof": int(result.dof),
        "p_value": float(result.pvalue),
    }


def chi2_cases():
    rng = np.random.default_rng(7)
    shares = np.array([0.4, 0.25, 0.2, 0.1, 0.05])
    many = rng.dirichlet(np.ones(20))
    return [
        chi2_case("dof1_yates", [30, 70], [45, 55]),
        chi2_case("dof1_yates_small_diff", [10, 10], [10, 11]),
        chi2_case("dof1_no_drift", [500, 500], [498, 502]),
        chi2_case("five_no_drift", floats(rng.multinomial(1000, shares)), floats(rng.multinomial(800, shares))),
        chi2_case(
            "five_drift",
            floats(rng.multinomial(1000, shares)),
            floats(rng.multinomial(800, [0.2, 0.25, 0.2, 0.15, 0.2])),
        ),
        chi2_case("unseen_category", [100, 50, 0], [40, 30, 20]),
        chi2_case("zero_column_dropped", [100, 0, 50, 30], [90, 0, 60, 20]),
        chi2_case("zero_column_leaves_dof1", [10, 0, 20], [15, 0, 5]),
        chi2_case("single_column_dof0", [0, 12, 0], [0, 7, 0]),
        chi2_case("fractional_counts", [12.5, 30.25, 7.0, 50.125], [20.0, 25.5, 10.75, 40.0]),
        chi2_case("strong_drift_tiny_p", [800, 500, 200], [400, 500, 600]),
        chi2_case("extreme_drift_p_underflows", [5000, 3000, 2000], [1000, 3000, 6000]),
        chi2_case(
            "twenty_categories",
            floats(rng.multinomial(5000, many)),
            floats(rng.multinomial(3000, many)),
        ),
        chi2_case("all_current_in_one", [40, 30, 20, 10], [0, 0, 25, 0]),
    ]


# === Binned distances (JS, Hellinger, PSI) ===


def binned_pairs():
    rng = np.random.default_rng(11)
    pairs = [
        ("identical", [0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4]),
        ("disjoint", [0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.25, 0.75]),
        ("empty_current_bins", [0.2, 0.2, 0.2, 0.2, 0.2], [0.0, 0.5, 0.5, 0.0, 0.0]),
        ("empty_reference_bin", [0.0, 0.3, 0.3, 0.4], [0.1, 0.3, 0.3, 0.3]),
        ("small_shift", [0.1, 0.2, 0.4, 0.2, 0.1], [0.12, 0.22, 0.38, 0.18, 0.1]),
        ("two_bins", [0.9, 0.1], [0.6, 0.4]),
    ]
    for i, bins in enumerate([5, 10, 10, 20]):
        p = rng.dirichlet(np.ones(bins))
        q = rng.dirichlet(np.ones(bins) * (0.5 + i))
        pairs.append((f"random_{bins}_bins_{i}", floats(p), floats(q)))
    counts_p = rng.integers(0, 50, 10)
    counts_q = rng.integers(0, 50, 10)
    pairs.append(("from_counts", floats(counts_p / counts_p.sum()), floats(counts_q / counts_q.sum())))
    return pairs


def js_cases():
    cases = []
    for name, p, q in binned_pairs():
        cases.append({"name": name, "p": p, "q": q, "distance": float(jensenshannon(p, q, base=2))})
    # Unnormalised inputs: SciPy divides each by its sum first.
    p, q = [3.0, 0.0, 5.0, 2.0], [1.0, 4.0, 4.0, 1.0]
    cases.append({"name": "unnormalised_counts", "p": p, "q": q, "distance": float(jensenshannon(p, q, base=2))})
    return cases


def hellinger_cases():
    cases = []
    for name, p, q in binned_pairs():
        p_arr = np.array(p) / np.sum(p)
        q_arr = np.array(q) / np.sum(q)
        value = np.sqrt(np.sum((np.sqrt(p_arr) - np.sqrt(q_arr)) ** 2)) / np.sqrt(2.0)
        cases.append({"name": name, "p": p, "q": q, "distance": float(value)})
    return cases


def psi_cases():
    cases = []
    for name, reference, current in binned_pairs():
        r = np.maximum(np.array(reference), PSI_EPSILON)
        c = np.maximum(np.array(current), PSI_EPSILON)
        value = np.sum((c - r) * np.log(c / r))
        cases.append({"name": name, "reference": reference, "current": current, "psi": float(value)})
    return cases


# === Wasserstein-1 ===


def wasserstein_case(name, a, b, wa=None, wb=None):
    case = {
        "name": name,
        "a": floats(a),
        "b": floats(b),
        "distance": float(stats.wasserstein_distance(a, b, wa, wb)),
    }
    if wa is None:
        std = float(np.std(a))
        case["normalized"] = case["distance"] / max(std, WASSERSTEIN_STD_FLOOR)
    else:
        case["wa"] = floats(wa)
        case["wb"] = floats(wb)
    return case


def wasserstein_cases():
    rng = np.random.default_rng(99)
    midpoints = [0.5, 1.5, 2.5, 3.5, 4.5, 5.5]
    return [
        wasserstein_case("singletons", [1.5], [4.0]),
        wasserstein_case("small_unequal", [0.0, 1.0, 3.0], [5.0, 6.0, 8.0, 2.5]),
        wasserstein_case("identical", [1.0, 2.0, 2.0, 7.0], [7.0, 2.0, 1.0, 2.0]),
        wasserstein_case("ties", floats(rng.integers(0, 4, 25)), floats(rng.integers(1, 5, 30))),
        wasserstein_case("normal_100_vs_120", sample(rng, 100), sample(rng, 120, 0.3)),
        wasserstein_case("normal_500_vs_400_scaled", sample(rng, 500), sample(rng, 400, 0.0, 2.0)),
        wasserstein_case("constant_reference", [3.0] * 10, [3.0, 3.5, 4.0]),
        wasserstein_case("negative_values", sample(rng, 50, -10.0, 3.0), sample(rng, 60, -9.0, 3.0)),
        wasserstein_case(
            "weighted_histogram",
            midpoints,
            midpoints,
            [10.0, 40.0, 80.0, 40.0, 10.0, 0.0],
            [0.0, 10.0, 40.0, 80.0, 40.0, 10.0],
        ),
        wasserstein_case(
            "weighted_different_supports",
            [0.0, 1.0, 2.0],
            [0.5, 1.5, 2.5, 3.5],
            [0.2, 0.5, 0.3],
            [1.0, 2.0, 3.0, 4.0],
        ),
        wasserstein_case(
            "weighted_random",
            sample(rng, 40),
            sample(rng, 30, 0.5),
            floats(np.round(rng.uniform(0, 5, 40), 3)),
            floats(np.round(rng.uniform(0, 5, 30), 3)),
        ),
    ]


# === Multiple testing ===


def bh_reject(p_values, alpha):
    """Benjamini–Hochberg step-up, as statsmodels' multipletests('fdr_bh')."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    order = np.argsort(p, kind="mergesort")
    sorted_p = p[order]
    below = sorted_p <= np.arange(1, m + 1) / m * alpha
    reject_sorted = np.zeros(m, dtype=bool)
    if below.any():
        last = int(np.nonzero(below)[0].max())
        reject_sorted[: last + 1] = True
    reject = np.zeros(m, dtype=bool)
    reject[order] = reject_sorted
    return reject


def multitest_case(name, p_values, alpha):
    p = np.asarray(p_values, dtype=float)
    bh = bh_reject(p, alpha)
    # Cross-check with SciPy's adjusted p-values (away from exact ties with
    # the threshold, where the two formulations may round differently).
    adjusted = stats.false_discovery_control(p, method="bh")
    near = np.abs(adjusted - alpha) < 1e-12
    assert np.array_equal(bh[~near], (adjusted <= alpha)[~near]), name
    return {
        "name": name,
        "p_values": floats(p),
        "alpha": alpha,
        "bonferroni": [bool(v) for v in p <= alpha / len(p)],
        "benjamini_hochberg": [bool(v) for v in bh],
    }


def multitest_cases():
    rng = np.random.default_rng(3)
    mixed = np.concatenate([rng.uniform(0, 0.01, 5), rng.uniform(0, 1, 15)])
    rng.shuffle(mixed)
    return [
        multitest_case("mixed_20", floats(mixed), 0.05),
        multitest_case("mixed_20_alpha_0_1", floats(mixed), 0.1),
        multitest_case("uniform_10", floats(rng.uniform(0, 1, 10)), 0.05),
        multitest_case("all_tiny", [1e-8, 3e-5, 2e-4, 1e-3], 0.05),
        multitest_case("none_rejected", [0.2, 0.5, 0.9, 0.04], 0.05),
        # p(2) equals 2/4 * 0.05 exactly: the step-up rejects on equality.
        multitest_case("boundary_equality", [0.3, 0.025, 0.04, 0.0125], 0.05),
        # The step-up rejects the first p-value although it is above 1/m * alpha.
        multitest_case("step_up", [0.011, 0.012, 0.013, 0.5], 0.05),
        multitest_case("ties", [0.01, 0.01, 0.01, 0.2, 0.2], 0.05),
        multitest_case("single", [0.03], 0.05),
    ]


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: drift_fixtures.py OUT.json")
    fixtures = {
        "meta": {
            "generator": "scripts/reference/drift_fixtures.py",
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "psi_epsilon": PSI_EPSILON,
            "wasserstein_std_floor": WASSERSTEIN_STD_FLOOR,
        },
        "ks": ks_cases(),
        "kstwo": kstwo_cases(),
        "chi2": chi2_cases(),
        "js": js_cases(),
        "hellinger": hellinger_cases(),
        "psi": psi_cases(),
        "wasserstein": wasserstein_cases(),
        "multitest": multitest_cases(),
    }
    with open(sys.argv[1], "w", encoding="utf-8") as out:
        out.write(render(fixtures))


def render(fixtures):
    """Sorted-key JSON with one case per line: compact, yet a changed case
    shows up as a changed line. Python's json writes floats with repr, so
    every double round-trips; allow_nan=False fails loudly instead of
    writing invalid JSON."""

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


if __name__ == "__main__":
    main()
