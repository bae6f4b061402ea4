"""Peak memory of ``cond compress`` on a synthetic checkpoint of at least 2 GB.

    python benchmarks/compress_memory.py [--dir bench-data/compress] [--gb 2.1] [--pool 256MiB ...] [--keep]

Writes (once; reused if present) an fp32 checkpoint of 2048 x 128 matrices, each
drawn from one of 8 planted 8-dimensional subspaces plus noise (so they both
truncate and cluster), then runs ``/usr/bin/time -v cond compress ... --max-error
0.05`` with each ``--max-pool-size`` given (default 256MiB) and prints the peak
resident memory against the checkpoint's size: memory follows the clustering
pool, not the checkpoint. Nothing here is committed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

import numpy as np
from peak_rss import run_with_peak
from safetensors.numpy import save_file

M, N, SUBSPACES, DIM = 2048, 128, 8, 8


def make_checkpoint(path, gigabytes, seed=0):
    if os.path.exists(path) and os.path.getsize(path) >= gigabytes * 1e9:
        return
    rng = np.random.default_rng(seed)
    bases = [np.linalg.qr(rng.standard_normal((M, DIM)))[0].astype(np.float32) for _ in range(SUBSPACES)]
    count = int(np.ceil(gigabytes * 1e9 / (M * N * 4)))
    tensors = {}
    for i in range(count):
        w = bases[i % SUBSPACES] @ rng.standard_normal((DIM, N), dtype=np.float32)
        w += np.float32(0.002) * rng.standard_normal((M, N), dtype=np.float32)
        tensors[f"layers.{i}.weight"] = w
        tensors[f"layers.{i}.norm"] = np.ones(N, np.float32)
    save_file(tensors, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=os.path.join("bench-data", "compress"))
    parser.add_argument("--gb", type=float, default=2.1)
    parser.add_argument("--pool", nargs="+", default=["256MiB"])
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    src = os.path.join(args.dir, "model.safetensors")
    make_checkpoint(src, args.gb)
    size = os.path.getsize(src)
    print(f"checkpoint: {size / 1e9:.2f} GB ({src})")
    for pool in args.pool:
        out = os.path.join(args.dir, f"out-{pool}.safetensors")
        peak, wall, stdout = run_with_peak(
            [
                sys.executable,
                "-m",
                "cond.cli",
                "compress",
                src,
                "-o",
                out,
                "--force",
                "--max-error",
                "0.05",
                "--max-pool-size",
                pool,
                "-f",
                "json",
                "-q",
            ]
        )
        doc = json.loads(stdout)
        t = doc["totals"]
        print(
            f"--max-pool-size {pool}: peak RSS {peak / 1e9:.3f} GB for a {size / 1e9:.2f} GB checkpoint; "
            f"{t['clusters']} clusters, x{t['compression_ratio']:.1f} smaller, worst error "
            f"{t['worst_error']:.4f}, {wall:.0f} s"
        )
    if not args.keep:
        shutil.rmtree(args.dir)


if __name__ == "__main__":
    main()
