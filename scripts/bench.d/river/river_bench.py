#!/usr/bin/env python3
"""Writes the streams of the River comparison and times River on them.

Usage: river_bench.py --out DIR [--values N] [--rows N] [--passes N]

Writes into DIR, for benches/river.rs to replay on sidewatch's detectors:
- scores.f64   N prediction scores in (0, 1) whose level moves every N/20
               values (beta distributions), for Page-Hinkley and ADWIN;
- errors.u8    N error bits whose rate moves every N/20 values, for DDM;
- rows.f64     ROWS x 16 feature rows (column c: mean c/2, std 1 + c/10),
               1% uniform outliers, the first 4 features shifted by one
               std in the second half, for Half-Space Trees;
- limits.f64   the (low, high) Half-Space Trees limit of each feature
               (mean +- 4 std);
- hst_uniform.f64  the first draws of random.Random(HST seed), which
               River's HalfSpaceTrees consumes to build its trees, so
               sidewatch builds the very same trees
               (HalfSpaceTrees::with_uniform);
- river_hst_scores.f64  River's score of every row;
- river.json   versions, parameters and, per detector, the wall time of
               each pass over its stream, the detections (indices where
               drift_detected was true) and the other CPU use while it ran.

Every file is little-endian, row-major, without a header. All streams come
from numpy's default_rng(SEED): same arguments, same bytes.

Timing: each pass builds a fresh detector (outside the clock) and runs the
whole stream through it, calling update() and reading drift_detected (the
concept-drift detectors) or score_one() then learn_one() (Half-Space Trees,
River's progressive order). Inputs are converted to Python floats, bools
and dicts before the clock starts, which favours River: a real caller
builds a dict per row.
"""

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time

import numpy as np
import river
from river import anomaly, drift
from river.drift.binary import DDM

SEED = 20261125
COLS = 16
SEGMENTS = 20
# sidewatch's anomaly.hst defaults (src/detect/anomaly/hst.rs).
HST = {"n_trees": 25, "height": 8, "window_size": 250, "seed": 1}
# Beta parameters of the score segments and the error rates, in turn.
SCORE_LEVELS = [(5.0, 2.0), (2.0, 5.0), (4.0, 4.0), (6.0, 1.5)]
ERROR_RATES = [0.10, 0.10, 0.30, 0.05, 0.20]


def generate(values, rows):
    rng = np.random.default_rng(SEED)
    segment = values // SEGMENTS
    scores = np.concatenate(
        [rng.beta(*SCORE_LEVELS[k % len(SCORE_LEVELS)], segment) for k in range(SEGMENTS)]
    )
    errors = np.concatenate(
        [rng.random(segment) < ERROR_RATES[k % len(ERROR_RATES)] for k in range(SEGMENTS)]
    )
    cols = np.arange(COLS, dtype=float)
    mean, std = cols / 2.0, 1.0 + cols / 10.0
    data = mean + std * rng.normal(size=(rows, COLS))
    data[rows // 2 :, :4] += std[:4]
    outliers = rng.random(rows) < 0.01
    data[outliers] = mean + std * rng.uniform(-6.0, 6.0, (int(outliers.sum()), COLS))
    limits = np.stack([mean - 4.0 * std, mean + 4.0 * std], axis=1)
    return scores, errors, data, limits


def busy_ticks():
    with open("/proc/stat") as f:
        fields = f.readline().split()
    # user nice system irq softirq steal, as scripts/bench counts them.
    return sum(int(fields[i]) for i in (1, 2, 3, 6, 7, 8))


def timed_passes(passes, make, run):
    """Runs `run(make())` `passes` times; returns (ns per pass, last output,
    share of the machine's CPU other processes used meanwhile, in %)."""
    hz = os.sysconf("SC_CLK_TCK")
    cpus = os.cpu_count() or 1
    times, out = [], None
    busy0, own0, wall0 = busy_ticks(), os.times(), time.perf_counter()
    for _ in range(passes):
        detector = make()
        start = time.perf_counter_ns()
        out = run(detector)
        times.append(time.perf_counter_ns() - start)
    busy1, own1, wall1 = busy_ticks(), os.times(), time.perf_counter()
    own = (own1.user + own1.system) - (own0.user + own0.system)
    other = ((busy1 - busy0) / hz - own) / ((wall1 - wall0) * cpus) * 100
    return times, out, max(other, 0.0)


def detections(detector, stream):
    found = []
    for i, x in enumerate(stream):
        detector.update(x)
        if detector.drift_detected:
            found.append(i)
    return found


def hst_run(model, rows):
    scores = []
    for x in rows:
        scores.append(model.score_one(x))
        model.learn_one(x)
    return scores


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--values", type=int, default=1_000_000)
    parser.add_argument("--rows", type=int, default=40_000)
    parser.add_argument("--passes", type=int, default=3, help="passes per concept-drift detector")
    parser.add_argument("--hst-passes", type=int, default=3)
    args = parser.parse_args()
    if args.values % SEGMENTS or args.values <= 0 or args.rows < 2:
        sys.exit(f"--values must be a positive multiple of {SEGMENTS}, --rows at least 2")
    out = args.out

    scores, errors, data, limits = generate(args.values, args.rows)
    scores.astype("<f8").tofile(os.path.join(out, "scores.f64"))
    errors.astype("u1").tofile(os.path.join(out, "errors.u8"))
    data.astype("<f8").tofile(os.path.join(out, "rows.f64"))
    limits.astype("<f8").tofile(os.path.join(out, "limits.f64"))
    internal = 2 ** HST["height"] - 1
    draws = random.Random(HST["seed"])
    uniform = [draws.random() for _ in range(2 * HST["n_trees"] * internal)]
    np.asarray(uniform, dtype="<f8").tofile(os.path.join(out, "hst_uniform.f64"))

    score_list = scores.tolist()
    error_list = [bool(e) for e in errors]
    row_dicts = [dict(enumerate(row)) for row in data.tolist()]
    limit_dict = {i: (float(lo), float(hi)) for i, (lo, hi) in enumerate(limits)}

    results = {}
    for name, make, stream in [
        ("page_hinkley", drift.PageHinkley, score_list),
        ("adwin", drift.ADWIN, score_list),
        ("ddm", DDM, error_list),
    ]:
        print(f"river: {name}, {args.passes} x {len(stream)} values", file=sys.stderr)
        times, found, other = timed_passes(args.passes, make, lambda d: detections(d, stream))
        results[name] = {"samples": len(stream), "ns": times, "detections": found, "other_cpu": other}

    print(f"river: half_space_trees, {args.hst_passes} x {args.rows} rows", file=sys.stderr)
    times, hst_scores, other = timed_passes(
        args.hst_passes,
        lambda: anomaly.HalfSpaceTrees(limits=limit_dict, **HST),
        lambda m: hst_run(m, row_dicts),
    )
    np.asarray(hst_scores, dtype="<f8").tofile(os.path.join(out, "river_hst_scores.f64"))
    results["half_space_trees"] = {"samples": args.rows, "ns": times, "other_cpu": other}

    meta = {
        "river": river.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "seed": SEED,
        "values": args.values,
        "rows": args.rows,
        "cols": COLS,
        "hst": HST,
        "detectors": results,
    }
    with open(os.path.join(out, "river.json"), "w") as f:
        json.dump(meta, f, indent=1)
    for name, r in results.items():
        per = statistics.median(r["ns"]) / r["samples"] / 1000
        print(f"river: {name} {per:.3f} µs/sample (median of {len(r['ns'])})", file=sys.stderr)


if __name__ == "__main__":
    main()
