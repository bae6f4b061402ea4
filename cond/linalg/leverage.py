"""Row importance scores of a tall matrix A (n x d), computed in streaming passes.

Every function takes ``blocks``, a callable returning a fresh iterator of
``(start, X)`` row blocks (one call per pass), so that memory holds one block
and one score per row.

- Leverage scores tau_i = ||a_i^T R^{-1}||^2 with R from a streaming
  (tall-skinny) QR, in the numerical-rank basis: with R = U S V^T and
  k = #{s_j > rcond * s_1}, tau_i = ||a_i^T V_k S_k^{-1}||^2; sum tau = k.
- l_p Lewis weights (Cohen & Peng 2015), 0 < p < 4: the fixed point of
  w_i = (a_i^T (A^T W^{1-2/p} A)^{-1} a_i)^{p/2}; the iteration contracts with
  factor |1 - p/2|; sum w = rank.
- l_p sensitivity upper bounds (Woodruff & Yasuda 2023): p <= 2:
  min(w_i, tau_i^{p/2}); p > 2: d^{p/2 - 1} w_i.
- Sketched leverage scores (Drineas, Magdon-Ismail, Mahoney & Woodruff, JMLR
  2012): R from QR of a sparse embedding S A, then a Johnson-Lindenstrauss
  projection G: tau_i ~ ||a_i^T R^{-1} G||^2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

DEFAULT_RCOND = None  # max(n, d) * eps, as numpy.linalg.matrix_rank


@dataclass(frozen=True)
class Scores:
    """Per-row scores, the numerical rank used, and how they were computed."""

    values: np.ndarray
    rank: int
    detail: dict


def streaming_r(blocks, d):
    """Upper-triangular R (d x d) with R^T R = A^T A, from QR of [R; block] block after block."""
    r = np.zeros((0, d))
    for _, x in blocks():
        r = scipy.linalg.qr(np.vstack([r, x]), mode="r", check_finite=False)[0][:d]
    if r.shape[0] < d:  # fewer rows than columns
        r = np.vstack([r, np.zeros((d - r.shape[0], d))])
    return np.triu(r)


def leaf_r(x, d):
    """R (d x d, upper triangular) of one block, padded with zero rows when it has fewer than d."""
    r = scipy.linalg.qr(x, mode="r", check_finite=False)[0][:d]
    if r.shape[0] < d:
        r = np.vstack([r, np.zeros((d - r.shape[0], d))])
    return np.triu(r)


class RTree:
    """R of a tall matrix by a binary tree of QRs over its blocks (TSQR), in streaming order.

    Leaves are the blocks' R factors; a node merges two equal-level neighbours,
    R = qr([R_left; R_right]).R, as soon as both exist (a binary counter), so the
    stack holds O(log n) factors. The tree depends only on the number of blocks:
    any run that feeds the same leaves in the same order, or complete subtrees of
    2**k aligned leaves computed elsewhere (:meth:`push`), gets the same floats.
    """

    def __init__(self, d):
        self.d = d
        self.stack = []

    def add_block(self, x):
        self.push(0, leaf_r(x, self.d))

    def push(self, level, r):
        while self.stack and self.stack[-1][0] == level:
            _, left = self.stack.pop()
            r = leaf_r(np.vstack([left, r]), self.d)
            level += 1
        self.stack.append((level, r))

    def result(self):
        r = None
        for _, node in reversed(self.stack):  # fold from the latest subtree down
            r = node if r is None else leaf_r(np.vstack([node, r]), self.d)
        return np.zeros((self.d, self.d)) if r is None else r


def tree_r(blocks, d):
    """R (d x d) with R^T R = A^T A by :class:`RTree` over the blocks."""
    tree = RTree(d)
    for _, x in blocks():
        tree.add_block(x)
    return tree.result()


def block_leverage(x, t):
    """||x_i^T T||^2 for the rows of one block: the score pass, one block at a time."""
    return np.sum((x @ t) ** 2, axis=1)


def rank_basis(r, n, rcond=DEFAULT_RCOND):
    """T = V_k S_k^{-1} (d x k) from R = U S V^T, k = #{s_j > rcond * s_1}; and k."""
    _, s, vt = scipy.linalg.svd(r, check_finite=False)
    d = r.shape[1]
    tol = (max(n, d) * np.finfo(np.float64).eps if rcond is None else rcond) * (s[0] if len(s) else 0)
    k = int(np.count_nonzero(s > tol))
    if k == 0:
        raise ValueError("the matrix is numerically zero: no row has any leverage")
    return vt[:k].T / s[:k], k


def leverage_scores(blocks, n, d, rcond=DEFAULT_RCOND) -> Scores:
    """Exact leverage scores: one pass for R (:class:`RTree`), one for the scores."""
    r = tree_r(blocks, d)
    t, k = rank_basis(r, n, rcond)
    out = np.empty(n)
    for start, x in blocks():
        out[start:start + len(x)] = block_leverage(x, t)
    return Scores(out, k, {"passes": 2, "r": r})


def lewis_weights(blocks, n, d, p, rcond=DEFAULT_RCOND, tol=1e-10, max_iter=200) -> Scores:
    """l_p Lewis weights by the Cohen-Peng fixed-point iteration, one pass per iteration.

    Pass k computes new weights with the basis of B_{k-1} = W_{k-1}^{1/2-1/p} A and, in
    the same pass, the R factor of B_k; it stops when no weight moves by more than ``tol``
    relative, or after ``max_iter`` passes (``detail["converged"]`` says which).
    """
    if not 0 < p < 4:
        raise ValueError(f"`p` must be in (0, 4) for Lewis weights; got {p}")
    w = np.ones(n)
    r = streaming_r(blocks, d)
    expo = 0.5 - 1.0 / p
    change, iterations, k = np.inf, 0, 0
    while iterations < max_iter:
        t, k = rank_basis(r, n, rcond)
        nxt = np.zeros((0, d))
        change = 0.0
        for start, x in blocks():
            sl = slice(start, start + len(x))
            scaled = x * (w[sl] ** expo)[:, None]
            tau = np.sum((scaled @ t) ** 2, axis=1)
            new = (tau * w[sl] ** (-2 * expo)) ** (p / 2)
            change = max(change, float(np.max(np.abs(new - w[sl]) / np.maximum(w[sl], 1e-300),
                                               initial=0.0)))
            w[sl] = new
            nxt = scipy.linalg.qr(np.vstack([nxt, x * (new ** expo)[:, None]]), mode="r",
                                  check_finite=False)[0][:d]
        if nxt.shape[0] < d:
            nxt = np.vstack([nxt, np.zeros((d - nxt.shape[0], d))])
        r = np.triu(nxt)
        iterations += 1
        if change <= tol:
            break
    return Scores(w, k, {"passes": iterations + 1, "iterations": iterations,
                         "converged": change <= tol, "last_change": change})


def sensitivity_bounds(lewis, leverage, p, d):
    """Upper bounds on the l_p sensitivities sup_x |a_i^T x|^p / ||A x||_p^p."""
    if p <= 2:
        return np.minimum(lewis, leverage ** (p / 2))
    return d ** (p / 2 - 1) * lewis


def sketch_sizes(n, d):
    """(embedding rows, nonzeros per column, JL dimension) used by :func:`sketched_leverage`.

    Sparse embedding (OSNAP, Nelson & Nguyen 2013) with s = 4 nonzeros per column
    and 64 d rows: an (1 +- eps) subspace embedding with eps about sqrt(d / rows) =
    1/8 in practice (the theory asks for O(d^{1+g} log d) rows with s = O(1/g)),
    which moves each score by at most a factor (1 +- eps)^{-2}. Then a Gaussian JL
    projection to k = max(128, 24 ln n) columns: a score's relative error has standard
    deviation sqrt(2 / k) and P(chi2_k / k < 0.6) < 1e-7 for n = 10^6 (k = 332).
    """
    rows = int(min(n, max(64 * d, 256)))
    jl = int(max(128, np.ceil(24 * np.log(max(n, 2)))))
    return rows, 4, jl


def sketched_leverage(blocks, n, d, seed=0, rcond=DEFAULT_RCOND, srht=False) -> Scores:
    """Approximate leverage scores (DMMW 2012): two passes, O(n d (s + k)) work.

    With ``srht`` the sparse embedding's rows are further mixed by a subsampled
    randomized Hadamard transform (random signs, the fast Walsh-Hadamard
    transform, 16 d rows kept) before the QR: a cheaper QR for large d, at the
    price of more distortion (about sqrt(d / 16 d) = 1/4 more).
    """
    from cond.kernels.sketching import fwht, keyed_uniforms, sparse_embed_accumulate

    rows, s, k = sketch_sizes(n, d)
    sketch = np.zeros((rows, d))
    for start, x in blocks():
        b = len(x)
        u = keyed_uniforms(seed, start * 2 * s, 2 * s * b).reshape(b, 2 * s)
        buckets = np.minimum((u[:, :s] * rows).astype(np.int64), rows - 1)
        signs = np.where(u[:, s:] < 0.5, -1.0, 1.0) / np.sqrt(s)
        sparse_embed_accumulate(sketch, x, buckets, signs)
    detail = {}
    if srht and rows > 16 * d:
        size = 1 << int(np.ceil(np.log2(rows)))
        mixed = np.zeros((size, d))
        flips = np.where(keyed_uniforms(seed + 1, 0, rows) < 0.5, -1.0, 1.0)
        mixed[:rows] = sketch * flips[:, None]
        fwht(mixed)
        keep = np.sort(np.argsort(keyed_uniforms(seed + 2, 0, size))[: 16 * d])
        sketch = mixed[keep] / np.sqrt(len(keep))
        detail["srht_rows"] = len(keep)
    r = scipy.linalg.qr(sketch, mode="r", check_finite=False)[0][:d]
    if r.shape[0] < d:
        r = np.vstack([r, np.zeros((d - r.shape[0], d))])
    t, rank = rank_basis(np.triu(r), n, rcond)
    g = np.random.default_rng([seed, 1]).standard_normal((rank, k)) / np.sqrt(k)
    # The JL product runs in float32: its rounding (~1e-7 relative) is far below the
    # projection's own error (~sqrt(2 / k)), and it halves the cost of this pass.
    tg = (t @ g).astype(np.float32)
    out = np.empty(n)
    for start, x in blocks():
        out[start:start + len(x)] = np.sum(np.square(x.astype(np.float32) @ tg, dtype=np.float32), axis=1,
                                           dtype=np.float64)
    return Scores(out, rank, {"passes": 2, "sketch_rows": rows, "nonzeros_per_column": s, "jl_dim": k,
                              **detail})
