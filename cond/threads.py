"""Independent pieces of work (matrices, row blocks) on every core, with BLAS on one thread.

A multi-threaded BLAS may split a product or a factorisation differently for
different thread counts, and so change the last bits of its result. cond runs
such work with BLAS on one thread and takes its parallelism from running
pieces side by side instead: the floats of a piece are then the same in this
process, in its thread or process pool and on a Dask worker (same BLAS build
and CPU).

Threads (:func:`threaded_map`) serve large BLAS-3 calls, which release the GIL
and scale (row blocks of a design). Many small LAPACK calls do not scale on
threads even without the GIL: ``numpy.linalg.svd`` of 384 x 384 matrices on
two threads ran at 0.96 x the speed of one here (200 x 200: 1.00, 1000 x 1000:
1.90), while two forked processes ran at 1.6 x (``benchmarks/threads_vs_processes.py``
measures both, and how much of a pure-Python thread's rate each call leaves). :func:`forked_map` runs such pieces in forked
worker processes, which inherit the work list instead of having it pickled.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor


def default_threads() -> int:
    """Pieces run at once by default: the CPUs, at most 8."""
    return max(1, min(os.cpu_count() or 1, 8))


_CONTROLLER = []  # one threadpoolctl controller per process: building it scans the loaded libraries


def blas_limit(limit):
    """A context limiting BLAS and LAPACK to ``limit`` threads (process-wide, as threadpoolctl works)."""
    if not _CONTROLLER:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0].limit(limits=int(limit), user_api="blas")


@contextlib.contextmanager
def one_thread_blas():
    """BLAS and LAPACK on one thread inside the block."""
    with blas_limit(1):
        yield


def machine_cpus() -> int:
    """The CPUs this process may run on (its affinity), or the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def idle_cores() -> int:
    """CPUs that no other runnable task holds right now: :func:`machine_cpus` less the tasks
    ``/proc/loadavg`` counts as running besides this one (the least of three reads, so a task
    passing through does not count); every CPU where the system does not say."""
    import time

    cpus = machine_cpus()
    counts = []
    for attempt in range(3):
        try:
            with open("/proc/loadavg", "rb") as f:
                counts.append(int(f.read().split()[3].split(b"/")[0]))
        except (OSError, ValueError, IndexError):
            return cpus
        if attempt < 2:
            time.sleep(0.002)
    return max(0, min(cpus, cpus - (min(counts) - 1)))


def blas_threads() -> int:
    """BLAS threads for this run: ``$COND_BLAS_THREADS`` (a count, or ``all``), else the idle cores
    (at least one).

    OpenBLAS's threads spin while they wait for each other, so a BLAS call split over a core that
    another process holds waits for that process's time slice: with one competing process on
    two cores, ``cond inspect --workers 1`` ran 10x slower with BLAS on both cores than on one
    (``benchmarks/busy_machine.py`` measures every command both ways).
    """
    value = os.environ.get("COND_BLAS_THREADS", "").strip().lower()
    if value == "all":
        return machine_cpus()
    if value.isdigit() and int(value) > 0:
        return int(value)
    return max(1, idle_cores())


@contextlib.contextmanager
def busy_aware_blas():
    """BLAS on :func:`blas_threads` threads inside the block (a command's whole run); the inner
    :func:`one_thread_blas` blocks and forked workers still get one thread each."""
    with blas_limit(blas_threads()):
        yield


def threaded_map(fn, items, threads=None):
    """``fn(item)`` for each item, on ``threads`` threads, yielded in item order.

    Items are drawn lazily: at most ``threads`` are submitted and unfinished beyond
    the result being consumed, so a generator of loaded blocks stays bounded.
    """
    threads = default_threads() if threads is None else int(threads)
    if threads <= 1:
        for item in items:
            yield fn(item)
        return
    with ThreadPoolExecutor(max_workers=threads) as pool:
        pending = []
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= threads:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()


_FORKED_WORK = None  # (fn, items): what forked workers inherit from the parent


def can_fork() -> bool:
    """Whether :func:`forked_map` can run here: Linux with the fork start method (macOS's fork
    is unsafe with system frameworks, Windows has none)."""
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def forked_map(fn, items, processes):
    """``fn(item)`` for each item in ``processes`` forked worker processes, yielded as they finish.

    The workers inherit ``fn`` and the items by fork, so neither needs to pickle (closures,
    in-memory arrays and lazily loaded entries all work); only results travel back, so ``fn``
    should return something small and say which item it was. Each worker runs BLAS on one
    thread and takes one item at a time, so at most ``processes`` items are being worked on
    (a tensor loaded) at once; a long item does not hold the others up. Not re-entrant: one
    forked map at a time.
    """
    from concurrent.futures import as_completed

    global _FORKED_WORK
    items = list(items)
    _FORKED_WORK = (fn, items)
    try:
        # BLAS on one thread in the parent before the fork: the workers inherit the setting,
        # and no BLAS thread pool is running to be torn down at each fork
        with one_thread_blas():
            pool = ProcessPoolExecutor(max_workers=int(processes), mp_context=multiprocessing.get_context("fork"))
            try:
                for future in as_completed([pool.submit(_forked_call, i) for i in range(len(items))]):
                    yield future.result()
            finally:  # an error (or the consumer stopping) must not wait for every queued item
                pool.shutdown(wait=True, cancel_futures=True)
    finally:
        _FORKED_WORK = None


def _forked_call(index):
    fn, items = _FORKED_WORK
    return fn(items[index])


def prefetch(items, depth=1):
    """Iterate ``items`` with the next ``depth`` of them produced ahead on a background thread.

    For readers: the next chunk is read (file reads release the GIL) while the current one
    is computed on. An exception in the producer is raised here, at the item where it
    happened; leaving the loop early stops the producer.
    """
    import queue
    import threading

    box = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce():
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        box.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            box.put((done, None))
        except BaseException as exc:  # handed to the consumer, raised there
            box.put((done, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:  # a generator's files close on this thread, not at collection
                close()

    worker = threading.Thread(target=produce, name="cond-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item, exc = box.get()
            if item is done:
                if exc is not None:
                    raise exc
                return
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting to put
            try:
                box.get_nowait()
            except queue.Empty:
                pass
            worker.join(timeout=0.05)
