#!/usr/bin/env python3
"""Writes the River reference detections for sidewatch's concept-drift
detectors (src/detect/concept): Page–Hinkley, ADWIN and DDM.

Run through scripts/reference/generate, which pins River and NumPy in
.venv/reference. Usage: concept_fixtures.py OUT.json

The file holds each input stream once (under "streams") and, per detector,
a list of cases: the stream's name, River's constructor parameters and what
River reported after every update: the indices where `drift_detected` was
true (and, for DDM, where `warning_detected` was), plus a few end-of-stream
state values. ADWIN cases also hold the window left after each cut, and
for the few parameter sets where River itself panics (see adwin_case), the
index of the update that panicked. The Rust test (tests/reference_concept.rs) needs nothing but
the JSON. The output is deterministic: fixed seeds, sorted keys and floats
written with repr. Stream values are rounded to 4 decimals to keep the file
small; River and the Rust test both see the rounded values.
"""

import contextlib
import json
import os
import sys

import numpy as np
import river
from river import drift

DECIMALS = 4


def floats(values):
    return [float(v) for v in np.round(np.asarray(values, dtype=float), DECIMALS)]


def segments(rng, parts):
    """Concatenates Gaussian segments given as (n, mean, std)."""
    return np.concatenate([rng.normal(mean, std, n) for n, mean, std in parts])


def numeric_streams():
    rng = np.random.default_rng(20251125)
    streams = {}
    streams["abrupt"] = segments(rng, [(1500, 0.0, 1.0), (1500, 2.0, 1.0)])
    streams["abrupt_multi"] = segments(
        rng, [(800, 0.0, 1.0), (800, 1.5, 1.0), (800, -1.0, 1.0), (800, 0.5, 1.0), (800, 3.0, 1.0)]
    )
    ramp = np.linspace(0.0, 2.0, 1500) + rng.normal(0.0, 1.0, 1500)
    streams["gradual"] = np.concatenate(
        [rng.normal(0.0, 1.0, 1000), ramp, rng.normal(2.0, 1.0, 1000)]
    )
    streams["small_shift"] = segments(rng, [(2000, 0.0, 1.0), (2000, 0.3, 1.0)])
    streams["mean_decrease"] = segments(rng, [(1500, 1.0, 1.0), (1500, -1.0, 1.0)])
    streams["variance_change"] = segments(rng, [(1500, 0.0, 0.5), (1500, 0.0, 3.0)])
    streams["stationary"] = segments(rng, [(4000, 5.0, 2.0)])
    streams["large_offset"] = segments(rng, [(1500, 1000.0, 5.0), (1500, 1003.0, 5.0)])
    # Scores in [0, 1] whose level moves, like a model's confidence.
    low = rng.beta(2.0, 5.0, 1500)
    high = rng.beta(5.0, 2.0, 1500)
    streams["scores"] = np.concatenate([low, high])
    # Small integers (many ties, exact sums), as in River's own examples.
    streams["integers"] = np.concatenate([rng.integers(0, 2, 1000), rng.integers(4, 8, 1000)])
    # Rapid alternation of levels: many detections, so many resets.
    streams["many_shifts"] = segments(rng, [(250, float(m), 1.0) for m in [0, 4, -2, 3, 0, 5, -3, 2] * 2])
    return {name: floats(values) for name, values in streams.items()}


def error_streams():
    rng = np.random.default_rng(11252025)

    def bernoulli(parts):
        return np.concatenate([(rng.random(n) < p).astype(int) for n, p in parts])

    streams = {}
    streams["errors_jump"] = bernoulli([(2000, 0.1), (2000, 0.3)])
    streams["errors_multi"] = bernoulli([(1500, 0.05), (1500, 0.25), (1500, 0.1), (1500, 0.4)])
    rates = np.concatenate([np.full(1000, 0.1), np.linspace(0.1, 0.45, 2000), np.full(1000, 0.45)])
    streams["errors_gradual"] = (rng.random(rates.size) < rates).astype(int)
    streams["errors_stationary"] = bernoulli([(4000, 0.2)])
    streams["errors_improving"] = bernoulli([(2000, 0.4), (2000, 0.1)])
    # A perfect model that starts failing: p_min = s_min = 0.
    streams["errors_perfect_then_failing"] = np.concatenate(
        [np.zeros(300, dtype=int), bernoulli([(700, 0.05)])]
    )
    streams["errors_high_rate"] = bernoulli([(1500, 0.6), (1500, 0.8)])
    return {name: [int(v) for v in values] for name, values in streams.items()}


# === Detectors ===


def run(detector, stream, warnings=False):
    drifts, warns = [], []
    for i, x in enumerate(stream):
        detector.update(x)
        if detector.drift_detected:
            drifts.append(i)
        if warnings and detector.warning_detected:
            warns.append(i)
    return drifts, warns


def page_hinkley_case(streams, stream, **params):
    ph = drift.PageHinkley(**params)
    drifts, _ = run(ph, streams[stream])
    return {
        "stream": stream,
        "params": params,
        "drifts": drifts,
        "final_mean": float(ph._x_mean.get()),
        "final_n": int(ph._x_mean.n),
        "final_increase": float(ph._sum_increase - ph._min_increase),
        "final_decrease": float(ph._max_decrease - ph._sum_decrease),
    }


def adwin_case(streams, stream, expect_panic=False, **params):
    """River's ADWIN on one stream. With max_buckets=1 River 0.26.1 can
    panic (pyo3_runtime.PanicException, "slice index starts at 1 but ends
    at 0" in Bucket::compress): after a cut empties the highest row it pops
    only that row, so when the row below is empty too (possible only with
    max_buckets=1) the next drop in the same check reads an empty row. Such
    a case must say expect_panic=True; it records the index of the update
    that panicked and what River reported before it."""
    adwin = drift.ADWIN(**params)
    drifts, widths, totals, variances = [], [], [], []
    panic = None
    with quiet_stderr():
        for i, x in enumerate(streams[stream]):
            try:
                adwin.update(x)
            except BaseException as error:  # PanicException derives from BaseException
                if not expect_panic or type(error).__name__ != "PanicException":
                    raise
                panic = {"at": i, "message": str(error)}
                break
            if adwin.drift_detected:
                # The window after the cut (River starts a new one at the
                # next update): checks which buckets were dropped, and how.
                drifts.append(i)
                widths.append(int(adwin.width))
                totals.append(float(adwin.total))
                variances.append(window_variance(adwin))
    if expect_panic and panic is None:
        raise AssertionError(f"ADWIN {params} on {stream} was expected to panic")
    case = {
        "stream": stream,
        "params": params,
        "drifts": drifts,
        "widths_at_drift": widths,
        "totals_at_drift": totals,
        "variances_at_drift": variances,
        "river_panic": panic,
        "final_width": None,
        "final_total": None,
        "final_variance": None,
    }
    if panic is None:
        case["final_width"] = int(adwin.width)
        case["final_total"] = float(adwin.total)
        case["final_variance"] = window_variance(adwin)
    return case


def window_variance(adwin):
    """The variance of ADWIN's window, 0 when the window is empty (River
    divides by the zero width; with min_window_length=0 a check can cut
    the whole window)."""
    return float(adwin._helper.variance_in_window) if adwin.width > 0 else 0.0


@contextlib.contextmanager
def quiet_stderr():
    """Silences file descriptor 2, where Rust's panic hook prints the
    panic and its backtrace before PyO3 turns it into an exception (which
    is still raised, or recorded when expected)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def ddm_case(streams, stream, **params):
    ddm = drift.binary.DDM(**params)
    drifts, warns = run(ddm, streams[stream], warnings=True)
    return {
        "stream": stream,
        "params": params,
        "drifts": drifts,
        "warnings": warns,
        "final_error_rate": float(ddm._p.get()),
        "final_n": int(ddm._p.n),
    }


def page_hinkley_cases(streams):
    cases = [page_hinkley_case(streams, name) for name in sorted(streams)]
    cases += [
        page_hinkley_case(streams, "mean_decrease", mode="up"),
        page_hinkley_case(streams, "mean_decrease", mode="down"),
        page_hinkley_case(streams, "abrupt", mode="up"),
        page_hinkley_case(streams, "abrupt", mode="down"),
        page_hinkley_case(streams, "abrupt_multi", threshold=20.0),
        page_hinkley_case(streams, "abrupt_multi", min_instances=300),
        page_hinkley_case(streams, "abrupt_multi", min_instances=1, threshold=10.0),
        page_hinkley_case(streams, "small_shift", delta=0.05),
        page_hinkley_case(streams, "small_shift", delta=0.0, threshold=25.0),
        page_hinkley_case(streams, "gradual", alpha=0.99),
        page_hinkley_case(streams, "gradual", alpha=1.0, threshold=30.0),
        page_hinkley_case(streams, "stationary", threshold=10.0, alpha=0.999),
        page_hinkley_case(streams, "many_shifts", threshold=15.0, mode="up", delta=0.1),
        page_hinkley_case(streams, "scores", threshold=5.0, delta=0.01, min_instances=50),
        page_hinkley_case(streams, "large_offset", threshold=25.0, alpha=0.9999),
    ]
    return cases


def adwin_cases(streams):
    cases = [adwin_case(streams, name) for name in sorted(streams)]
    cases += [
        adwin_case(streams, "abrupt", clock=1),
        adwin_case(streams, "abrupt_multi", clock=1),
        adwin_case(streams, "many_shifts", clock=1),
        adwin_case(streams, "small_shift", clock=1),
        adwin_case(streams, "abrupt_multi", clock=7),
        adwin_case(streams, "abrupt_multi", clock=100),
        adwin_case(streams, "small_shift", delta=0.1),
        adwin_case(streams, "stationary", delta=0.5, clock=4),
        adwin_case(streams, "abrupt_multi", delta=1e-5),
        adwin_case(streams, "many_shifts", max_buckets=1),
        adwin_case(streams, "many_shifts", max_buckets=1, clock=1),
        adwin_case(streams, "many_shifts", max_buckets=2, clock=3),
        adwin_case(streams, "gradual", max_buckets=12, clock=1),
        adwin_case(streams, "abrupt_multi", min_window_length=1, clock=1),
        adwin_case(streams, "abrupt_multi", min_window_length=40),
        adwin_case(streams, "many_shifts", grace_period=300),
        adwin_case(streams, "many_shifts", grace_period=0, min_window_length=2, clock=1),
        # A zero minimum length tests cuts with an empty W1 when row 0 is
        # empty (max_buckets=1): River divides by n1 = 0 there.
        adwin_case(streams, "abrupt_multi", min_window_length=0, clock=1),
        adwin_case(streams, "many_shifts", min_window_length=0, max_buckets=2, clock=1),
        # Where River 0.26.1 panics (see adwin_case).
        adwin_case(streams, "abrupt", max_buckets=1, clock=1, expect_panic=True),
        adwin_case(streams, "many_shifts", min_window_length=0, max_buckets=1, clock=1, expect_panic=True),
        adwin_case(streams, "scores", min_window_length=0, max_buckets=1, expect_panic=True),
        adwin_case(streams, "scores", clock=1, delta=0.01),
        adwin_case(streams, "variance_change", clock=1, delta=0.05, max_buckets=3),
        adwin_case(streams, "large_offset", clock=1),
        adwin_case(streams, "integers", clock=1, min_window_length=10, grace_period=50),
    ]
    return cases


def ddm_cases(streams):
    cases = [ddm_case(streams, name) for name in sorted(streams)]
    cases += [
        ddm_case(streams, "errors_jump", warm_start=200),
        ddm_case(streams, "errors_multi", warm_start=5),
        ddm_case(streams, "errors_multi", warm_start=0),
        ddm_case(streams, "errors_multi", warning_threshold=1.5, drift_threshold=2.5),
        ddm_case(streams, "errors_gradual", warning_threshold=1.0, drift_threshold=2.0),
        ddm_case(streams, "errors_stationary", warning_threshold=1.0, drift_threshold=1.5),
        ddm_case(streams, "errors_high_rate", warm_start=100, drift_threshold=2.0),
        ddm_case(streams, "errors_perfect_then_failing", warm_start=10),
    ]
    return cases


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: concept_fixtures.py OUT.json")
    numeric = numeric_streams()
    errors = error_streams()
    fixtures = {
        "river_version": river.__version__,
        "streams": {**numeric, **errors},
        "page_hinkley": page_hinkley_cases(numeric),
        "adwin": adwin_cases(numeric),
        "ddm": ddm_cases(errors),
    }
    for family in ("page_hinkley", "adwin", "ddm"):
        for case in fixtures[family]:
            params = ",".join(f"{k}={v}" for k, v in sorted(case["params"].items()))
            case["name"] = f"{case['stream']}[{params}]" if params else case["stream"]
    text = render(fixtures)
    with open(sys.argv[1], "w", encoding="utf-8") as out:
        out.write(text)


def render(fixtures):
    """Sorted-key JSON with one case (or stream) per line: compact, yet a
    changed case shows up as a changed line. Python's json writes floats
    with repr, so every double round-trips; allow_nan=False fails loudly
    instead of writing invalid JSON."""

    def one_line(value):
        return json.dumps(value, sort_keys=True, allow_nan=False, separators=(",", ":"))

    lines = ["{"]
    keys = sorted(fixtures)
    for i, key in enumerate(keys):
        value = fixtures[key]
        comma = "," if i + 1 < len(keys) else ""
        if isinstance(value, list):
            lines.append(f" {json.dumps(key)}: [")
            lines.extend(f"  {one_line(case)}{',' if j + 1 < len(value) else ''}" for j, case in enumerate(value))
            lines.append(f" ]{comma}")
        elif isinstance(value, dict):
            lines.append(f" {json.dumps(key)}: {{")
            names = sorted(value)
            lines.extend(
                f"  {json.dumps(name)}: {one_line(value[name])}{',' if j + 1 < len(names) else ''}"
                for j, name in enumerate(names)
            )
            lines.append(f" }}{comma}")
        else:
            lines.append(f" {json.dumps(key)}: {one_line(value)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
