"""cond sample against what a data scientist writes, whole processes, with the machine's load beside each figure.

    python benchmarks/sample_vs_peers.py [--repeats 3] [--sizes 200000x50,1000000x100,500000x400] [--dir D]

For each size, a float64 .npy (rows scaled by Pareto factors, so the scores vary) is
written once; then, alternating, each a fresh interpreter (imports included), after an
untimed warm-up of each (page cache, numba cache):

- ``cond sample X.npy --method leverage --scores exact --size 2000 -o out.tsv``
  against the NumPy baseline: ``R = cholesky(A.T @ A)``, scores = row norms of
  ``A R^-1`` (``scipy.linalg.solve_triangular``), written with ``numpy.save``;
- ``--scores sketch`` against SciPy's ``clarkson_woodruff_transform`` (64 d rows),
  ``R`` from its QR, scores = row norms of ``A R^-1``;
- ``cond sample`` of a tiny file (100 x 5), start-up alone;
- ``--scores-out scores.txt`` (one line per row) against the same run without it.

Prints medians, ratios (targets: exact <= 1.0 of NumPy at 1000000 x 100 and 500000 x 400,
sketch <= 1.0 of SciPy, tiny < 0.8 s), peak RSS of each (GNU time; target < 0.5 GB for
cond), the accuracy of cond's exact scores against the baseline's, and the cores other
processes used during each run (benchmarks/machine_load.py).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine_load import Load, describe, wait_for_idle  # noqa: E402

NUMPY_BASELINE = """
import sys, numpy as np, scipy.linalg
A = np.load(sys.argv[1])
R = np.linalg.cholesky(A.T @ A).T
Q = scipy.linalg.solve_triangular(R, A.T, trans='T', check_finite=False)
np.save(sys.argv[2], np.einsum('ij,ij->j', Q, Q))
"""

SCIPY_SKETCH = """
import sys, numpy as np, scipy.linalg
A = np.load(sys.argv[1])
SA = scipy.linalg.clarkson_woodruff_transform(A, 64 * A.shape[1], seed=0)
R = scipy.linalg.qr(SA, mode='r', check_finite=False)[0][:A.shape[1]]
Q = scipy.linalg.solve_triangular(R, A.T, trans='T', check_finite=False)
np.save(sys.argv[2], np.einsum('ij,ij->j', Q, Q))
"""


def run(cmd):
    """(seconds, peak RSS bytes, others' cores) of one whole process."""
    timed = ["/usr/bin/time", "-v", *cmd] if os.path.exists("/usr/bin/time") else cmd
    with Load() as load:
        out = subprocess.run(timed, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"failed ({out.returncode}): {' '.join(cmd)}\n{out.stderr[-2000:]}")
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr)
    return load.seconds, int(found.group(1)) * 1024 if found else None, load.others


def compare(label, commands, repeats, targets):
    idle, figure = wait_for_idle(timeout=60)
    for cmd in commands.values():  # warm-up
        run(cmd)
    figures = {k: [] for k in commands}
    for _ in range(repeats):
        for k, cmd in commands.items():
            figures[k].append(run(cmd))
    print(f"\n{label}  [{'idle window' if idle else 'NO idle window (others %.2f cores)' % figure}]")
    med = {}
    for k, runs in figures.items():
        med[k] = statistics.median(r[0] for r in runs)
        peak = max((r[1] or 0) for r in runs) / 1e9
        print(f"  {k:40s} {med[k]:7.2f} s  peak {peak:5.2f} GB  ({describe([r[2] for r in runs])})")
    for num, den, target in targets:
        ratio = med[num] / med[den]
        verdict = "" if target is None else f"  (target <= {target}: {'PASS' if ratio <= target else 'FAIL'})"
        print(f"  ratio {num} / {den}: {ratio:.3f}{verdict}")
    return med


def make(path, n, d):
    if os.path.exists(path):
        return
    rng = np.random.default_rng(0)
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": (n, d)})
        for first in range(0, n, 100_000):
            rows = min(100_000, n - first)
            (rng.standard_normal((rows, d)) * rng.pareto(3.0, size=(rows, 1))).tofile(f)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default="200000x50,1000000x100,500000x400")
    parser.add_argument("--dir", default=os.path.join("bench-data", "peers"))
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    py = sys.executable
    cond = [py, "-m", "cond.cli", "sample"]
    tiny = os.path.join(args.dir, "tiny.npy")
    np.save(tiny, np.random.default_rng(1).standard_normal((100, 5)))
    out = lambda name: os.path.join(args.dir, name)  # noqa: E731
    compare(
        "start-up: cond sample of a 100 x 5 .npy",
        {"cond sample tiny": cond + [tiny, "--size", "10", "-o", out("t.tsv"), "--force"]},
        args.repeats,
        [],
    )
    for spec in args.sizes.split(","):
        n, d = (int(v) for v in spec.split("x"))
        path = os.path.join(args.dir, f"X_{n}x{d}.npy")
        make(path, n, d)
        common = [path, "--method", "leverage", "--size", "2000", "--force"]
        compare(
            f"{n} x {d} float64 ({os.path.getsize(path) / 1e9:.2f} GB)",
            {
                "cond --scores exact": cond + common + ["--scores", "exact", "-o", out("e.tsv")],
                "NumPy cholesky(A^T A), A R^-1": [py, "-c", NUMPY_BASELINE, path, out("numpy.npy")],
                "cond --scores sketch": cond + common + ["--scores", "sketch", "-o", out("s.tsv")],
                "SciPy clarkson_woodruff_transform": [py, "-c", SCIPY_SKETCH, path, out("scipy.npy")],
                "cond exact --scores-out scores.txt": cond
                + common
                + ["--scores", "exact", "-o", out("e2.tsv"), "--scores-out", out("scores.txt")],
            },
            args.repeats,
            [
                ("cond --scores exact", "NumPy cholesky(A^T A), A R^-1", 1.0),
                ("cond --scores sketch", "SciPy clarkson_woodruff_transform", 1.0),
                ("cond exact --scores-out scores.txt", "cond --scores exact", None),
            ],
        )
        mine = np.loadtxt(out("scores.txt"), comments="#") if os.path.getsize(out("scores.txt")) < 4e8 else None
        ref = np.load(out("numpy.npy"))
        if mine is not None:
            mine = mine if mine.ndim == 1 else mine[:, -1]
            print(
                f"  cond exact scores against NumPy's: max relative difference "
                f"{float(np.max(np.abs(mine - ref) / ref)):.1e}"
            )
    if not args.keep:
        shutil.rmtree(args.dir)


if __name__ == "__main__":
    main()
