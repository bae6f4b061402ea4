"""The sizes every variant of the sketch shares: embedding rows, nonzeros per column, the JL
dimension, and the leaves whose sums make S A independent of how the rows were read."""

from __future__ import annotations

import numpy as np

from cond.linalg.tree import BLOCK_ROWS

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
