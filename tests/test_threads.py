"""The threading helpers under the readers and the score passes: order, bounded windows,
errors that cross threads, and recycled read buffers that never overwrite rows in use."""

import threading
import time

import numpy as np
import pytest

from cond.errors import InputError
from cond.formats.row_stream import default_chunk_rows, open_rows
from cond.threads import prefetch, threaded_map


def test_ordered_map_keeps_order_and_a_bounded_window():
    live, peak = [0], [0]
    lock = threading.Lock()

    def items():
        for k in range(40):
            with lock:
                live[0] += 1
                peak[0] = max(peak[0], live[0])
            yield k

    def work(k):
        time.sleep(0.001 * (k % 3))
        return k * k

    out = []
    for value in threaded_map(work, items(), threads=3):
        with lock:
            live[0] -= 1
        out.append(value)
    assert out == [k * k for k in range(40)]
    assert peak[0] <= 4  # drawn lazily: the window plus the one being handed over


def test_prefetch_passes_items_and_raises_the_producers_error_in_place():
    def items():
        yield 1
        yield 2
        raise InputError("truncated data", path="x.npy")

    got = []
    with pytest.raises(InputError, match="truncated data"):
        for item in prefetch(items()):
            got.append(item)
    assert got == [1, 2]


def test_prefetch_stops_its_producer_when_the_loop_ends_early():
    produced = []

    def items():
        for k in range(1000):
            produced.append(k)
            yield k

    for item in prefetch(items()):
        if item == 3:
            break
    time.sleep(0.3)
    assert len(produced) <= 6  # the item handed over, the one queued, the one being put
    assert not any(t.name == "cond-prefetch" and t.is_alive() for t in threading.enumerate())


@pytest.mark.parametrize("chunk_rows", [4096, 5000, 50_000, None])
def test_held_blocks_are_never_overwritten_by_recycled_buffers(tmp_path, chunk_rows):
    """Keep every block of a pass alive at once: recycling may only reuse a buffer nothing
    refers to, so the blocks must still equal the file's rows at the end."""
    a = np.random.default_rng(0).standard_normal((70_000, 6))
    np.save(tmp_path / "a.npy", a)
    with open_rows(str(tmp_path / "a.npy"), chunk_rows=chunk_rows) as rows:
        held = [(start, x) for start, x, _ in rows.blocks()]
        again = [x.copy() for _, x, _ in rows.blocks()]  # a second pass reads into free buffers
    assert [s for s, _ in held] == list(range(0, 70_000, 4096))
    np.testing.assert_array_equal(np.vstack([x for _, x in held]), a)
    np.testing.assert_array_equal(np.vstack(again), a)


def test_default_chunk_is_about_16_mib_of_whole_blocks():
    for ncols in (1, 10, 100, 500, 5000):
        rows = default_chunk_rows(ncols)
        assert rows % 4096 == 0 and rows >= 4096
        assert rows * ncols * 8 <= 16 * 2**20 or rows == 4096


@pytest.mark.skipif(not __import__("cond.threads").threads.can_fork(), reason="needs fork (Linux)")
def test_forked_map_inherits_its_items_and_an_error_does_not_wait_for_the_queue(tmp_path):
    from cond.threads import forked_map

    local = {"offset": 10}  # a closure over local state: nothing is pickled on the way in
    assert sorted(forked_map(lambda i: i + local["offset"], range(20), 2)) == list(range(10, 30))

    def item(i):
        if i == 0:
            raise InputError("bad tensor", path="x.safetensors")
        time.sleep(0.2)
        (tmp_path / f"done{i}").write_text("")
        return i

    with pytest.raises(InputError, match="bad tensor") as caught:
        list(forked_map(item, range(30), 2))
    assert caught.value.path == "x.safetensors"  # the error crosses the process boundary whole
    assert len(list(tmp_path.iterdir())) < 29  # the queued items were cancelled, not all run


def test_blas_threads_leave_a_busy_core_alone(monkeypatch):
    """With one competing CPU-bound process, the run's BLAS threads are at most the CPUs less one
    (OpenBLAS threads spin on a core another process holds: benchmarks/busy_machine.py), and
    $COND_BLAS_THREADS overrides the choice."""
    import subprocess
    import sys
    import time

    from cond.threads import blas_threads, idle_cores, machine_cpus

    monkeypatch.delenv("COND_BLAS_THREADS", raising=False)
    cpus = machine_cpus()
    assert 0 <= idle_cores() <= cpus
    competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        assert idle_cores() <= cpus - 1, (idle_cores(), cpus)
        assert 1 <= blas_threads() <= max(1, cpus - 1)
    finally:
        competitor.kill()
        competitor.wait()
    monkeypatch.setenv("COND_BLAS_THREADS", "3")
    assert blas_threads() == 3
    monkeypatch.setenv("COND_BLAS_THREADS", "all")
    assert blas_threads() == cpus


def test_a_run_sets_its_blas_threads_and_restores_them(monkeypatch):
    from threadpoolctl import threadpool_info

    from cond.threads import busy_aware_blas

    def blas():
        return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]

    before = blas()
    monkeypatch.setenv("COND_BLAS_THREADS", "1")
    with busy_aware_blas():
        assert set(blas()) == {1}
    assert blas() == before
