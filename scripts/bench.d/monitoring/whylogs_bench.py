"""Times whylogs profiling the data set that `benches/monitoring.rs` feeds
sidewatch, and writes rows per second as JSON.

The data: value k of a seeded stream is splitmix64(seed + (k + 1) * phi64)
as a uniform on (0, 1); two of them make one normal by Box-Muller; column c
has mean c/2 and std 1 + c/10; values are rounded to float32 (the requests
carry FP32). The Rust bench implements the same generator, so both profile
the same numbers (the checksum printed here and by the bench agree up to
libm rounding).

Cases, each on pandas DataFrames built before the clock starts (so whylogs
is not charged for parsing anything, unlike sidewatch, which decodes JSON):
- `why.log` of 10,240-row DataFrames over all rows: whylogs' bulk path;
- `why.log` of 64-row DataFrames: the batch size of the sidewatch pipeline;
- `DatasetProfile.track` of 64-row DataFrames into one long-lived profile:
  the streaming equivalent of sidewatch's window;
- `DatasetProfile.track(row=...)` one row at a time: the per-row cost.
Each case runs `--repeats` times after a warm-up; the median is reported.
"""

import argparse
import importlib.metadata
import json
import statistics
import sys
import time

import numpy as np
import pandas as pd
import whylogs as why
from whylogs.core import DatasetProfile

PHI64 = 0x9E3779B97F4A7C15


def dataset(seed: int, rows: int, cols: int) -> np.ndarray:
    """The shared data set, float32-rounded, as float64 [rows, cols]."""
    n = rows * cols
    k = np.arange(2 * n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + (k + np.uint64(1)) * np.uint64(PHI64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    u = ((z >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53
    normal = np.sqrt(-2.0 * np.log(u[0::2])) * np.cos(2.0 * np.pi * u[1::2])
    col = np.tile(np.arange(cols, dtype=np.float64), rows)
    x = col / 2.0 + (1.0 + col / 10.0) * normal
    return x.astype(np.float32).astype(np.float64).reshape(rows, cols)


def frames(data: np.ndarray, batch: int, rows: int) -> list:
    columns = [f"f{c}" for c in range(data.shape[1])]
    return [
        pd.DataFrame(data[i : i + batch], columns=columns)
        for i in range(0, min(rows, len(data)), batch)
    ]


def timed(run, rows: int, repeats: int) -> dict:
    """Median rows/s of `repeats` runs of `run()`, which profiles `rows` rows."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        rates.append(rows / (time.perf_counter() - start))
    return {"rows": rows, "rows_per_s": statistics.median(rates), "runs": rates}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=102_400, help="rows of the bulk case")
    parser.add_argument("--batch-rows", type=int, default=25_600, help="rows of the 64-row cases")
    parser.add_argument("--single-rows", type=int, default=2_000, help="rows of the row-by-row case")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="write the results here (default: stdout)")
    args = parser.parse_args()

    data = dataset(1, args.rows, 16)
    bulk = frames(data, 10_240, args.rows)
    small = frames(data, 64, args.batch_rows)
    batch_rows = sum(len(f) for f in small)
    single_rows = min(args.single_rows, len(data))
    singles = [
        {f"f{c}": float(v) for c, v in enumerate(row)} for row in data[:single_rows]
    ]

    # Warm-up: first calls load and initialise whylogs' sketches.
    why.log(bulk[0])
    DatasetProfile().track(pandas=small[0])

    def log_each(batches):
        def run():
            for frame in batches:
                why.log(frame)

        return run

    def track_each():
        profile = DatasetProfile()
        for frame in small:
            profile.track(pandas=frame)

    def track_rows():
        profile = DatasetProfile()
        for row in singles:
            profile.track(row=row)

    results = {
        "whylogs": importlib.metadata.version("whylogs"),
        "columns": 16,
        "checksum": float(data.sum()),
        "cases": {
            "log_10240": timed(log_each(bulk), args.rows, args.repeats),
            "log_64": timed(log_each(small), batch_rows, args.repeats),
            "track_64": timed(track_each, batch_rows, args.repeats),
            "track_row": timed(track_rows, single_rows, args.repeats),
        },
    }
    print(
        f"whylogs data: {args.rows} x 16, sum of f32 values {results['checksum']:.6f}",
        file=sys.stderr,
    )
    text = json.dumps(results, indent=2)
    if args.json:
        with open(args.json, "w") as out:
            out.write(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
