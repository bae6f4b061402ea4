"""cond's CSV reader against numpy.loadtxt on the same file.

    python benchmarks/sample_csv.py [--rows 500000] [--cols 20] [--digits 17]

Writes a CSV of random values with ``--digits`` significant digits (17: full
precision, %.17g; 19: numpy.savetxt's default %.18e) and a header, then
times, alternating and after a warm-up, numpy.loadtxt and cond's CSV reader
(``cond.formats.open_entries``: the memory-mapped file, header detection and
the numba parser that cond inspect and cond sample use), checks that both give
the same float64 values bit for bit, and prints the speed-up (target >= 5).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np

from cond.formats import open_entries


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--cols", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--digits", type=int, default=17)
    args = parser.parse_args()
    # on a virtual machine the first touch of guest memory is slow (seen here: 0.46 s for
    # 206 MB, then 0.015 s); touch a few GB once so neither reader pays it inside the timing
    warm = np.ones(3 * 2**30 // 8)
    del warm
    rng = np.random.default_rng(0)
    data = rng.standard_normal((args.rows, args.cols)) * np.logspace(-3, 3, args.cols)
    names = [f"x{j}" for j in range(args.cols)]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "data.csv")
        fmt = f"%.{args.digits - 1}e" if args.digits == 19 else f"%.{args.digits}g"
        np.savetxt(path, data, delimiter=",", header=",".join(names), comments="", fmt=fmt)
        size = os.path.getsize(path)

        def with_loadtxt():
            return np.loadtxt(path, delimiter=",", skiprows=1)

        def with_cond():  # what cond inspect and cond sample's spill read: header detection included
            with open_entries(path) as entries:
                return next(iter(entries)).load()

        a, b = with_loadtxt(), with_cond()
        assert np.array_equal(a, b), "readers disagree"
        t_np, t_cond = [], []
        for _ in range(args.repeats):
            for fn, times in ((with_loadtxt, t_np), (with_cond, t_cond)):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
    m_np, m_cond = statistics.median(t_np), statistics.median(t_cond)
    print(
        f"{args.rows} x {args.cols} CSV at {args.digits} significant digits, {size / 1e6:.0f} MB; "
        "identical float64 values"
    )
    print(f"numpy.loadtxt {m_np:.2f} s, cond {m_cond:.2f} s: speed-up x{m_np / m_cond:.1f} (target >= 5)")


if __name__ == "__main__":
    main()
