"""Compares regenerated reference fixtures with the committed ones.

The fixtures are deterministic for a given CPU, but NumPy picks SIMD kernels
(AVX2, AVX-512, ...) and OpenBLAS its LAPACK kernels at run time, and they
sum in different orders, so the last bits of a float can differ from the
machine that committed them; an ill-conditioned covariance (one Mahalanobis
case) magnifies that to about 1e-11. This accepts that and nothing more:
the same structure, the same strings, integers and booleans, and floats
equal to a relative 1e-10, a tenth of the tightest tolerance the Rust tests
hold sidewatch to (1e-9), so a fixture that passes here cannot change a
test's verdict.

Usage: compare.py COMMITTED REGENERATED  (exit 0: equivalent, 1: not)
"""

import json
import math
import sys

RELATIVE = 1e-10


def diff(a, b, path, out):
    if len(out) >= 10:
        return
    if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str) or a is None:
        if a != b:
            out.append(f"{path}: {a!r} != {b!r}")
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, int) and isinstance(b, int):
            if a != b:
                out.append(f"{path}: {a} != {b}")
        elif not (a == b or (math.isnan(a) and math.isnan(b))
                  or abs(a - b) <= RELATIVE * max(abs(a), abs(b))):
            out.append(f"{path}: {a!r} != {b!r}")
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{path}: {len(a)} items != {len(b)} items")
            return
        for i, (x, y) in enumerate(zip(a, b)):
            diff(x, y, f"{path}[{i}]", out)
    elif isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            out.append(f"{path}: keys {sorted(a.keys() ^ b.keys())} differ")
            return
        for key in a:
            diff(a[key], b[key], f"{path}.{key}", out)
    else:
        out.append(f"{path}: {type(a).__name__} != {type(b).__name__}")


def main():
    committed, regenerated = (json.load(open(p)) for p in sys.argv[1:3])
    problems = []
    diff(committed, regenerated, "$", problems)
    for problem in problems:
        print(f"{sys.argv[2]}: {problem}", file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
