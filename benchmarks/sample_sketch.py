"""Sketched against exact leverage scores on a tall matrix streamed from disk.

    python benchmarks/sample_sketch.py [--n 1000000] [--d 500] [--dir bench-data/sample] [--keep]

Writes (once) an n x d float64 .npy whose rows have heavy-tailed norms, then,
in the same run, times the exact streaming scores (QR pass + score pass) and
the sketched ones (sparse embedding pass + JL score pass), both through the
same block reader, and prints the time ratio sketch / exact (target <= 0.3),
the median relative error (target <= 0.2) and the extreme ratios (target:
every score within a factor 2).
"""

from __future__ import annotations

import argparse
import os
import shutil
import time

import numpy as np

from cond.formats.row_stream import open_rows
from cond.linalg import leverage as lev
from cond.linalg.sketch import sketch_sizes, sketched_leverage


def make(path, n, d, seed=0):
    if os.path.exists(path):
        return
    rng = np.random.default_rng(seed)
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": (n, d)})
        for s in range(0, n, 50_000):
            b = min(50_000, n - s)
            x = rng.standard_normal((b, d)) * rng.pareto(3.0, size=(b, 1))
            x.tofile(f)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--d", type=int, default=500)
    parser.add_argument("--dir", default=os.path.join("bench-data", "sample"))
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    path = os.path.join(args.dir, f"tall_{args.n}x{args.d}.npy")
    make(path, args.n, args.d)
    print(f"{args.n} x {args.d} float64 ({os.path.getsize(path) / 1e9:.2f} GB) at {path}")
    with open_rows(path) as rows:

        def blocks():
            for start, x, _ in rows.blocks():
                yield start, x

        t0 = time.perf_counter()
        exact = lev.leverage_scores(blocks, rows.n, rows.d).values
        t_exact = time.perf_counter() - t0
        t0 = time.perf_counter()
        sketch = sketched_leverage(blocks, rows.n, rows.d, seed=0)
        t_sketch = time.perf_counter() - t0
    ratio = sketch.values / exact
    rel = np.abs(ratio - 1)
    sizes = sketch_sizes(args.n, args.d)
    print(f"exact streaming scores:  {t_exact:.1f} s")
    print(
        f"sketched scores:         {t_sketch:.1f} s (embedding rows {sizes[0]}, {sizes[1]} nonzeros per "
        f"column, JL dimension {sizes[2]})"
    )
    print(f"time ratio sketch / exact: {t_sketch / t_exact:.3f} (target <= 0.3)")
    print(
        f"median relative error {np.median(rel):.4f} (target <= 0.2); score ratios in "
        f"[{ratio.min():.3f}, {ratio.max():.3f}] (target within [0.5, 2])"
    )
    ok = t_sketch / t_exact <= 0.3 and np.median(rel) <= 0.2 and ratio.min() >= 0.5 and ratio.max() <= 2
    print("PASS" if ok else "FAIL")
    if not args.keep:
        shutil.rmtree(args.dir)


if __name__ == "__main__":
    main()
