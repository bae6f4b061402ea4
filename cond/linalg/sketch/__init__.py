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
   order and the leaves are summed by a :class:`~cond.linalg.tree.PairTree`,
   so the floats depend on n and d only, not on how the rows were read or split.
2. :func:`sketch_basis`: (optional SRHT,) QR, rank basis, times G: the d x k
   float32 matrix TG (or the float64 rank basis T itself, rank <= k / 2).
3. :func:`jl_scores`: ||x_i^T TG||^2 for the rows of one block.
"""

from __future__ import annotations

import numpy as np

from cond.linalg.leverage import DEFAULT_RCOND, Scores
from cond.linalg.sketch.cpu import SketchSum, jl_scores, sketch_basis, sketched_leverage_cpu
from cond.linalg.sketch.sizes import leaf_rows, sketch_sizes

__all__ = ["SketchSum", "jl_scores", "leaf_rows", "sketch_basis", "sketch_sizes", "sketched_leverage"]


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
        :mod:`cond.linalg.sketch.xp`, which agrees to rounding.

    Returns
    -------
    Scores
        ``values`` of shape (n,) on the host, the rank, and how they were computed.
    """
    if xp is not None and xp is not np:
        from cond.linalg.sketch.xp import sketched_leverage_xp

        return sketched_leverage_xp(xp, blocks, n, d, seed, rcond)
    return sketched_leverage_cpu(blocks, n, d, seed, rcond, srht, threads)
