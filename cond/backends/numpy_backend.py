"""The default backend: float64 LAPACK through SciPy on the CPU."""

from __future__ import annotations

import numpy as np
import scipy.linalg

UNIT_ROUNDOFF = float(np.finfo(np.float64).eps) / 2
# CholeskyQR2 pays off only for clearly tall matrices.
CHOLQR_ASPECT = 2


def svdvals(a: np.ndarray) -> np.ndarray:
    """Singular values of a finite 2-D float64 array, descending.

    Square-ish matrices go to LAPACK ``gesdd``. A clearly tall matrix (or the
    transpose of a wide one), m >= 2n, is first reduced to its n x n triangular
    factor by CholeskyQR2 (two rounds of R = chol(A^T A), A <- A R^{-1}), which
    costs three BLAS-3 passes instead of a Householder QR. Yamamoto, Nakatsukasa,
    Yanagisawa & Fukaya (ETNA 44, 2015, Thm 3.3 and 3.4) prove it backward stable,
    ||A - QR|| = O(u ||A||) with Q orthonormal to O(u), whenever
    delta = 8 kappa(A) sqrt(m n u + n (n + 1) u) <= 1. cond checks that condition
    with a safety factor of 2 on the kappa it computed and otherwise (or if a
    Cholesky factorisation fails) recomputes with ``gesdd``: a kappa too large
    for the test makes the computed one at least min(kappa, ~u**-1/2), which
    fails it.

    Either way the computed values are those of ``a + E`` with ``||E||_2`` a
    small multiple of ``u * ||a||_2``.
    """
    m, n = a.shape
    if m < n:
        a = a.T
        m, n = n, m
    if m >= CHOLQR_ASPECT * n:
        s = _cholqr2_svdvals(a)
        if s is not None:
            return s
    return scipy.linalg.svd(a, compute_uv=False, check_finite=False, lapack_driver="gesdd")


def _cholqr2_svdvals(a):
    m, n = a.shape
    try:
        r1 = scipy.linalg.cholesky(a.T @ a, lower=False, check_finite=False)
        q1 = scipy.linalg.solve_triangular(r1, a.T, trans="T", lower=False, check_finite=False).T
        r2 = scipy.linalg.cholesky(q1.T @ q1, lower=False, check_finite=False)
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
        return None
    s = scipy.linalg.svd(r2 @ r1, compute_uv=False, check_finite=False, lapack_driver="gesdd")
    if not (np.all(np.isfinite(s)) and s[-1] > 0):
        return None
    kappa = s[0] / s[-1]
    if 16.0 * kappa * np.sqrt((m * n + n * (n + 1)) * UNIT_ROUNDOFF) > 1.0:
        return None
    return s


def eigvals(a: np.ndarray) -> np.ndarray:
    """Eigenvalues of a finite square float64 array (LAPACK ``geev``)."""
    return scipy.linalg.eigvals(a, check_finite=False)
