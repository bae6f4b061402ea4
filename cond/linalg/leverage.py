"""Row importance scores of a tall matrix A (n x d), computed in streaming passes.

Every function takes ``blocks``, a callable returning a fresh iterator of
``(start, X)`` row blocks (one call per pass), so that memory holds one block
and one score per row.

- Leverage scores tau_i = ||a_i^T R^{-1}||^2, in the numerical-rank basis: with
  R = U S V^T and k = #{s_j > rcond * s_1}, tau_i = ||a_i^T V_k S_k^{-1}||^2;
  sum tau = k. R is the Cholesky factor of the Gram matrix A^T A summed from
  the blocks (``syrk``, GIL-free, on every core) where an a-posteriori bound
  certifies every score to ``SCORE_RTOL`` relative (:func:`cond.linalg.r_factor.gram_r`),
  else from a streaming (tall-skinny) QR, :class:`RTree`, which is backward
  stable at any condition number.
- l_p Lewis weights (Cohen & Peng 2015), 0 < p < 4: the fixed point of
  w_i = (a_i^T (A^T W^{1-2/p} A)^{-1} a_i)^{p/2}; the iteration contracts with
  factor |1 - p/2|; sum w = rank.
- l_p sensitivity upper bounds (Woodruff & Yasuda 2023): p <= 2:
  min(w_i, tau_i^{p/2}); p > 2: d^{p/2 - 1} w_i.
- Sketched leverage scores: :mod:`cond.linalg.sketch`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cond.linalg.r_factor import RTree, gram_r, leaf_r, tree_r
from cond.linalg.tree import BLOCK_ROWS, PairTree

__all__ = [
    "BLOCK_ROWS",
    "DEFAULT_RCOND",
    "PairTree",
    "RTree",
    "Scores",
    "block_leverage",
    "leaf_r",
    "lewis_weights",
    "leverage_scores",
    "rank_basis",
    "scores_from_r",
    "sensitivity_bounds",
    "tree_r",
]

DEFAULT_RCOND = None  # max(n, d) * eps, as numpy.linalg.matrix_rank


@dataclass(frozen=True)
class Scores:
    """Per-row scores, the numerical rank used, and how they were computed."""

    values: np.ndarray
    rank: int
    detail: dict


def block_leverage(x, t):
    """||x_i^T T||^2 for the rows of one block: the score pass, one block at a time.

    Parameters
    ----------
    x : ndarray of shape (b, d)
    t : ndarray of shape (d, k)
        The rank basis of :func:`rank_basis`.

    Returns
    -------
    ndarray of shape (b,)
    """
    return np.sum((x @ t) ** 2, axis=1)


def rank_basis(r, n, rcond=DEFAULT_RCOND):
    """T = V_k S_k^{-1} from R = U S V^T, k = #{s_j > rcond * s_1}: A T has orthonormal columns.

    Parameters
    ----------
    r : ndarray of shape (d, d)
        An R factor of A (:func:`tree_r`).
    n : int
        Rows of A (for the default cut-off max(n, d) eps).
    rcond : float, optional
        Relative cut-off of the numerical rank.

    Returns
    -------
    t : ndarray of shape (d, k)
    k : int
        The numerical rank.

    Raises
    ------
    ValueError
        When no singular value is above the cut-off (a numerically zero matrix).
    """
    _, s, vt = np.linalg.svd(r)
    d = r.shape[1]
    tol = (max(n, d) * np.finfo(np.float64).eps if rcond is None else rcond) * (s[0] if len(s) else 0)
    k = int(np.count_nonzero(s > tol))
    if k == 0:
        raise ValueError("the matrix is numerically zero: no row has any leverage")
    return vt[:k].T / s[:k], k


def leverage_scores(blocks, n, d, rcond=DEFAULT_RCOND, threads=None) -> Scores:
    """Exact leverage scores: one pass for R (:class:`RTree`), one for the scores.

    Every step runs with BLAS on one thread (blocks side by side on ``threads``
    threads), so the floats are those a Dask worker computes for the same blocks.

    Parameters
    ----------
    blocks : callable
        Returns a fresh iterator of ``(start, X)`` row blocks, X of shape (b, d).
    n, d : int
        Rows and columns of A.
    rcond : float, optional
        Relative cut-off of the numerical rank (default max(n, d) eps).
    threads : int, optional
        Blocks processed side by side.

    Returns
    -------
    Scores
        ``values`` of shape (n,), summing to the rank; ``detail["r"]`` the R factor.
    """
    r, rho = gram_r(blocks, d, threads)
    if r is not None:
        detail = {"passes": 2, "route": "gram", "score_rtol": rho}
    else:  # not certified: TSQR, one more pass
        r, detail = tree_r(blocks, d, threads), {"passes": 3, "route": "tsqr"}
    return scores_from_r(blocks, r, n, rcond, threads, detail)


def scores_from_r(blocks, r, n, rcond=DEFAULT_RCOND, threads=None, detail=None) -> Scores:
    """The score pass: tau_i from R's rank basis, blocks side by side (BLAS on one thread)."""
    from cond.threads import one_thread_blas, threaded_map

    out = np.empty(n)
    with one_thread_blas():
        t, k = rank_basis(r, n, rcond)
        for start, values in threaded_map(lambda item: (item[0], block_leverage(item[1], t)), blocks(), threads):
            out[start : start + len(values)] = values
    return Scores(out, k, {**(detail or {}), "r": r})


def lewis_weights(blocks, n, d, p, rcond=DEFAULT_RCOND, tol=1e-10, max_iter=200) -> Scores:
    """l_p Lewis weights by the Cohen-Peng fixed-point iteration, one pass per iteration.

    Pass k computes new weights with the basis of B_{k-1} = W_{k-1}^{1/2-1/p} A and, in
    the same pass, the R factor of B_k; it stops when no weight moves by more than ``tol``
    relative, or after ``max_iter`` passes (``detail["converged"]`` says which).

    Parameters
    ----------
    blocks : callable
        Returns a fresh iterator of ``(start, X)`` row blocks, X of shape (b, d).
    n, d : int
        Rows and columns of A.
    p : float
        In (0, 4): the iteration contracts with factor |1 - p/2|.
    rcond : float, optional
    tol : float
    max_iter : int

    Returns
    -------
    Scores
        ``values`` of shape (n,), summing to the rank.
    """
    if not 0 < p < 4:
        raise ValueError(f"`p` must be in (0, 4) for Lewis weights; got {p}")
    w = np.ones(n)
    r = tree_r(blocks, d)
    expo = 0.5 - 1.0 / p
    change, iterations, k = np.inf, 0, 0
    while iterations < max_iter:
        t, k = rank_basis(r, n, rcond)
        nxt = RTree(d)
        change = 0.0
        for start, x in blocks():
            sl = slice(start, start + len(x))
            scaled = x * (w[sl] ** expo)[:, None]
            tau = np.sum((scaled @ t) ** 2, axis=1)
            new = (tau * w[sl] ** (-2 * expo)) ** (p / 2)
            change = max(change, float(np.max(np.abs(new - w[sl]) / np.maximum(w[sl], 1e-300), initial=0.0)))
            w[sl] = new
            nxt.add_block(x * (new**expo)[:, None])
        r = nxt.result()
        iterations += 1
        if change <= tol:
            break
    return Scores(
        w, k, {"passes": iterations + 1, "iterations": iterations, "converged": change <= tol, "last_change": change}
    )


def sensitivity_bounds(lewis, leverage, p, d):
    """Upper bounds on the l_p sensitivities sup_x |a_i^T x|^p / ||A x||_p^p
    (Woodruff & Yasuda 2023): min(w_i, tau_i^{p/2}) for p <= 2, d^{p/2-1} w_i above.

    Parameters
    ----------
    lewis : ndarray of shape (n,)
        l_p Lewis weights.
    leverage : ndarray of shape (n,)
        Leverage scores.
    p : float
    d : int
        The rank.

    Returns
    -------
    ndarray of shape (n,)
    """
    if p <= 2:
        return np.minimum(lewis, leverage ** (p / 2))
    return d ** (p / 2 - 1) * lewis
