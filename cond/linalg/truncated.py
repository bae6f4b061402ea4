"""Truncated SVD of one matrix: the rank for a target, the factors, the measured error.

Error of an approximation: e = ||W - W_hat||_F / ||W||_F, computed in float64.
For the truncated SVD at rank r, e(r)^2 = sum_{i>r} sigma_i^2 / sum_i sigma_i^2
(Eckart-Young), the smallest possible at that rank.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg


def tail_errors(s: np.ndarray) -> np.ndarray:
    """e(r) for r = 0 .. len(s): sqrt(sum_{i>r} s_i^2 / sum s_i^2).

    Parameters
    ----------
    s : ndarray of shape (k,)
        Singular values, descending.

    Returns
    -------
    ndarray of shape (k + 1,)
        e(0) = 1 ... e(k) = 0 (all zeros for a zero matrix).
    """
    energy = np.asarray(s, dtype=np.float64) ** 2
    total = energy.sum()
    if total == 0:
        return np.zeros(len(energy) + 1)
    tail = np.concatenate([np.cumsum(energy[::-1])[::-1], [0.0]])
    return np.sqrt(np.maximum(tail / total, 0.0))


def rank_for_error(s: np.ndarray, max_error: float) -> int:
    """Smallest r with e(r) <= max_error (0 only for a zero matrix).

    Parameters
    ----------
    s : ndarray of shape (k,)
        Singular values, descending.
    max_error : float
        In (0, 1).

    Returns
    -------
    int
    """
    if not 0 < max_error < 1:
        raise ValueError(f"`max_error` must be in (0, 1); got {max_error}")
    errors = tail_errors(s)
    return int(np.argmax(errors <= max_error))


def rank_for_ratio(m: int, n: int, ratio: float) -> int:
    """Largest r whose factors keep at most ``ratio`` of the m * n parameters (at least 1).

    Parameters
    ----------
    m, n : int
    ratio : float
        In (0, 1].

    Returns
    -------
    int
    """
    if not 0 < ratio <= 1:
        raise ValueError(f"`ratio` must be in (0, 1]; got {ratio}")
    return max(1, int(math.floor(ratio * m * n / (m + n))))


def lowrank_params(m: int, n: int, r: int) -> int:
    """Parameters of the factors U (m x r) and V (r x n).

    Parameters
    ----------
    m, n, r : int

    Returns
    -------
    int
        r (m + n).
    """
    return r * (m + n)


def svd_factors(w: np.ndarray, rank: int):
    """Balanced factors of the rank-r truncated SVD: U sqrt(S) and sqrt(S) V^T.

    Signs are fixed so that the largest entry of each left vector is positive
    (deterministic output). Splitting sqrt(S) evenly keeps both factors in the
    range of narrow dtypes.

    Parameters
    ----------
    w : ndarray of shape (m, n)
    rank : int

    Returns
    -------
    left : ndarray of shape (m, rank)
    right : ndarray of shape (rank, n)
    s : ndarray of shape (min(m, n),)
        Every singular value of W.
    """
    u, s, vt = scipy.linalg.svd(w, full_matrices=False, check_finite=False, lapack_driver="gesdd")
    u, vt = _flip_signs(u[:, :rank], vt[:rank])
    root = np.sqrt(s[:rank])
    return u * root, root[:, None] * vt, s


def _flip_signs(u, vt):
    signs = np.sign(u[np.argmax(np.abs(u), axis=0), np.arange(u.shape[1])])
    signs[signs == 0] = 1.0
    return u * signs, vt * signs[:, None]


def relative_error(w: np.ndarray, approx: np.ndarray, weighting=None) -> float:
    """The error of an approximation, plain or weighted: ||A (W - W_hat) B||_F / ||A W B||_F.

    Parameters
    ----------
    w : ndarray of shape (m, n)
        The matrix.
    approx : ndarray of shape (m, n)
        Its approximation W_hat (as the user gets it back: after every rounding).
    weighting : cond.linalg.weighted.Weighting, optional
        Row and column weights A and B (Fisher) or the whitening factor; plain when None
        or of kind ``none``.

    Returns
    -------
    float
        In float64; 0 for W = W_hat = 0, inf for W = 0 approximated by anything else.
    """
    w = np.asarray(w, dtype=np.float64)
    diff = w - np.asarray(approx, dtype=np.float64)
    if weighting is not None and weighting.kind != "none":
        w, diff = weighting.apply(w), weighting.apply(diff)
    norm, err = np.linalg.norm(w), np.linalg.norm(diff)
    if norm == 0:
        return 0.0 if err == 0 else math.inf
    return float(err / norm)
