"""The SVD of a matrix held as factors, dW = s L R (L: m x r, R: r x n), without forming it.

With thin QRs L = Q_L R_L and R^T = Q_R R_R, dW = Q_L (s R_L R_R^T) Q_R^T, so the SVD of
the r x r core C = s R_L R_R^T = U_c S V_c^T gives dW = (Q_L U_c) S (Q_R V_c)^T: the
singular values of dW and its singular vectors in O((m + n) r^2) work, never the m n of
the product (DESIGN.md, "LoRA adapters and fine-tune deltas"). Backward stable in the
factors: each value is within about ``c eps ||L|| ||R|| |s|`` of the product's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def frobenius(x) -> float:
    """||x||_F without overflow or underflow: scaled by the largest magnitude first (the squares
    of entries near 1e160 or 1e-170 leave float64's range; their ratios do not)."""
    x = np.asarray(x, dtype=np.float64)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak == 0.0 or not np.isfinite(peak):
        return peak
    return peak * float(np.linalg.norm(x / peak))


@dataclass(frozen=True)
class FactoredSVD:
    """dW = u @ diag(s) @ vt with u (m x k), s (k,) descending, vt (k x n), k = min(r, m, n)."""

    u: np.ndarray
    s: np.ndarray
    vt: np.ndarray


def factored_svd(left, right, scale=1.0, compute_uv=True):
    """The SVD of ``scale * left @ right`` from the factors (see the module's docstring).

    Parameters
    ----------
    left : ndarray of shape (m, r)
    right : ndarray of shape (r, n)
    scale : float
    compute_uv : bool
        False returns only the singular values, shape (k,).

    Returns
    -------
    FactoredSVD or ndarray
    """
    left = np.asarray(left, dtype=np.float64)
    right = np.asarray(right, dtype=np.float64)
    if left.ndim != 2 or right.ndim != 2 or left.shape[1] != right.shape[0]:
        raise ValueError(f"factors must be m x r and r x n; got {left.shape} and {right.shape}")
    q_l, r_l = np.linalg.qr(left)
    q_r, r_r = np.linalg.qr(right.T)
    core = float(scale) * (r_l @ r_r.T)
    if not compute_uv:
        return np.linalg.svd(core, compute_uv=False)
    u_c, s, vt_c = np.linalg.svd(core, full_matrices=False)
    return FactoredSVD(q_l @ u_c, s, vt_c @ q_r.T)


def balanced_factors(svd: FactoredSVD, k):
    """Rank-k factors L = U_k sqrt(S_k) (m x k), R = sqrt(S_k) V_k^T (k x n): the scale split
    evenly, so both keep the same dynamic range when stored in a narrow dtype."""
    root = np.sqrt(svd.s[:k])
    return svd.u[:, :k] * root, root[:, None] * svd.vt[:k]


def factored_distance(left, right, scale, left2, right2):
    """||scale L R - L2 R2||_F from the factors alone: the stacked factors [scale L, -L2] and
    [R; R2] have the product as their product, and its Frobenius norm is that of the small
    triangular core of their QRs. O((m + n) (r + k)^2); float64 throughout."""
    m_side = np.hstack([float(scale) * np.asarray(left, np.float64), -np.asarray(left2, np.float64)])
    n_side = np.vstack([np.asarray(right, np.float64), np.asarray(right2, np.float64)])
    _, r_m = np.linalg.qr(m_side)
    _, r_n = np.linalg.qr(n_side.T)
    return frobenius(r_m @ r_n.T)


def randomized_svd(a, k, oversample=10, power=2, seed=0):
    """A rank-(k + oversample) basis of ``a``'s range and the SVD of ``a`` projected onto it
    (Halko, Martinsson & Tropp, SIAM Review 2011, Algorithm 4.4: a Gaussian test matrix and
    ``power`` subspace iterations, re-orthonormalised by QR at every step).

    The projection's error is exact, not estimated: with Q orthonormal,
    ``||A - Q Q^T A||_F^2 = ||A||_F^2 - ||Q^T A||_F^2``, and the returned values are those of
    Q^T A, so every truncation of them has a computable error (the caller measures it on
    what it writes).

    Parameters
    ----------
    a : ndarray of shape (m, n)
    k : int
    oversample, power : int
    seed : int

    Returns
    -------
    FactoredSVD
        u (m x l), s (l,), vt (l x n) with l = min(k + oversample, m, n).
    """
    a = np.asarray(a, dtype=np.float64)
    m, n = a.shape
    width = min(k + oversample, m, n)
    omega = np.random.default_rng(seed).standard_normal((n, width))
    q, _ = np.linalg.qr(a @ omega)
    for _ in range(power):
        z, _ = np.linalg.qr(a.T @ q)
        q, _ = np.linalg.qr(a @ z)
    u_b, s, vt = np.linalg.svd(q.T @ a, full_matrices=False)
    return FactoredSVD(q @ u_b, s, vt)
