"""Sketched leverage scores on the CPU: the numba kernels (:mod:`cond.kernels.sketching`),
leaves summed by a fixed tree, so a Dask cluster running the same steps gets the same floats
(the steps are described in :mod:`cond.linalg.sketch`)."""

from __future__ import annotations

import numpy as np

from cond.linalg.leverage import DEFAULT_RCOND, Scores, block_leverage, leaf_r, rank_basis
from cond.linalg.sketch.sizes import ENTRIES_PER_THREAD, leaf_rows, sketch_sizes
from cond.linalg.tree import PairTree


class SketchSum:
    """S A for a sparse embedding S with keyed random buckets and signs, summed by leaves.

    Parameters
    ----------
    n, d : int
        Shape of A (n fixes the embedding size and the leaves).
    seed : int
        Buckets and signs of row i are a pure function of (seed, i).
    pool : concurrent.futures.Executor, optional
        Threads that accumulate disjoint ranges of the sketch's rows side by side (the
        kernel releases the GIL); every entry still gets its terms in row order, so the
        floats do not depend on the number of threads.
    threads : int
        How many ranges to split the sketch into when ``pool`` is given.
    """

    def __init__(self, n, d, seed, pool=None, threads=1):
        self.rows, self.s, _ = sketch_sizes(n, d)
        self.d, self.seed, self.leaf_rows = d, int(seed), leaf_rows(n, d)
        self.tree = PairTree(np.add)
        self._leaf, self._part = None, None
        self._pool = pool
        pieces = max(1, min(int(threads), self.rows * d // ENTRIES_PER_THREAD)) if pool is not None else 1
        self._ranges = [(j * self.rows // pieces, (j + 1) * self.rows // pieces) for j in range(pieces)]

    def add(self, start, x):
        """Rows ``start`` .. ``start + len(x) - 1`` of A (rows must come in order)."""
        from cond.kernels.sketching import embedding_hashes, sparse_embed_accumulate

        while len(x):
            leaf = start // self.leaf_rows
            if leaf != self._leaf:
                self.close_leaf()
                self._leaf, self._part = leaf, np.zeros((self.rows, self.d))
            piece = x[: (leaf + 1) * self.leaf_rows - start]
            buckets, signs = embedding_hashes(self.seed, start, len(piece), self.s, self.rows)
            if len(self._ranges) == 1:
                sparse_embed_accumulate(self._part, piece, buckets, signs, 0, self.rows)
            else:
                part = self._part
                list(
                    self._pool.map(
                        lambda r, part=part, piece=piece, buckets=buckets, signs=signs: sparse_embed_accumulate(
                            part, piece, buckets, signs, r[0], r[1]
                        ),
                        self._ranges,
                    )
                )
            start, x = start + len(piece), x[len(piece) :]

    def close_leaf(self):
        """Hand the current leaf to the tree (a task ends its group of leaves with this)."""
        if self._part is not None:
            self.tree.push(0, self._part)
            self._leaf, self._part = None, None

    def result(self):
        """S A (rows x d)."""
        self.close_leaf()
        total = self.tree.result()
        return np.zeros((self.rows, self.d)) if total is None else total


def sketch_basis(sketch, n, d, seed=0, rcond=DEFAULT_RCOND, srht=False):
    """(TG, rank, detail): TG = V_k S_k^{-1} G (d x k, float32) from R of the sketch.

    With ``srht`` the sketch's rows are further mixed by a subsampled randomized
    Hadamard transform (random signs, the fast Walsh-Hadamard transform, 16 d rows
    kept) before the QR: a cheaper QR for large d, at the price of more distortion
    (about sqrt(d / 16 d) = 1/4 more).

    Parameters
    ----------
    sketch : ndarray of shape (rows, d)
        S A.
    n, d : int
    seed : int
    rcond : float, optional
    srht : bool

    Returns
    -------
    tg : ndarray of shape (d, k), float32, or of shape (d, rank), float64
        TG; or T itself when rank <= k / 2 (``detail["jl_dim"]`` is then None).
    rank : int
    detail : dict
        Sketch sizes (and SRHT rows).
    """
    from cond.kernels.keyed import keyed_uniforms
    from cond.kernels.sketching import fwht

    rows, s, k = sketch_sizes(n, d)
    detail = {"passes": 2, "sketch_rows": rows, "nonzeros_per_column": s, "jl_dim": k}
    if srht and rows > 16 * d:
        size = 1 << int(np.ceil(np.log2(rows)))
        mixed = np.zeros((size, d))
        flips = np.where(keyed_uniforms(seed + 1, 0, rows) < 0.5, -1.0, 1.0)
        mixed[:rows] = sketch * flips[:, None]
        fwht(mixed)
        keep = np.sort(np.argsort(keyed_uniforms(seed + 2, 0, size))[: 16 * d])
        sketch = mixed[keep] / np.sqrt(len(keep))
        detail["srht_rows"] = len(keep)
    t, rank = rank_basis(leaf_r(sketch, d), n, rcond)
    if 2 * rank <= k:  # exact norms against T cost less than the projection
        detail["jl_dim"] = None
        return t, rank, detail
    g = np.random.default_rng([seed, 1]).standard_normal((rank, k)) / np.sqrt(k)
    # The JL product runs in float32: its rounding (~1e-7 relative) is far below the
    # projection's own error (~sqrt(2 / k)), and it halves the cost of the score pass.
    return (t @ g).astype(np.float32), rank, detail


def jl_scores(x, tg):
    """||x_i^T TG||^2 for the rows of one block (float32 product, float64 result); for a
    float64 T (:func:`sketch_basis` without projection), ||x_i^T T||^2 in float64.

    Parameters
    ----------
    x : ndarray of shape (b, d)
    tg : ndarray of shape (d, k), float32, or of shape (d, rank), float64

    Returns
    -------
    ndarray of shape (b,)
    """
    if tg.dtype == np.float64:
        return block_leverage(x, tg)
    return np.sum(np.square(x.astype(np.float32) @ tg, dtype=np.float32), axis=1, dtype=np.float64)


def sketched_leverage_cpu(blocks, n, d, seed=0, rcond=DEFAULT_RCOND, srht=False, threads=None) -> Scores:
    """The CPU variant of :func:`cond.linalg.sketch.sketched_leverage` (same arguments, no ``xp``)."""
    from concurrent.futures import ThreadPoolExecutor

    from cond.threads import default_threads, one_thread_blas, threaded_map

    threads = default_threads() if threads is None else int(threads)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        total = SketchSum(n, d, seed, pool, threads)
        for start, x in blocks():
            total.add(start, x)
    out = np.empty(n)
    with one_thread_blas():  # the floats a Dask worker gets (cond.threads); blocks side by side
        tg, rank, detail = sketch_basis(total.result(), n, d, seed, rcond, srht)
        for start, values in threaded_map(lambda item: (item[0], jl_scores(item[1], tg)), blocks(), threads):
            out[start : start + len(values)] = values
    return Scores(out, rank, detail)
