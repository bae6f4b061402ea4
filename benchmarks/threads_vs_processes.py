"""Does a call release the GIL, and do small LAPACK calls scale on threads? Measured, not assumed.

    python benchmarks/threads_vs_processes.py

1. For each call, the rate of a pure-Python counter thread while the call runs (on one
   BLAS thread), as a share of its rate while the main thread sleeps: near 0 when the call
   holds the GIL, near 1 when it releases it.
2. NumPy's ``linalg.svd(compute_uv=False)`` of 24 square matrices (200, 384, 1000) one
   after another, on two threads, and on two forked processes: the throughput of each
   against one after another. The cores other processes used are printed beside.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import scipy.linalg
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine_load import Load, wait_for_idle  # noqa: E402

MATS = {}


def counter_share():
    rng = np.random.default_rng(0)
    a, s = rng.standard_normal((8000, 1000)), rng.standard_normal((1000, 1000))
    g = a.T @ a
    box, stop = [0], threading.Event()

    def spin():
        while not stop.is_set():
            box[0] += 1

    threading.Thread(target=spin, daemon=True).start()
    time.sleep(0.05)

    def rate(fn, reps=3):
        c0, t0 = box[0], time.perf_counter()
        for _ in range(reps):
            fn()
        return (box[0] - c0) / (time.perf_counter() - t0)

    calls = {
        "numpy.linalg.svd 1000": lambda: np.linalg.svd(s, compute_uv=False),
        "scipy.linalg.svd 1000 (gesdd)": lambda: scipy.linalg.svd(s, compute_uv=False),
        "numpy x.T @ x (syrk) 8000x1000": lambda: a.T @ a,
        "scipy blas dsyrk 8000x1000": lambda: scipy.linalg.blas.dsyrk(1.0, a.T),
        "numpy.linalg.eigvalsh 1000": lambda: np.linalg.eigvalsh(g),
        "numpy.linalg.cholesky 1000": lambda: np.linalg.cholesky(g),
    }
    with threadpool_limits(limits=1, user_api="blas"):
        idle = rate(lambda: time.sleep(0.3), 1)
        print("1. a pure-Python thread's rate during each call, as a share of its idle rate")
        for name, fn in calls.items():
            print(f"  {name:34s} {rate(fn) / idle:5.2f}")
    stop.set()


def _svd(key):
    n, i = key
    return float(np.linalg.svd(MATS[n][i], compute_uv=False)[0])


def scaling():
    print("\n2. numpy.linalg.svd of 24 matrices: throughput against one after another")
    rng = np.random.default_rng(1)
    for n in (200, 384, 1000):
        MATS[n] = [rng.standard_normal((n, n)) for _ in range(24)]
        keys = [(n, i) for i in range(24)]
        with threadpool_limits(limits=1, user_api="blas"):
            _svd(keys[0])
            with Load() as serial:
                [_svd(k) for k in keys]
            with ThreadPoolExecutor(2) as pool, Load() as threads:
                list(pool.map(_svd, keys))
            with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
                list(pool.map(_svd, keys[:2]))  # start the workers before the clock
                with Load() as procs:
                    list(pool.map(_svd, keys))
        print(
            f"  {n:4d} x {n:<4d} one after another {serial.seconds:6.3f} s; two threads "
            f"x{serial.seconds / threads.seconds:4.2f}; two forked processes x{serial.seconds / procs.seconds:4.2f}"
            f"   (others {max(serial.others or 0, threads.others or 0):.2f} cores in the serial and thread runs;"
            f" a live pool's CPU would count as others')"
        )


if __name__ == "__main__":
    idle, figure = wait_for_idle(timeout=60)
    print(f"{os.cpu_count()} CPUs; {'idle window' if idle else 'NO idle window (others %.2f cores)' % figure}")
    counter_share()
    scaling()
