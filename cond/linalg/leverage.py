"""Row importance scores of a tall matrix A (n x d), computed in streaming passes.

Every function takes ``blocks``, a callable returning a fresh iterator of
``(start, X)`` row blocks (one call per pass), so that memory holds one block
and one score per row.

- Leverage scores tau_i = ||a_i^T R^{-1}||^2, in the numerical-rank basis: with
  R = U S V^T and k = #{s_j > rcond * s_1}, tau_i = ||a_i^T V_k S_k^{-1}||^2;
  sum tau = k. R is the Cholesky factor of the Gram matrix A^T A summed from
  the blocks (``syrk``, GIL-free, on every core) where an a-posteriori bound
  certifies every score to ``SCORE_RTOL`` relative (:func:`cond.linalg.gram.gram_r`),
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

DEFAULT_RCOND = None  # max(n, d) * eps, as numpy.linalg.matrix_rank
BLOCK_ROWS = 4096  # the row blocks of every streaming pass: TSQR leaves, sketch leaves, Dask tasks


@dataclass(frozen=True)
class Scores:
    """Per-row scores, the numerical rank used, and how they were computed."""

    values: np.ndarray
    rank: int
    detail: dict


def leaf_r(x, d):
    """The R factor of one block: every R in cond comes from here.

    Parameters
    ----------
    x : ndarray of shape (b, d)
    d : int

    Returns
    -------
    ndarray of shape (d, d)
        Upper triangular with R^T R = X^T X, padded with zero rows when b < d.
    """
    r = np.linalg.qr(x, mode="r")[:d]  # NumPy's LAPACK releases the GIL (SciPy's f2py holds it)
    if r.shape[0] < d:
        r = np.vstack([r, np.zeros((d - r.shape[0], d))])
    return np.triu(r)


class PairTree:
    """A reduction by a binary tree over leaves that arrive in order (a binary counter).

    A node merges two equal-level neighbours, ``merge(left, right)``, as soon as both
    exist, so the stack holds O(log leaves) values. The tree depends only on the
    number of leaves: any run that feeds the same leaves in the same order, or
    complete subtrees of 2**k aligned leaves computed elsewhere (:meth:`push`), gets
    the same floats. That is what lets a Dask cluster reproduce the in-process result.
    """

    def __init__(self, merge):
        self.merge = merge
        self.stack = []

    def push(self, level, value):
        while self.stack and self.stack[-1][0] == level:
            _, left = self.stack.pop()
            value = self.merge(left, value)
            level += 1
        self.stack.append((level, value))

    def result(self):
        """The merge of every leaf (None when there were none)."""
        out = None
        for _, node in reversed(self.stack):  # fold from the latest subtree down
            out = node if out is None else self.merge(node, out)
        return out


class RTree(PairTree):
    """R of a tall matrix by a binary tree of QRs over its blocks (TSQR), in streaming order:
    leaves are the blocks' R factors, R = qr([R_left; R_right]).R at each node."""

    def __init__(self, d):
        super().__init__(lambda left, right: leaf_r(np.vstack([left, right]), d))
        self.d = d

    def add_block(self, x):
        self.push(0, leaf_r(x, self.d))

    def result(self):
        r = super().result()
        return np.zeros((self.d, self.d)) if r is None else r


def tree_r(blocks, d, threads=None):
    """R of A by :class:`RTree` over the blocks (leaf QRs on ``threads`` threads with BLAS on
    one, :mod:`cond.threads`; the tree in order, so the floats do not depend on ``threads``).

    Parameters
    ----------
    blocks : callable
        Returns a fresh iterator of ``(start, X)`` row blocks, X of shape (b, d).
    d : int
        Columns of A.
    threads : int, optional
        Leaf QRs computed side by side (default: the CPUs, at most 8).

    Returns
    -------
    ndarray of shape (d, d)
        Upper triangular with R^T R = A^T A (zeros for no rows).
    """
    from cond.threads import one_thread_blas, threaded_map

    tree = RTree(d)
    with one_thread_blas():
        for r in threaded_map(lambda item: leaf_r(item[1], d), blocks(), threads):
            tree.push(0, r)
        return tree.result()


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
    from cond.linalg.gram import gram_r

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
            out[start:start + len(values)] = values
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
            change = max(change, float(np.max(np.abs(new - w[sl]) / np.maximum(w[sl], 1e-300),
                                               initial=0.0)))
            w[sl] = new
            nxt.add_block(x * (new ** expo)[:, None])
        r = nxt.result()
        iterations += 1
        if change <= tol:
            break
    return Scores(w, k, {"passes": iterations + 1, "iterations": iterations,
                         "converged": change <= tol, "last_change": change})


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
