"""inspect's pool runs matrices side by side: measured by counting overlapping work, not by a timed threshold.

The measure is CPU time over wall time. For threads, each task records the CPU its own
thread used (``time.thread_time``) and the wall interval it ran in; a thread waiting for
the GIL (or a lock) uses no CPU, so the sum over tasks divided by the wall span is at most
about 1 when the calls serialise, whatever the pool's size, and approaches 2 on two free
cores when they do not. For inspect's pool of forked processes, the CPU time of this
process and its reaped children (``os.times``) over the call's wall time measures the same.
A GIL-holding control (SciPy's f2py ``gesdd`` on threads) in the same test shows that the
measure tells the two apart; a GIL-free control (NumPy's matmul on threads) says whether
the machine has a second core free at all (the test skips, with the figure, when it has not).
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
import scipy.linalg

import cond
from cond.threads import one_thread_blas, threaded_map

pytestmark = pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two cores")


def _matrices():
    rng = np.random.default_rng(7)
    square = [rng.standard_normal((360, 360)) for _ in range(6)]  # gesdd
    tall = [rng.standard_normal((2400, 160)) for _ in range(6)]  # the Gram route
    ill = [rng.standard_normal((1600, 120)) @ np.diag(np.geomspace(1, 1e-3, 120)) for _ in range(4)]  # CholQR2
    return square + tall + ill


def _overlap(intervals):
    """Sum of the tasks' thread CPU over the wall span of the run."""
    span = max(end for _, end, _ in intervals) - min(start for start, _, _ in intervals)
    return sum(cpu for _, _, cpu in intervals) / span


def _timed(fn):
    intervals, lock = [], threading.Lock()

    def task(x):
        t0, c0 = time.perf_counter(), time.thread_time()
        out = fn(x)
        c1, t1 = time.thread_time(), time.perf_counter()
        with lock:
            intervals.append((t0, t1, c1 - c0))
        return out

    return task, intervals


def _pool(fn, items, threads):
    task, intervals = _timed(fn)
    with one_thread_blas():
        out = list(threaded_map(task, items, threads))
    return out, _overlap(intervals)


def test_two_workers_overlap_and_give_the_same_floats(tmp_path):
    mats = _matrices()
    big = np.random.default_rng(1).standard_normal((700, 700))
    # GIL-free control: is a second core there? (twice: the first run pays the pool's start-up)
    free = max(_pool(lambda x: x @ x, [big] * 16, 2)[1] for _ in range(2))
    if free < 1.4:
        pytest.skip(f"the machine gives this process no second core now (matmul overlap {free:.2f})")
    _, held = _pool(lambda x: scipy.linalg.svd(x, compute_uv=False, lapack_driver="gesdd"), mats, 2)

    path = tmp_path / "mats.npz"
    np.savez(path, **{f"m{i:02d}": m for i, m in enumerate(mats)})
    cond.inspect(path, workers=2)  # warm-up
    before, t0 = os.times(), time.perf_counter()
    two = cond.inspect(path, workers=2, keep_spectra=True)
    wall, after = time.perf_counter() - t0, os.times()
    overlap = (
        sum(getattr(after, k) - getattr(before, k) for k in ("user", "system", "children_user", "children_system"))
        / wall
    )
    three = cond.inspect(path, workers=3, keep_spectra=True)

    routes = {m.diagnostics.route for m in two.matrices}
    assert routes == {"gram", "gesdd", "cholqr2"}, routes
    # the pool's own gain: CPU work overlapped far beyond what the GIL-holding control manages
    assert held < 1.25, f"control holding the GIL overlapped {held:.2f}: the measure cannot tell"
    print(f"overlap: forked pool {overlap:.2f}, GIL-held control {held:.2f}, free control {free:.2f}")
    assert overlap >= 1.3 and overlap >= held + 0.25, (overlap, held, free)
    # same floats whatever the worker count (BLAS on one thread per matrix either way)
    for a, b in zip(two.matrices, three.matrices):
        assert np.array_equal(a.diagnostics.spectrum, b.diagnostics.spectrum), a.name


def test_each_route_releases_the_gil():
    # a pure-Python counter thread keeps most of its idle rate while a route computes,
    # and nearly none while SciPy's f2py gesdd (the control) does
    mats = {
        "gram": np.random.default_rng(2).standard_normal((20000, 200)),
        "gesdd": np.random.default_rng(3).standard_normal((900, 900)),
    }
    control = np.random.default_rng(4).standard_normal((1000, 1000))
    box, stop = [0], threading.Event()

    def spin():
        while not stop.is_set():
            box[0] += 1

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()

    def rate(fn):
        c0, t0 = box[0], time.perf_counter()
        fn()
        return (box[0] - c0) / (time.perf_counter() - t0)

    try:
        with one_thread_blas():
            idle = rate(lambda: time.sleep(0.3))
            held = rate(lambda: [scipy.linalg.svd(control, compute_uv=False) for _ in range(2)])
            got = {
                r: rate(lambda a=a: [cond.linalg.spectrum.diagnose(a, gram=True) for _ in range(3)])
                for r, a in mats.items()
            }
    finally:
        stop.set()
        spinner.join()
    assert cond.linalg.spectrum.diagnose(mats["gram"]).route == "gram"
    assert held < 0.25 * idle, (held, idle)
    for route, r in got.items():
        assert r > 0.35 * idle and r > 2 * held, (route, r, idle, held)
