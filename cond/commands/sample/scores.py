"""Row scores for each sampling method, from the streaming passes of :mod:`cond.linalg`."""

from __future__ import annotations

import numpy as np

from cond.linalg import leverage as lev
from cond.linalg import sketch


def method_scores(method, p, scores, blocks, n, d, seed, rcond, precomputed=None):
    """(scores, rank, detail, exact R or None). ``precomputed`` (a Scores) replaces the
    in-process leverage pass: exact scores from a Dask cluster, or sketched ones from the GPU."""
    leverage = (lambda: precomputed) if precomputed is not None else (lambda: lev.leverage_scores(blocks, n, d, rcond))
    if method == "uniform":
        return np.ones(n), min(n, d), {}, None
    if method in ("leverage", "root-leverage"):
        sc = (
            leverage()
            if scores == "exact" or precomputed is not None
            else sketch.sketched_leverage(blocks, n, d, seed, rcond, srht=scores == "sketch-srht")
        )
        tau = sc.values
        values = tau if method == "leverage" else tau ** (p / 2)
        r = sc.detail.get("r")
        return values, sc.rank, {k: v for k, v in sc.detail.items() if k != "r"}, r
    if p == 2:
        lewis = leverage()  # l2 Lewis weights are the leverage scores
        w, rank, r = lewis.values, lewis.rank, lewis.detail["r"]
        detail = {"iterations": 0, "converged": True}
    else:
        lw = lev.lewis_weights(blocks, n, d, p, rcond)
        w, rank, r = lw.values, lw.rank, None
        detail = {k: v for k, v in lw.detail.items()}
        if not lw.detail["converged"]:
            import warnings

            warnings.warn(
                f"Lewis weights did not converge in {lw.detail['iterations']} passes "
                f"(last relative change {lw.detail['last_change']:.2e})",
                stacklevel=3,
            )
    if method == "lewis":
        return w, rank, detail, r
    tau = w if p == 2 else lev.leverage_scores(blocks, n, d, rcond).values
    sens = lev.sensitivity_bounds(w, tau, p, rank)
    return (sens + tau if method == "augmented" else sens), rank, detail, r
