"""Peak memory of exact leverage sampling of a 2 x 10^6 by 100 float64 .npy (1.6 GB).

    python benchmarks/sample_memory.py [--dir bench-data/sample] [--keep]

Writes the matrix once, then runs ``/usr/bin/time -v cond sample X.npy --method
leverage --size 2000`` and prints the peak resident memory (target < 0.5 GB).
The .npy is read with plain file reads in --chunk-rows pieces, so no
memory-mapped pages pile up as resident.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

import numpy as np
from peak_rss import run_with_peak


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=os.path.join("bench-data", "sample"))
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    path = os.path.join(args.dir, "X_2e6x100.npy")
    n, d = 2_000_000, 100
    if not os.path.exists(path):
        rng = np.random.default_rng(0)
        with open(path, "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": (n, d)})
            for _ in range(0, n, 100_000):
                (rng.standard_normal((100_000, d)) * rng.pareto(3.0, size=(100_000, 1))).tofile(f)
    print(f"{n} x {d} float64: {os.path.getsize(path) / 1e9:.2f} GB")
    peak, wall, stdout = run_with_peak(
        [sys.executable, "-m", "cond.cli", "sample", path, "--method", "leverage", "--size", "2000", "--seed", "1"]
    )
    kept = sum(1 for line in stdout.splitlines()[2:] if line)
    print(
        f"exact leverage sample of {kept} rows in {wall:.0f} s; peak RSS {peak / 1e9:.3f} GB "
        f"(target < 0.5 GB): {'PASS' if peak < 0.5e9 else 'FAIL'}"
    )
    if not args.keep:
        shutil.rmtree(args.dir)


if __name__ == "__main__":
    main()
