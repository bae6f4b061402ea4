"""Weighted low-rank approximation: Fisher-weighted SVD and activation-aware whitening.

Both methods replace W (m x n) by a weighted matrix A W B, take its truncated
SVD, and map the factors back: W_hat = A^-1 (A W B)_r B^-1. The weighted error
||A (W - W_hat) B||_F is then the smallest possible at that rank, and equals the
square root of the discarded squared singular values of A W B (Eckart-Young).

- Fisher-weighted SVD (Hsu et al., ICLR 2022, arXiv 2207.00112): A and B are
  diagonal, from the Fisher information F (accumulated squared gradients)
  reduced to one importance per input feature (``in``: d^2 = sum of F's rows,
  B = diag(d)), per output feature (``out``: A = diag(d), d^2 = sum of F's
  columns) or both. The scale of F does not matter. Importances below
  ``FISHER_FLOOR`` times their mean are raised to it, so that A^-1 and B^-1
  stay finite.
- Whitening (SVD-LLM, Wang et al., ICLR 2025): A = I and B = L with
  G = X^T X = L L^T the Gram matrix of the layer's calibration inputs, so that
  ||(W - W_hat) X^T||_F = ||(W - W_hat) L||_F. When G is singular (an input that
  is always zero) a jitter, growing tenfold from ``JITTER_START`` times the mean
  diagonal, is added until the Cholesky factor's pivots are all above
  ``PIVOT_FLOOR`` of the largest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import scipy.linalg

from cond.linalg.truncated import _flip_signs

FISHER_FLOOR = 1e-6  # d_i^2 >= FISHER_FLOOR * mean(d^2)
JITTER_START = 1e-10  # first jitter, relative to the mean diagonal of G
JITTER_LIMIT = 1e-1  # give up beyond this (G is then far from a Gram matrix)
PIVOT_FLOOR = 1e-7  # smallest accepted Cholesky pivot, relative to the largest (squared: 1e-14)


@dataclass(frozen=True)
class Weighting:
    """The weights of A W B.

    Attributes
    ----------
    kind : str
        ``none``, ``fisher-in``, ``fisher-out``, ``fisher-both`` or ``whiten``.
    left : ndarray of shape (m,) or None
        The diagonal of A (None: the identity).
    right : ndarray of shape (n,) or (n, n), or None
        The diagonal of B, or the lower-triangular Cholesky factor L (None: the identity).
    clamped : int
        Importances raised to the floor.
    jitter : float
        What was added to the diagonal of G (relative to its mean diagonal).
    """

    kind: str = "none"
    left: Optional[np.ndarray] = None
    right: Optional[np.ndarray] = None
    clamped: int = 0
    jitter: float = 0.0

    @property
    def has_left(self) -> bool:
        return self.left is not None

    @property
    def has_right(self) -> bool:
        return self.right is not None

    def apply(self, w: np.ndarray) -> np.ndarray:
        """A W B in float64."""
        out = np.asarray(w, dtype=np.float64)
        if self.left is not None:
            out = self.left[:, None] * out
        if self.right is not None:
            out = out * self.right if self.right.ndim == 1 else out @ self.right
        return out

    def unapply_left(self, factor: np.ndarray) -> np.ndarray:
        """A^-1 factor (factor has m rows)."""
        return factor if self.left is None else factor / self.left[:, None]

    def unapply_right(self, factor: np.ndarray) -> np.ndarray:
        """factor B^-1 (factor has n columns); a triangular solve for L."""
        if self.right is None:
            return factor
        if self.right.ndim == 1:
            return factor / self.right
        # X L = F  <=>  L^T X^T = F^T
        return scipy.linalg.solve_triangular(self.right, factor.T, trans="T", lower=True, check_finite=False).T

    def error(self, w: np.ndarray, left: np.ndarray, right: np.ndarray) -> float:
        """||A (W - left right) B||_F / ||A W B||_F in float64 (:func:`~cond.linalg.truncated.relative_error`)."""
        from cond.linalg.truncated import relative_error

        return relative_error(w, np.asarray(left, dtype=np.float64) @ np.asarray(right, dtype=np.float64), self)


def fisher_weighting(fisher: np.ndarray, m: int, n: int, axis: str = "in") -> Weighting:
    """Row and column weights of Fisher-weighted SVD.

    Parameters
    ----------
    fisher : ndarray of shape (m, n), (n,) or (m,)
        Accumulated squared gradients, per element or already reduced to the
        side ``axis`` names. Non-negative and finite; any scale.
    m, n : int
        The shape of the weight.
    axis : {"in", "out", "both"}
        One importance per input feature (column), per output feature (row),
        or both. ``both`` needs the element-wise Fisher.

    Returns
    -------
    Weighting
    """
    if axis not in ("in", "out", "both"):
        raise ValueError(f"`axis` must be 'in', 'out' or 'both'; got {axis!r}")
    f = np.asarray(fisher, dtype=np.float64)
    if not np.all(np.isfinite(f)) or np.any(f < 0):
        raise ValueError("`fisher` must be finite and non-negative")
    if f.shape == (m, n):
        d_in, d_out = f.sum(axis=0), f.sum(axis=1)
    elif f.ndim == 1 and axis != "both" and f.shape[0] == (n if axis == "in" else m):
        d_in = d_out = f
    else:
        raise ValueError(f"`fisher` of shape {f.shape} does not fit a {m}x{n} weight with axis {axis!r}")
    left = right = None
    clamped = 0
    if axis in ("out", "both"):
        left, k = _importance(d_out)
        clamped += k
    if axis in ("in", "both"):
        right, k = _importance(d_in)
        clamped += k
    return Weighting(f"fisher-{axis}", left, right, clamped)


def _importance(squared):
    """sqrt of the importances, the small ones raised to the floor, normalised to mean square 1."""
    mean = float(np.mean(squared))
    if mean == 0 or not math.isfinite(mean):
        return np.ones_like(squared), 0
    floor = FISHER_FLOOR * mean
    clamped = int(np.count_nonzero(squared < floor))
    return np.sqrt(np.maximum(squared, floor) / mean), clamped


def whitening(gram: np.ndarray) -> Weighting:
    """The Cholesky factor of an input Gram matrix G = X^T X (n x n, symmetric PSD).

    A singular G gets a growing jitter (recorded, relative to the mean
    diagonal). Raises ``ValueError`` when G has a negative diagonal entry, is
    zero, or needs more jitter than ``JITTER_LIMIT``.

    Parameters
    ----------
    gram : ndarray of shape (n, n)

    Returns
    -------
    Weighting
        Kind ``whiten``: B = chol(G + jitter I), lower triangular, and the jitter used.
    """
    g = np.asarray(gram, dtype=np.float64)
    if g.ndim != 2 or g.shape[0] != g.shape[1]:
        raise ValueError(f"`gram` must be square; got shape {g.shape}")
    diag = np.diag(g)
    if np.any(diag < 0):
        raise ValueError("`gram` has a negative diagonal entry; a Gram matrix is positive semidefinite")
    scale = float(diag.mean()) if diag.size else 0.0
    if scale == 0:
        raise ValueError("`gram` is zero: no calibration input reached this layer")
    jitter = 0.0
    while True:
        shifted = g if jitter == 0 else g + (jitter * scale) * np.eye(len(g))
        try:
            factor = np.linalg.cholesky(shifted)
        except np.linalg.LinAlgError:
            factor = None
        if factor is not None:
            pivots = np.abs(np.diag(factor))
            if pivots.min() >= PIVOT_FLOOR * pivots.max():
                return Weighting("whiten", None, factor, 0, jitter)
        jitter = JITTER_START if jitter == 0 else jitter * 10
        if jitter > JITTER_LIMIT:
            raise ValueError(
                f"`gram` is not positive semidefinite: Cholesky failed with jitter up to "
                f"{JITTER_LIMIT:g} of its mean diagonal"
            )


def weighted_factors(w: np.ndarray, weighting: Weighting, rank: int):
    """Factors of the weighted truncated SVD mapped back: W_hat = left @ right.

    The SVD of A W B is truncated to ``rank``; sqrt(S) is split evenly before the
    weights are undone, so the discarded tail of A W B's singular values is the
    weighted error (Eckart-Young).

    Parameters
    ----------
    w : ndarray of shape (m, n)
    weighting : Weighting
        Row weights A, column weights B or a whitening factor (kind ``none``: plain SVD).
    rank : int

    Returns
    -------
    left : ndarray of shape (m, rank)
    right : ndarray of shape (rank, n)
    s : ndarray of shape (min(m, n),)
        The singular values of A W B.
    """
    u, s, vt = scipy.linalg.svd(weighting.apply(w), full_matrices=False, check_finite=False, lapack_driver="gesdd")
    u, vt = _flip_signs(u[:, :rank], vt[:rank])
    root = np.sqrt(s[:rank])
    return weighting.unapply_left(u * root), weighting.unapply_right(root[:, None] * vt), s
