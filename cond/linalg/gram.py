"""The Gram matrix route, taken only with a certified error bound: singular values for
``cond inspect`` and the R factor of exact leverage scores for ``cond sample``.

For a tall X (m x n, m >= n; a wide matrix is transposed) one BLAS ``syrk``
forms G = X^T X and LAPACK's symmetric eigensolver gives its eigenvalues:
about m n^2 + 4/3 n^3 flops against 4 m n^2 for an SVD, and both calls release
the GIL (NumPy's matmul and ``eigvalsh``), so matrices run side by side.

The Gram matrix squares kappa, so the result is kept only where an
a-posteriori bound says it is good enough (DESIGN.md: a fast path is welcome
only with a known and reported bound). With u = eps / 2:

* forming G: G is summed from the Gram matrices of blocks of b rows, one after
  another. A block's entries are dot products of length b, correct in any
  summation order to ``gamma_b`` times the sum of the products' magnitudes
  (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., sec. 3.1),
  and adding the k blocks' results costs ``gamma_{k-1}`` more, so
  ``|fl(G) - G| <= gamma_t |X|^T |X|`` entrywise with ``t = b + k - 1`` terms
  (``gamma_t = t u / (1 - t u)``; one block of m rows would give t = m, and
  blocking makes the bound m / t times smaller for a quarter more time). By
  Cauchy-Schwarz entry (j, k) is at most ``gamma_t ||x_j|| ||x_k||``, so
  ``||dG||_2 <= ||dG||_F <= gamma_t ||X||_F^2``; products that underflow add at
  most ``m n 2**-1074``;
* the eigensolver: the computed eigenvalues are those of ``fl(G) + F`` with
  ``||F||_2 <= c u ||G||_2`` (Householder tridiagonalisation and QR; cond takes
  ``c = 2 n`` as the constant, as the SVD route takes ``max(m, n)``), plus a
  relative ``100 eps`` per eigenvalue for the tridiagonal QR's stopping rule,
  as for LAPACK's bidiagonal SVD;
* by Weyl, ``|lambda_i - sigma_i^2| <= delta_i`` with delta_i the sum of these;
  so sigma_i lies in ``[sqrt(lambda_i - delta_i), sqrt(lambda_i + delta_i)]`` and
  the reported ``sqrt(lambda_i)`` is within ``g_i`` of it (plus 2 eps sigma_i
  for the square root).

The result is accepted when every ``g_i <= GRAM_RTOL * sqrt(lambda_i)``: every
singular value, sigma_min included, and so kappa, is then certified to nine
significant digits (the SVD route gives about ``c eps kappa``). The bound on
sigma_min is about ``gamma_t stable_rank kappa^2 / 2`` relative, so well
conditioned tall matrices pass (all-MiniLM-L6-v2's, kappa 14 to 35; its
512 x 384 position embeddings, kappa 435, do not) and
ill-conditioned ones go on to CholeskyQR2 or ``gesdd``, which see the original
values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cond.linalg.r_factor import leaf_gram

EPS64 = float(np.finfo(np.float64).eps)
GRAM_RTOL = 1e-9  # accepted when every sigma_i is certified to this relative accuracy
GRAM_BLOCK_ROWS = 256  # inspect: rows per block of the Gram sum (n rows for n < 1024)
GRAM_ASPECT = 1.25  # Gram + eigvalsh beats gesdd from about this aspect ratio on
_SAFE_RANGE = (2.0**-300, 2.0**300)  # ||X||_F where no entry of G over- or underflows badly


@dataclass(frozen=True)
class GramSpectrum:
    """Singular values from the Gram matrix with their certified bound.

    Attributes
    ----------
    values : ndarray of shape (min(m, n),)
        Singular values, descending.
    bound : float
        Every value is within ``bound`` of the exact singular value (the largest g_i).
    gram : ndarray of shape (min(m, n), min(m, n))
        The Gram matrix (kept so that a declined result can start CholeskyQR2 from it).
    accepted : bool
        Every ``g_i <= GRAM_RTOL * values[i]``.
    """

    values: np.ndarray
    bound: float
    gram: np.ndarray
    accepted: bool


def gram_eligible(shape, frobenius_norm) -> bool:
    """Whether the Gram route is worth trying: clearly non-square, no entry of G can overflow.

    Parameters
    ----------
    shape : tuple of int
        (m, n) of the matrix.
    frobenius_norm : float
        ||X||_F.
    """
    m, n = shape
    return max(m, n) >= GRAM_ASPECT * min(m, n) and _SAFE_RANGE[0] < float(frobenius_norm) < _SAFE_RANGE[1]


def gram_spectrum(a, frobenius_norm, rtol=GRAM_RTOL) -> GramSpectrum:
    """Singular values of ``a`` from the eigenvalues of its Gram matrix, with their bound.

    Parameters
    ----------
    a : ndarray of shape (m, n)
        Finite float64 matrix; only read.
    frobenius_norm : float
        ||a||_F, computed by a float64 dot product (relative error at most (m n + 2) eps).
    rtol : float
        Acceptance: every value certified to within ``rtol`` of itself, relative.

    Returns
    -------
    GramSpectrum
    """
    x = a if a.shape[0] >= a.shape[1] else a.T
    m, n = x.shape
    fine = GRAM_BLOCK_ROWS + -(-m // GRAM_BLOCK_ROWS) - 1  # the term count of blocks of 256 rows
    # Blocks of n rows keep the sums of n x n results few (each a pass over memory) and the
    # syrk calls efficient, but their term count grows with n. From n = 1024 on, blocks of
    # 256 rows from the start (4096 x 11008: 5.8 s against 2.8 s, but a bound 14 times
    # smaller). Below, where the bound misses by less than the factor that 256-row blocks
    # would gain, the Gram is formed again with them.
    result = _attempt(x, GRAM_BLOCK_ROWS if n >= 1024 else max(GRAM_BLOCK_ROWS, n), frobenius_norm, rtol)
    if not result[0].accepted and result[1] > 2 * fine and result[2] <= result[1] / fine:
        result = _attempt(x, GRAM_BLOCK_ROWS, frobenius_norm, rtol)
    return result[0]


def _attempt(x, block_rows, frobenius_norm, rtol):
    """(GramSpectrum, term count, how far the worst bound is over rtol: max g_i / (rtol sigma_i))."""
    gram, terms = leaf_gram(x, block_rows)
    lam = np.linalg.eigvalsh(gram)[::-1]
    values = np.sqrt(np.maximum(lam, 0.0))
    bounds = eigenvalue_bounds(lam, x.shape, terms, float(frobenius_norm))
    with np.errstate(divide="ignore", invalid="ignore"):
        over = float(np.max(bounds / (rtol * values))) if lam[-1] > 0 else np.inf
    accepted = bool(lam[-1] > 0 and np.all(bounds <= rtol * values))
    return GramSpectrum(values, float(np.max(bounds)), gram, accepted), terms, over


def eigenvalue_bounds(lam, shape, terms, frob):
    """Bounds g_i on |sqrt(lambda_i) - sigma_i| for the computed eigenvalues of a formed Gram matrix.

    Parameters
    ----------
    lam : ndarray of shape (n,)
        Computed eigenvalues of fl(X^T X), descending.
    shape : tuple of int
        (m, n) of X.
    terms : int
        The term count t of the Gram's forming error (:func:`leaf_gram`).
    frob : float
        ||X||_F from a float64 dot product.

    Returns
    -------
    ndarray of shape (n,)
    """
    m, n = shape
    u = EPS64 / 2
    f2 = frob * frob * (1.0 + (m * n + 4) * EPS64)  # an upper bound on ||X||_F^2
    gamma = terms * u / (1.0 - terms * u)
    formed = gamma * f2 + m * n * 2.0**-1074
    solver = 2 * n * u * (abs(lam[0]) + formed)
    delta = formed + solver + 100 * EPS64 * np.abs(lam)
    sigma = np.sqrt(np.maximum(lam, 0.0))
    lower = np.sqrt(np.maximum(lam - delta, 0.0))
    upper = np.sqrt(lam + delta)
    return np.maximum(sigma - lower, upper - sigma) + 2 * EPS64 * sigma
