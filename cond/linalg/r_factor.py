"""The R factor of a tall matrix A (n x d) from its row blocks, by two routes every caller uses:

- TSQR (:func:`tree_r`): the blocks' R factors (:func:`leaf_r`) merged by QR up a binary
  tree (:class:`RTree`); backward stable whatever kappa;
- the Gram route (:func:`gram_r`): A^T A summed up the same tree (:class:`GramTree`) and
  its Cholesky factor, accepted only with a certificate on the leverage scores it gives
  (:func:`certified_r`); one pass instead of two where A is well enough conditioned.
"""

from __future__ import annotations

import numpy as np

from cond.linalg.tree import PairTree

EPS64 = float(np.finfo(np.float64).eps)
GRAM_SUB_ROWS = 1024  # a 4096-row leaf's Gram is summed from blocks of this many rows
SCORE_RTOL = 1e-9  # the certified relative accuracy of every exact score


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


def leaf_gram(x, sub_rows=GRAM_SUB_ROWS):
    """X^T X summed from blocks of ``sub_rows`` rows in order, and the term count t of its
    error bound, ``|fl(G) - G| <= gamma_t |X|^T |X|`` entrywise (t = b + blocks - 1).

    Parameters
    ----------
    x : ndarray of shape (m, n)
        Views are fine: NumPy's matmul calls ``syrk`` for ``x.T @ x`` and releases the GIL.
    sub_rows : int

    Returns
    -------
    gram : ndarray of shape (n, n)
    terms : int
    """
    gram, parts = None, 0
    for i in range(0, max(len(x), 1), sub_rows):
        sub = x[i : i + sub_rows]
        part = sub.T @ sub
        gram = part if gram is None else np.add(gram, part, out=gram)
        parts += 1
    return gram, min(len(x), sub_rows) + parts - 1


class GramTree:
    """A^T A by the binary tree of :class:`cond.linalg.tree.PairTree` over the row blocks,
    leaves :func:`leaf_gram`, nodes their sums: the floats depend only on the blocks, and a
    Dask cluster's aligned subtrees reproduce them. ``terms`` is the largest term count of a
    leaf, ``leaves`` their number, ``stack`` the partial subtrees."""

    def __init__(self, d):
        self.d = d
        self.terms = 0
        self.leaves = 0
        self._tree = PairTree(np.add)

    @property
    def stack(self):
        return self._tree.stack

    def push(self, level, value, terms=0, leaves=1):
        self.terms = max(self.terms, terms)
        self.leaves += leaves
        self._tree.push(level, value)

    def result(self):
        return self._tree.result()


def gram_r(blocks, d, threads=None, rtol=SCORE_RTOL):
    """R from the Cholesky factor of A^T A, accepted only with a certificate on the scores.

    The Gram matrix is summed from the blocks' :func:`leaf_gram` (on ``threads`` threads
    with BLAS on one; the tree in order, so the floats do not depend on ``threads``).

    Certificate (u = eps / 2; Higham, *Accuracy and Stability*, 2nd ed., secs. 3.1, 10.1).
    Scores do not change when columns are scaled, so the bound is taken for A D,
    D = diag(G_jj^-1/2), which is as good as the best column scaling up to a factor d:

    * a leaf is formed to ``gamma_b |X|^T |X|`` (b its term count) and the tree of depth h
      adds ``gamma_h``, so by Cauchy-Schwarz ``|dG_jk| <= gamma_t ||a_j|| ||a_k||``,
      t = b + h, and ``||D dG D||_2 <= d gamma_t / (1 - gamma_t)``;
    * Cholesky gives ``R^T R = fl(G) + E`` with ``|E| <= gamma_{d+1} |R|^T |R|``, so
      ``||D E D||_2 <= d gamma_{d+1} (1 + gamma_{d+1})``;
    * with delta the sum, the scores computed from R are ``a_i^T (A^T A + D^-1 F D^-1)^-1 a_i``
      with ``||F|| <= delta``, each within relative ``rho = f / (1 - f)`` of the exact one,
      ``f = delta / (s_min(R D)^2 (1 - 4 d eps) - delta)``.

    Accepted when ``rho <= rtol``: kappa(A D) up to about ``sqrt(rtol / (d t u))``.

    Parameters
    ----------
    blocks : callable
        Returns a fresh iterator of ``(start, X)`` row blocks, X of shape (b, d).
    d : int
    threads : int, optional
    rtol : float

    Returns
    -------
    r : ndarray of shape (d, d) or None
        Upper triangular with R^T R = fl(A^T A) + E; None when the certificate fails (or
        the Gram matrix is not numerically positive definite).
    rho : float
        The certified relative error of every score (inf when declined).
    """
    from cond.threads import one_thread_blas, threaded_map

    tree = GramTree(d)
    with one_thread_blas():
        for g, terms in threaded_map(lambda item: leaf_gram(item[1]), blocks(), threads):
            tree.push(0, g, terms)
    return certified_r(tree.result(), tree.terms, tree.leaves, d, rtol)


def certified_r(gram, leaf_terms, leaves, d, rtol=SCORE_RTOL):
    """(R, rho) from a Gram matrix summed by :class:`GramTree`, or (None, inf): see :func:`gram_r`."""
    import math

    if gram is None or not np.all(np.isfinite(gram)):
        return None, math.inf
    u = EPS64 / 2
    gamma = lambda t: t * u / (1 - t * u)  # noqa: E731
    terms = leaf_terms + max(0, math.ceil(math.log2(max(leaves, 1))))
    diag = np.diag(gram)
    if not (np.all(diag > 2.0**-900) and np.all(diag < 2.0**900)):  # no underflow in D or G
        return None, math.inf
    try:
        lower = np.linalg.cholesky(gram)
    except np.linalg.LinAlgError:
        return None, math.inf
    delta = d * (gamma(terms) / (1 - gamma(terms)) + gamma(d + 1) * (1 + gamma(d + 1)))
    s_min = float(np.linalg.svd(lower / np.sqrt(diag)[:, None], compute_uv=False)[-1])  # of R D
    room = s_min * s_min * (1 - 4 * d * EPS64) - delta
    f = delta / room if room > 0 else math.inf
    rho = f / (1 - f) if f < 1 else math.inf
    return (np.ascontiguousarray(lower.T), rho) if rho <= rtol else (None, rho)
