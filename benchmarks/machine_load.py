"""How busy the machine is with other processes: the figure every timing benchmark records.

``Load`` reads ``/proc/stat`` (all CPUs' busy time) and ``/proc/self/stat`` (this
process and its reaped children) around a timed run and reports the cores that
other processes used meanwhile. ``wait_for_idle`` samples it until others use
less than a threshold, or gives up after a timeout and says so. Linux only; elsewhere
the load reads as unknown (None).
"""

from __future__ import annotations

import os
import time

_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _busy_ticks():
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle


def _own_ticks():
    with open("/proc/self/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return sum(int(v) for v in rest[11:15])  # utime stime cutime cstime


class Load:
    """``with Load() as load: ...``; then ``load.others`` is the cores other processes used."""

    def __enter__(self):
        self.others = None
        try:
            self._start = (time.perf_counter(), _busy_ticks(), _own_ticks())
        except OSError:
            self._start = None
        return self

    def __exit__(self, *exc):
        if self._start is None:
            return False
        t0, busy0, own0 = self._start
        elapsed = time.perf_counter() - t0
        others = (_busy_ticks() - busy0) - (_own_ticks() - own0)
        self.others = max(0.0, others / _HZ / max(elapsed, 1e-9))
        self.seconds = elapsed
        return False


def wait_for_idle(threshold=0.15, timeout=120.0, window=1.0):
    """Sample ``window``-second windows until other processes use under ``threshold`` cores.

    Returns (idle, last figure): idle False when ``timeout`` passed first.
    """
    deadline = time.perf_counter() + timeout
    while True:
        with Load() as load:
            time.sleep(window)
        if load.others is None or load.others < threshold:
            return True, load.others
        if time.perf_counter() > deadline:
            return False, load.others


def describe(figures):
    """'0.02-0.10 cores' for a list of per-run figures (None when unknown)."""
    known = [f for f in figures if f is not None]
    if not known:
        return "load unknown"
    return f"others {min(known):.2f}-{max(known):.2f} cores"
