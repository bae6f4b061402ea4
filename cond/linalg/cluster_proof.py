"""Proofs that a pool of blocks holds no cluster worth storing, so the greedy search can be skipped.

``cond compress --max-error`` clusters only where a shared basis saves parameters.
Lower bounds on the rank any shared basis needs (each member's own Eckart-Young
rank; for two members, the rank of their normalised concatenation) turn that into
a cheap test: when even the most favourable cluster under those bounds costs as
much as its members alone, no cluster saves, and the search (tens of seconds on a
transformer whose weights are close to full rank) is not run.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from cond.linalg.truncated import rank_for_error

PAIR_WORK = 2e10  # most flops spent on the pair ranks of one pool (m^3 per pair)


def pair_ranks(blocks, max_error):
    """Per pair of blocks, the least rank any shared basis needs to keep both within the bound.

    A basis U that keeps each normalised member within ``max_error`` keeps their sum of
    squared errors within K max_error^2, so its rank is at least the Eckart-Young rank
    of the normalised concatenation at relative error ``max_error``; a cluster holding
    both blocks needs at least that many vectors. The diagonal is each block's own rank.
    None when the pool is too large for it (``PAIR_WORK``).

    Parameters
    ----------
    blocks : list of ndarray of shape (m, n_i)
    max_error : float

    Returns
    -------
    ndarray of shape (K, K), int, or None
    """
    k = len(blocks)
    m = blocks[0].shape[0] if blocks else 0
    if k * (k - 1) / 2 * float(m) ** 3 > PAIR_WORK:
        return None
    grams = []
    for b in blocks:
        norm2 = float(np.sum(b * b))
        grams.append((b @ b.T) / norm2 if norm2 > 0 else np.zeros((m, m)))
    out = np.zeros((k, k), dtype=int)
    for i in range(k):
        for j in range(i, k):
            lam = scipy.linalg.eigvalsh(grams[i] + grams[j] if i != j else grams[i], check_finite=False)
            s = np.sqrt(np.maximum(lam[::-1], 0.0))
            out[i, j] = out[j, i] = rank_for_error(s, max_error) if s.any() else 0
    return out


def no_cluster_can_save(m, ranks, widths, own_params, max_ranks=None, pairs=None) -> bool:
    """A proof that no cluster of two or more blocks costs fewer parameters than its members alone.

    A cluster S stored at rank r costs r (m + sum_{i in S} n_i), and r is at least
    each member's own Eckart-Young rank e_i at the bound (no basis of fewer vectors
    meets a member's bound: scope ``matrix`` only) and, with ``pairs``, at least the
    pair rank p_ij of any two members (:func:`pair_ranks`). For each block j and each
    candidate rank R >= e_j, the most favourable S holds j and every i with
    max(e_i, p_ij) <= R (and a rank cap >= R) whose term own_i - R n_i is positive;
    S saves only if R m < sum_{i in S} (own_i - R n_i). When that fails for every j
    and R, no cluster saves (any saving S at rank r passes the test at j in S and
    R = max_{i in S} p_ij <= r).

    Parameters
    ----------
    m : int
        The blocks' common row count.
    ranks : sequence of int
        e_i: each block's Eckart-Young rank at the bound.
    widths, own_params : sequence of int
        n_i and what each block costs on its own.
    max_ranks : sequence of int, optional
        The largest rank each block may be stored at.
    pairs : ndarray of shape (K, K), optional
        Pair ranks; without them p_ij = max(e_i, e_j).

    Returns
    -------
    bool
        True when provably nothing clusters.
    """
    k = len(ranks)
    caps = list(max_ranks) if max_ranks is not None else [m] * k
    for j in range(k):
        need = [max(ranks[i], ranks[j], pairs[i][j] if pairs is not None else 0) for i in range(k)]
        for big in sorted({need[i] for i in range(k) if i != j}):
            if caps[j] < big:
                break
            gain = own_params[j] - big * widths[j]
            partners = 0
            for i in range(k):
                term = own_params[i] - big * widths[i]
                if i != j and need[i] <= big and caps[i] >= big and term > 0:
                    gain += term
                    partners += 1
            if partners and big * m < gain:
                return False
    return True
