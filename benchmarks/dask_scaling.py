"""cond on a Dask LocalCluster at 1 and 2 worker processes: speed-up and per-task overhead.

    python benchmarks/dask_scaling.py [--matrices 48] [--size 768] [--rows 1000000] [--cols 50]

Makes a synthetic sharded float32 checkpoint (``--matrices`` matrices of
``--size`` x ``--size`` in 4 shards with an index) and a tall float64 design
matrix (``--rows`` x ``--cols`` .npy), then times, with each cluster already
started (startup is printed apart):

- ``inspect`` of the checkpoint in this process with one thread (the per-task
  baseline), on 1 worker and on 2 workers;
- ``sample --method leverage`` of the design matrix in this process, on 1
  worker and on 2 workers, with exact and with sketched scores.

Each cluster is warmed up first on a small design (the first tasks import cond
and SciPy and load numba's cache on every worker; printed apart). Prints the
2-worker speed-up over 1 worker, and the scheduler overhead per task:
(1-worker time - one-thread in-process time) / tasks. Checks that every result
equals the in-process one (BLAS on one thread, as in cond's own pool and on the
workers: a multi-threaded BLAS may change the last bits).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time

import numpy as np
from safetensors.numpy import save_file


def make_checkpoint(folder, count, size, seed=0):
    rng = np.random.default_rng(seed)
    shards, weight_map, per = 4, {}, -(-count // 4)
    for s in range(shards):
        tensors = {}
        for i in range(s * per, min(count, (s + 1) * per)):
            tensors[f"layers.{i}.weight"] = rng.standard_normal((size, size)).astype(np.float32)
        name = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        save_file(tensors, os.path.join(folder, name))
        weight_map.update({k: name for k in tensors})
    index = os.path.join(folder, "model.safetensors.index.json")
    with open(index, "w") as f:
        json.dump({"metadata": {"total_size": count * size * size * 4}, "weight_map": weight_map}, f)
    return index


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matrices", type=int, default=48)
    parser.add_argument("--size", type=int, default=768)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cols", type=int, default=50)
    args = parser.parse_args()
    import distributed

    import cond
    from cond.commands.sample import sample

    with tempfile.TemporaryDirectory() as tmp:
        index = make_checkpoint(tmp, args.matrices, args.size)
        design = os.path.join(tmp, "X.npy")
        np.save(design, np.random.default_rng(1).standard_normal((args.rows, args.cols)))
        small = os.path.join(tmp, "small.npy")
        np.save(small, np.random.default_rng(2).standard_normal((100_000, args.cols)))
        blocks = -(-args.rows // 4096)

        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):  # what one worker does, without Dask
            t_inspect, ref = timed(lambda: cond.inspect(index, workers=1))
        t_sample, ref_s = timed(lambda: sample(design, size=2000, seed=3))
        t_sketch, ref_k = timed(lambda: sample(design, size=2000, seed=3, scores="sketch"))
        print(
            f"in process: inspect {t_inspect:.2f} s ({args.matrices} matrices {args.size}^2, one thread), "
            f"sample {t_sample:.2f} s ({args.rows} x {args.cols}, {blocks} blocks), sketched {t_sketch:.2f} s"
        )
        results = {}
        for workers in (1, 2):
            t0 = time.perf_counter()
            cluster = distributed.LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
            startup = time.perf_counter() - t0
            address = cluster.scheduler_address
            t0 = time.perf_counter()  # first tasks import cond, SciPy and load numba's cache on each worker
            for scores in ("exact", "sketch"):
                sample(small, size=100, seed=3, scores=scores, scheduler=address)
            warmup = time.perf_counter() - t0
            t_i, rep = timed(lambda address=address: cond.inspect(index, scheduler=address))
            t_s, rep_s = timed(lambda address=address: sample(design, size=2000, seed=3, scheduler=address))
            t_k, rep_k = timed(
                lambda address=address: sample(design, size=2000, seed=3, scores="sketch", scheduler=address)
            )
            cluster.close()
            assert [m.diagnostics.kappa for m in rep.matrices] == [m.diagnostics.kappa for m in ref.matrices]
            assert np.array_equal(rep_s.indices, ref_s.indices) and np.array_equal(rep_s.scores, ref_s.scores)
            assert np.array_equal(rep_k.indices, ref_k.indices) and np.array_equal(rep_k.scores, ref_k.scores)
            results[workers] = (t_i, t_s, t_k)
            print(
                f"{workers} worker(s): cluster start {startup:.1f} s, warm-up {warmup:.1f} s; inspect {t_i:.2f} s, "
                f"sample {t_s:.2f} s, sketched {t_k:.2f} s; results equal the in-process ones"
            )
        (i1, s1, k1), (i2, s2, k2) = results[1], results[2]
        print(f"speed-up 1 -> 2 workers: inspect x{i1 / i2:.2f}, sample x{s1 / s2:.2f}, sketched x{k1 / k2:.2f}")
        print(
            f"overhead per task (1 worker vs one thread in process): inspect "
            f"{(i1 - t_inspect) / args.matrices * 1e3:.1f} ms over {args.matrices} tasks"
        )
        print(
            f"(sample's 1-worker time vs in process: {s1:.2f} s vs {t_sample:.2f} s; in process, blocks run "
            f"side by side on every core, a worker has one thread)"
        )


if __name__ == "__main__":
    main()
