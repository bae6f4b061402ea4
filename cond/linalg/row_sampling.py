"""Turning scores into a weighted row sample, and checking the sample (p = 2).

Bernoulli sampling keeps row i independently with q_i = min(1, c s_i), c chosen
so that sum q_i equals the requested size exactly; its loss weight is 1/q_i
and its row multiplier q_i^{-1/p}. Sampling with replacement draws ``size``
rows with probabilities pi_i = s_i / sum s; a row drawn c_i times gets weight
c_i / (size pi_i). Every random number is keyed by (seed, row index) or
(seed, draw index), so the sample does not depend on chunking or threads.
"""

from __future__ import annotations

import numpy as np


def bernoulli_probabilities(scores, size):
    """q = min(1, c * scores) with sum q = size (exactly, up to rounding), and c.

    Parameters
    ----------
    scores : ndarray of shape (n,)
        Finite and non-negative.
    size : int
        The expected sample size.

    Returns
    -------
    q : ndarray of shape (n,)
        Keep probabilities in [0, 1].
    c : float
        The scale (inf when every row with a positive score is kept).
    """
    s = np.asarray(scores, dtype=np.float64)
    if np.any(s < 0) or not np.all(np.isfinite(s)):
        raise ValueError("`scores` must be finite and non-negative")
    positive = int(np.count_nonzero(s > 0))
    if size >= positive:
        return (s > 0).astype(np.float64), np.inf
    order = np.sort(s)[::-1]
    suffix = np.cumsum(order[::-1])[::-1]  # suffix[t] = sum of order[t:]
    t = np.arange(len(order))
    with np.errstate(divide="ignore", invalid="ignore"):
        c = (size - t) / suffix
        ok = (c * order <= 1.0) & (suffix > 0) & (size - t > 0)
    first = int(np.argmax(ok))
    c = float(c[first])
    return np.minimum(1.0, c * s), c


def sample_bernoulli(q, seed):
    """Indices kept by independent Bernoulli(q_i) draws keyed by (seed, i): the same rows
    whatever the chunking or thread count.

    Parameters
    ----------
    q : ndarray of shape (n,)
    seed : int

    Returns
    -------
    ndarray of shape (k,), int64
        Kept row indices, ascending.
    """
    from cond.kernels.keyed import bernoulli_keep

    return bernoulli_keep(np.ascontiguousarray(q, dtype=np.float64), int(seed), 0)


def sample_with_replacement(scores, size, seed):
    """(indices, counts, pi): rows drawn ``size`` times with pi_i = s_i / sum s, by inverse CDF
    of draws keyed by (seed, draw index).

    Parameters
    ----------
    scores : ndarray of shape (n,)
    size : int
        Number of draws.
    seed : int

    Returns
    -------
    indices : ndarray of shape (k,)
        Distinct rows drawn, ascending.
    counts : ndarray of shape (k,)
        How often each was drawn (summing to ``size``).
    pi : ndarray of shape (k,)
        Their draw probabilities.
    """
    from cond.kernels.keyed import keyed_uniforms
    from cond.kernels.sketching import counts_from_sorted_uniforms

    s = np.asarray(scores, dtype=np.float64)
    total = float(np.sum(s))
    if not total > 0:
        raise ValueError("`scores` must have a positive sum")
    pi = s / total
    draws = np.sort(keyed_uniforms(int(seed) ^ 0x5EED, 0, int(size))) * total
    counts, placed, _ = counts_from_sorted_uniforms(s, draws, 0, 0.0)
    if placed < size:  # draws that rounding put past the last row's edge
        counts[int(np.flatnonzero(s > 0)[-1])] += size - placed
    idx = np.flatnonzero(counts)
    return idx, counts[idx], pi[idx]


def subspace_distortion(sampled_rows, loss_weights, basis):
    """eps_hat = max_j |sigma_j(S A T) - 1| where S scales row i by sqrt(weight_i) and T maps A
    to an orthonormal basis (A T has orthonormal columns). 0 means a perfect embedding.

    Parameters
    ----------
    sampled_rows : ndarray of shape (k, d)
        The kept rows of A, unscaled.
    loss_weights : ndarray of shape (k,)
    basis : ndarray of shape (d, r)
        T from :func:`cond.linalg.leverage.rank_basis`.

    Returns
    -------
    float
    """
    sa = sampled_rows * np.sqrt(loss_weights)[:, None]
    if len(sa) == 0:
        return 1.0
    s = np.linalg.svd(sa @ basis, compute_uv=False)
    s = np.concatenate([s, np.zeros(basis.shape[1] - len(s))])
    return float(np.max(np.abs(s - 1.0)))
