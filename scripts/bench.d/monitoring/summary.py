"""Prints the monitoring comparison as a Markdown table: whylogs rows/s
(from whylogs_bench.py's JSON) next to sidewatch observations/s (from
criterion's `pipeline` results), the ratios, and the targets.

Criterion figures are medians of the per-iteration time (`new/estimates.json`),
turned into a rate with the benchmark's `Throughput::Elements`.
"""

import argparse
import json
import pathlib
import sys

PIPELINE_TARGET = 200_000  # observations/s on one core
EVALUATION_TARGET_NS = 1_000_000  # 100 features x 50 bins, one evaluation
STEP_S = 30.0  # drift.step default: one evaluation per step


def criterion(root: pathlib.Path) -> dict:
    """full_id -> (median ns per iteration, elements per iteration or None)."""
    out = {}
    for bench in root.glob("**/new/benchmark.json"):
        meta = json.loads(bench.read_text())
        estimates = json.loads((bench.parent / "estimates.json").read_text())
        elements = (meta.get("throughput") or {}).get("Elements")
        out[meta["full_id"]] = (estimates["median"]["point_estimate"], elements)
    return out


def rate(results: dict, full_id: str):
    if full_id not in results:
        return None
    ns, elements = results[full_id]
    return (elements or 1) / (ns * 1e-9)


def fmt(x, unit=""):
    return "not run" if x is None else f"{x:,.0f}{unit}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--whylogs", required=True, help="whylogs_bench.py's JSON")
    parser.add_argument("--criterion", required=True, help="target/criterion")
    args = parser.parse_args()

    wl = json.loads(pathlib.Path(args.whylogs).read_text())
    cases = {k: v["rows_per_s"] for k, v in wl["cases"].items()}
    results = criterion(pathlib.Path(args.criterion))

    observe = rate(results, "pipeline/json_64x16/decode_observe")
    shard = rate(results, "pipeline/json_64x16/decode_shard")
    pessimistic = rate(results, "pipeline/json_64x16/eval_every_65536")
    step_ns = results.get("pipeline/evaluate_step/16x10", (None,))[0]
    # One evaluation per 30 s step at the measured rate: the step's
    # evaluation is spread over STEP_S * rate observations.
    per_step = None
    if observe and step_ns is not None:
        per_step = 1.0 / (1.0 / observe + step_ns * 1e-9 / (STEP_S * observe))

    rows = [
        ("whylogs `why.log`, 10,240-row DataFrames (bulk)", cases["log_10240"], "rows/s"),
        ("whylogs `why.log`, 64-row DataFrames", cases["log_64"], "rows/s"),
        ("whylogs `profile.track`, 64-row DataFrames, one profile", cases["track_64"], "rows/s"),
        ("whylogs `profile.track(row=…)`, one row at a time", cases["track_row"], "rows/s"),
        ("sidewatch decode → window, 64×16 KServe JSON", observe, "obs/s"),
        ("sidewatch decode → shard (validation, metrics, concept + anomaly detectors, window)", shard, "obs/s"),
        ("sidewatch decode → window + evaluation per 30 s step at that rate", per_step, "obs/s"),
        ("sidewatch decode → window + evaluation every 65,536 obs", pessimistic, "obs/s"),
    ]
    print(f"whylogs {wl['whylogs']}, 16 float columns; sidewatch on one core.\n")
    print("| case | rate | unit |")
    print("|---|---:|---|")
    for name, value, unit in rows:
        print(f"| {name} | {fmt(value)} | {unit} |")
    if step_ns is not None:
        print(f"| sidewatch evaluation step (summary + all methods), 16×10 | {step_ns / 1e3:,.1f} | µs |")
    print()

    if observe:
        best_64 = max(cases["log_64"], cases["track_64"])
        print(
            f"ratio sidewatch decode→window / whylogs, same 64-row batches: "
            f"{observe / best_64:,.0f}×; / whylogs bulk 10,240-row DataFrames: "
            f"{observe / cases['log_10240']:,.1f}×"
        )
        if shard:
            print(
                f"ratio sidewatch decode→shard / whylogs, same 64-row batches: "
                f"{shard / best_64:,.0f}×; / whylogs bulk: {shard / cases['log_10240']:,.1f}×"
            )
        verdict = "met" if observe >= PIPELINE_TARGET else "MISSED"
        print(
            f"target ≥ {PIPELINE_TARGET:,} obs/s/core: {verdict} "
            f"(decode→window {observe:,.0f}; decode→shard {fmt(shard)})"
        )
    for methods, label in [("psi_js_hellinger", "PSI/JS/Hellinger"), ("all", "all methods")]:
        for case, what in [("100x50", "evaluate"), ("100x50_with_summary", "summary + evaluate")]:
            found = results.get(f"evaluate/{case}/{methods}")
            if found:
                ns = found[0]
                verdict = "met" if ns < EVALUATION_TARGET_NS else "MISSED"
                print(f"target 100×50 < 1 ms, {what}, {label}: {verdict} ({ns / 1e6:.3f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
