"""Slow, obviously correct references used as oracles (mpmath at 60 digits, closed forms)."""

from __future__ import annotations

import mpmath
import numpy as np

EPS = float(np.finfo(np.float64).eps)


def mp_singular_values(a: np.ndarray, dps: int = 60) -> list:
    """Singular values (descending, as mpf) of the exact binary values of a float64 matrix."""
    with mpmath.workdps(dps):
        m = mpmath.matrix([[mpmath.mpf(float(v)) for v in row] for row in np.asarray(a, np.float64)])
        s = mpmath.svd_r(m, compute_uv=False)
        return sorted((s[i] for i in range(len(s))), reverse=True)


def mp_kappa(a: np.ndarray, dps: int = 60) -> float:
    s = mp_singular_values(a, dps)
    with mpmath.workdps(dps):
        return float(s[0] / s[-1])


def hilbert(n: int) -> np.ndarray:
    i = np.arange(n)
    return 1.0 / (i[:, None] + i[None, :] + 1.0)


def kahan(n: int, theta: float = 1.2) -> np.ndarray:
    """Kahan's matrix: diag(1, s, ..., s^(n-1)) (I - c * strict upper ones), s = sin, c = cos."""
    c, s = np.cos(theta), np.sin(theta)
    upper = np.triu(-c * np.ones((n, n)), 1) + np.eye(n)
    return (s ** np.arange(n))[:, None] * upper


def lauchli(n: int, eps: float) -> np.ndarray:
    return np.vstack([np.ones((1, n)), eps * np.eye(n)])


def kappa_rtol(a: np.ndarray, kappa: float) -> float:
    """Relative error allowed for a backward-stable kappa: sigma_min and sigma_max each
    move by at most c * eps * sigma_max with c = max(m, n) (Weyl), so kappa moves by about
    c * eps * (kappa + 1); LAPACK's bidiagonal SVD adds its relative tolerance (dbdsqr's
    TOLMUL u, allowed as 100 eps) on each of the two; plus the eps of rounding the answer."""
    c = max(a.shape)
    return c * EPS * (kappa + 1.0) + 200 * EPS + 4 * EPS
