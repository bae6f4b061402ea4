"""Peak memory of ``cond inspect`` on a synthetic sharded bf16 checkpoint of at least 4 GB.

    python benchmarks/inspect_scale.py [--dir bench-data/scale] [--gb 4.2] [--keep]

Writes (once; reused if present) a sharded checkpoint with Hugging Face shard
names and model.safetensors.index.json: bf16 matrices of 8192 x 512 and
4096 x 1024 plus 1-D norms, about 1 GB per shard. Then runs
``/usr/bin/time -v cond inspect DIR/model.safetensors.index.json -f json -q``
and prints the peak resident memory ("Maximum resident set size") against the
1.5 GB target, the wall time and the checkpoint's size. Nothing here is committed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

import ml_dtypes
import numpy as np
from peak_rss import run_with_peak
from safetensors.numpy import save_file

SHAPES = [(8192, 512)] * 7 + [(4096, 1024)]  # one block: 8 matrices, 64 MB in bf16


def make_checkpoint(folder, gigabytes, seed=0):
    index_path = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index_path):
        with open(index_path) as f:
            if json.load(f)["metadata"]["total_size"] >= gigabytes * 1e9:
                return index_path
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    rng = np.random.default_rng(seed)
    block_bytes = sum(m * n * 2 for m, n in SHAPES)
    blocks = int(np.ceil(gigabytes * 1e9 / block_bytes))
    per_shard = max(1, int(1e9 // block_bytes))
    shards = int(np.ceil(blocks / per_shard))
    weight_map, total = {}, 0
    for s in range(shards):
        name = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        tensors = {}
        for b in range(s * per_shard, min(blocks, (s + 1) * per_shard)):
            for j, (m, n) in enumerate(SHAPES):
                w = rng.standard_normal((m, n), dtype=np.float32) * np.float32(1 / np.sqrt(n))
                tensors[f"layers.{b}.proj{j}.weight"] = w.astype(ml_dtypes.bfloat16)
            tensors[f"layers.{b}.norm.weight"] = np.ones(512, dtype=ml_dtypes.bfloat16)
        save_file(tensors, os.path.join(folder, name))
        total += sum(t.nbytes for t in tensors.values())
        weight_map.update({k: name for k in tensors})
        print(f"  wrote {name} ({sum(t.nbytes for t in tensors.values()) / 1e9:.2f} GB)", file=sys.stderr)
    with open(index_path, "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f)
    return index_path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=os.path.join("bench-data", "scale"))
    parser.add_argument("--gb", type=float, default=4.2)
    parser.add_argument("--keep", action="store_true", help="keep the checkpoint afterwards")
    args = parser.parse_args()
    t0 = time.perf_counter()
    index = make_checkpoint(args.dir, args.gb)
    size = sum(os.path.getsize(os.path.join(args.dir, f)) for f in os.listdir(args.dir))
    print(f"checkpoint: {size / 1e9:.2f} GB in {args.dir} (made in {time.perf_counter() - t0:.0f} s)")
    peak, wall, stdout = run_with_peak([sys.executable, "-m", "cond.cli", "inspect", index, "-f", "json", "-q"])
    peak_kb = peak // 1024
    doc = json.loads(stdout)
    print(
        f"cond inspect: {doc['summary']['matrices']} matrices, {doc['summary']['skipped']} skipped, {wall:.1f} s wall"
    )
    print(
        f"peak resident memory (/usr/bin/time -v): {peak_kb / 2**20:.3f} GiB "
        f"({peak_kb / 1e6:.3f} GB); target < 1.5 GB: {'PASS' if peak_kb * 1e3 < 1.5e9 else 'FAIL'}"
    )
    if not args.keep:
        shutil.rmtree(args.dir)


if __name__ == "__main__":
    main()
