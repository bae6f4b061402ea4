"""The default backend: float64 LAPACK on the CPU.

NumPy's ``linalg.svd``, ``linalg.cholesky``, ``linalg.eigvalsh`` and matmul
(``syrk`` for ``x.T @ x``) release the GIL; SciPy's f2py wrappers for ``gesdd``,
``syrk`` and ``trsm`` hold it for the whole call (``tests/test_parallel.py``,
``benchmarks/threads_vs_processes.py``). The one SciPy call left is CholeskyQR2's
triangular solve, which NumPy does not offer. Releasing the GIL is not enough for
small matrices to scale on threads, which is why inspect's pool is processes
(:mod:`cond.threads`).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

UNIT_ROUNDOFF = float(np.finfo(np.float64).eps) / 2
# CholeskyQR2 pays off only for clearly tall matrices.
CHOLQR_ASPECT = 2

_dtrsm = scipy.linalg.blas.dtrsm


def svdvals(a: np.ndarray, overwrite_a: bool = False, gram=None) -> np.ndarray:
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
    small multiple of ``u * ||a||_2``. Neither path writes to ``a``: when
    CholeskyQR2 declines, ``gesdd`` must see the original values, not the Q
    factor the first pass made of them (STYLE rule 14). ``overwrite_a`` is
    accepted for the callers' sake; NumPy's ``gesdd`` always works on a copy.
    ``gram``, the Gram matrix of the tall orientation already formed (by the
    Gram route), saves CholeskyQR2 its first ``syrk``.
    """
    return svdvals_route(a, gram)[0]


def svdvals_route(a: np.ndarray, gram=None):
    """(singular values, "cholqr2" or "gesdd"): :func:`svdvals` and the route it took."""
    m, n = a.shape
    # xt: the transpose of the tall orientation, Fortran-ordered (n x m), so that every
    # BLAS call below reads it in place.
    xt = a.T if m >= n else a
    if min(m, n) * CHOLQR_ASPECT <= max(m, n):
        s = _cholqr2_svdvals(np.asfortranarray(xt), gram)
        if s is not None:
            return s, "cholqr2"
    return np.linalg.svd(a, compute_uv=False), "gesdd"


def _cholqr2_svdvals(xt, gram=None):
    """CholeskyQR2 on the tall matrix X = xt.T; None when its condition does not hold.

    ``xt`` is only read: Q1 is a new array, so a decline leaves the input intact.
    """
    n, m = xt.shape
    if gram is None:
        with np.errstate(over="ignore", invalid="ignore"):  # an overflowed Gram fails Cholesky
            gram = xt @ xt.T
    l1 = _chol_lower(gram)
    if l1 is None:
        return None
    q1t = _dtrsm(1.0, l1, xt, side=0, lower=1, trans_a=0, diag=0, overwrite_b=0)  # Q1^T = L1^-1 X^T
    with np.errstate(over="ignore", invalid="ignore"):
        l2 = _chol_lower(q1t @ q1t.T)
    del q1t
    if l2 is None:
        return None
    r = l2.T @ l1.T  # R = R2 R1
    s = np.linalg.svd(r, compute_uv=False)
    if not (np.all(np.isfinite(s)) and s[-1] > 0):
        return None
    kappa = s[0] / s[-1]
    if 16.0 * kappa * np.sqrt((m * n + n * (n + 1)) * UNIT_ROUNDOFF) > 1.0:
        return None
    return s


def _chol_lower(gram):
    """Lower Cholesky factor L of a Gram matrix (G = L L^T, LAPACK potrf); None if not SPD
    or not finite (entries near the float64 limit overflow in the Gram)."""
    if not np.all(np.isfinite(gram)):
        return None
    try:
        return np.linalg.cholesky(gram)
    except np.linalg.LinAlgError:
        return None


def eigvals(a: np.ndarray) -> np.ndarray:
    """Eigenvalues of a finite square float64 array (LAPACK ``geev``)."""
    return np.linalg.eigvals(a)
