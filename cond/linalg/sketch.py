"""Sketched leverage scores (Drineas, Magdon-Ismail, Mahoney & Woodruff, JMLR 2012).

tau_i ~ ||a_i^T R^{-1} G||^2 with R from QR of a sparse embedding S A and G a
Gaussian Johnson-Lindenstrauss projection; two passes, O(n d (s + k)) work.
Where the rank is at most k / 2 the projection costs more than it saves (a
float32 product with k columns against a float64 one with rank columns), so
the scores are then ||a_i^T R^{-1}||^2 exactly, without the projection's error.
The algorithm is three small public steps, so that a Dask cluster can run the
passes and get the same floats as one process:

1. :class:`SketchSum` forms S A. Rows fall into leaves of :func:`leaf_rows`
   consecutive rows; each leaf's part of S A is accumulated from zero in row
   order and the leaves are summed by a :class:`~cond.linalg.leverage.PairTree`,
   so the floats depend on n and d only, not on how the rows were read or split.
2. :func:`sketch_basis`: (optional SRHT,) QR, rank basis, times G: the d x k
   float32 matrix TG (or the float64 rank basis T itself, rank <= k / 2).
3. :func:`jl_scores`: ||x_i^T TG||^2 for the rows of one block.
"""

from __future__ import annotations

import numpy as np

from cond.linalg.leverage import BLOCK_ROWS, DEFAULT_RCOND, PairTree, Scores, block_leverage, leaf_r, rank_basis

ENTRIES_PER_THREAD = 2**18  # sketches smaller than this (2 MB) are accumulated on one thread


def sketch_sizes(n, d):
    """(embedding rows, nonzeros per column, JL dimension) used by :func:`sketched_leverage`.

    Sparse embedding (OSNAP, Nelson & Nguyen 2013) with s = 4 nonzeros per column
    and 64 d rows: an (1 +- eps) subspace embedding with eps about sqrt(d / rows) =
    1/8 in practice (the theory asks for O(d^{1+g} log d) rows with s = O(1/g)),
    which moves each score by at most a factor (1 +- eps)^{-2}. Then a Gaussian JL
    projection to k = max(128, 24 ln n) columns: a score's relative error has standard
    deviation sqrt(2 / k) and P(chi2_k / k < 0.6) < 1e-7 for n = 10^6 (k = 332).

    Parameters
    ----------
    n, d : int
        Rows and columns of A.

    Returns
    -------
    tuple of int
        (rows of S, nonzeros per column of S, k).
    """
    rows = int(min(n, max(64 * d, 256)))
    jl = int(max(128, np.ceil(24 * np.log(max(n, 2)))))
    return rows, 4, jl


def leaf_rows(n, d):
    """Rows per leaf of the sketch sum: 2**j x BLOCK_ROWS >= 1024 d.

    A leaf costs one zeroed (64 d x d) partial sum and, amortised, one addition of
    it; 1024 d rows of 4 nonzeros each make that about 5% of the leaf's own work.

    Parameters
    ----------
    n, d : int

    Returns
    -------
    int
        A whole number of row blocks.
    """
    rows, _, _ = sketch_sizes(n, d)
    blocks = max(1, -(-16 * rows // BLOCK_ROWS))
    return BLOCK_ROWS * (1 << (blocks - 1).bit_length())


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
            piece = x[:(leaf + 1) * self.leaf_rows - start]
            buckets, signs = embedding_hashes(self.seed, start, len(piece), self.s, self.rows)
            if len(self._ranges) == 1:
                sparse_embed_accumulate(self._part, piece, buckets, signs, 0, self.rows)
            else:
                part = self._part
                list(self._pool.map(lambda r: sparse_embed_accumulate(part, piece, buckets, signs, r[0], r[1]),
                                    self._ranges))
            start, x = start + len(piece), x[len(piece):]

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


def sketched_leverage(blocks, n, d, seed=0, rcond=DEFAULT_RCOND, srht=False, threads=None, xp=None) -> Scores:
    """Approximate leverage scores (Drineas et al., JMLR 2012): one pass for S A, one for the scores.

    Parameters
    ----------
    blocks : callable
        Returns a fresh iterator of ``(start, X)`` host row blocks in order, X of shape
        (b, d) (one call per pass).
    n, d : int
        Rows and columns of A.
    seed : int
        Keys the sparse embedding, the SRHT and the JL matrix.
    rcond : float, optional
        Relative cut-off of the numerical rank (default max(n, d) eps).
    srht : bool
        Mix the sketch with an SRHT before the QR (:func:`sketch_basis`); CPU only.
    threads : int, optional
        Blocks scored side by side (BLAS on one thread each; default: the CPUs, at most 8).
    xp : module, optional
        The array module to compute with (:func:`cond.backends.array_module`); numpy (the
        default) runs the numba kernels, another (CuPy) the array-operation version of
        :mod:`cond.linalg.leverage_device`, which agrees to rounding.

    Returns
    -------
    Scores
        ``values`` of shape (n,) on the host, the rank, and how they were computed.
    """
    if xp is not None and xp is not np:
        from cond.linalg.leverage_device import sketched_leverage_xp

        return sketched_leverage_xp(xp, blocks, n, d, seed, rcond)
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
            out[start:start + len(values)] = values
    return Scores(out, rank, detail)
