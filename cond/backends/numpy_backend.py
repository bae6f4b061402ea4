"""The default backend: float64 LAPACK through SciPy on the CPU."""

from __future__ import annotations

import numpy as np
import scipy.linalg

UNIT_ROUNDOFF = float(np.finfo(np.float64).eps) / 2
# CholeskyQR2 pays off only for clearly tall matrices.
CHOLQR_ASPECT = 2

_dsyrk = scipy.linalg.blas.dsyrk
_dtrsm = scipy.linalg.blas.dtrsm
_dpotrf = scipy.linalg.lapack.dpotrf


def svdvals(a: np.ndarray, overwrite_a: bool = False) -> np.ndarray:
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
    small multiple of ``u * ||a||_2``. With ``overwrite_a`` only ``gesdd`` may use
    the array as workspace (its contents are garbage afterwards). The CholeskyQR2
    path never writes to ``a``: when it declines, ``gesdd`` must see the original
    values, not the Q factor the first pass made of them (STYLE rule 14).
    """
    m, n = a.shape
    # xt: the transpose of the tall orientation, Fortran-ordered (n x m), so that every
    # BLAS call below reads it in place.
    xt = a.T if m >= n else a
    if min(m, n) * CHOLQR_ASPECT <= max(m, n):
        s = _cholqr2_svdvals(np.asfortranarray(xt))
        if s is not None:
            return s
    return scipy.linalg.svd(a, compute_uv=False, check_finite=False, lapack_driver="gesdd",
                            overwrite_a=overwrite_a)


def _cholqr2_svdvals(xt):
    """CholeskyQR2 on the tall matrix X = xt.T; None when its condition does not hold.

    ``xt`` is only read: Q1 is a new array, so a decline leaves the input intact.
    """
    n, m = xt.shape
    r1 = _chol_of_gram(xt)
    if r1 is None:
        return None
    q1t = _dtrsm(1.0, r1, xt, side=0, lower=0, trans_a=1, diag=0, overwrite_b=0)  # Q1^T = R1^-T X^T
    r2 = _chol_of_gram(q1t)
    del q1t
    if r2 is None:
        return None
    r = np.triu(r2) @ np.triu(r1)
    s = scipy.linalg.svd(r, compute_uv=False, check_finite=False, lapack_driver="gesdd")
    if not (np.all(np.isfinite(s)) and s[-1] > 0):
        return None
    kappa = s[0] / s[-1]
    if 16.0 * kappa * np.sqrt((m * n + n * (n + 1)) * UNIT_ROUNDOFF) > 1.0:
        return None
    return s


def _chol_of_gram(xt):
    """Upper Cholesky factor of X^T X = xt xt^T (BLAS syrk, LAPACK potrf); None if not SPD."""
    gram = _dsyrk(1.0, xt, trans=0, lower=0)
    r, info = _dpotrf(gram, lower=0, clean=1, overwrite_a=1)
    return r if info == 0 else None


def eigvals(a: np.ndarray) -> np.ndarray:
    """Eigenvalues of a finite square float64 array (LAPACK ``geev``)."""
    return scipy.linalg.eigvals(a, check_finite=False)
