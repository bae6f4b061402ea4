"""Collinearity diagnostics of a design matrix: Belsley-Kuh-Welsch and variance inflation.

Belsley, Kuh & Welsch, *Regression Diagnostics* (1980), ch. 3 (R's ``perturb::colldiag``,
SAS ``COLLIN``): scale every column of X to unit length (and, only if asked, centre it
first; BKW recommend the uncentred design with its intercept), take the SVD
X = U D V^T, and report

- condition indexes eta_k = d_1 / d_k (one per singular value, largest last);
- variance-decomposition proportions pi_kj = (v_jk^2 / d_k^2) / sum_l (v_jl^2 / d_l^2):
  the share of var(b_j) that comes with the k-th singular value (each column sums to 1).

A near-dependency is a condition index above a threshold (BKW suggest 30) with two or
more variables whose proportions on it exceed 0.5.

Variance inflation factors (statsmodels' ``variance_inflation_factor``, whose default since
0.15 standardizes first): every non-constant column is centred and scaled to unit standard
deviation, then each column is regressed on all the others, VIF_j = 1 / (1 - R_j^2), with
R_j^2 centred when the other columns hold a constant and uncentred otherwise (as
statsmodels' OLS does). The intercept's own VIF is then 1 (a constant is orthogonal to
centred columns); the others are the classic ones, unchanged by the standardization.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg


@dataclass(frozen=True)
class Collinearity:
    """The BKW diagnostics of one design.

    Attributes
    ----------
    condition_indexes : ndarray of shape (k,)
        eta_k = d_1 / d_k, ascending (inf for a zero singular value).
    proportions : ndarray of shape (k, n)
        Row k: the variance-decomposition proportions of every column on eta_k; each
        column sums to 1.
    singular_values : ndarray of shape (k,)
        Of the scaled (and centred) design, descending.
    vif : ndarray of shape (n,)
        Variance inflation factors of the design as given (inf for an exact dependency).
    """

    condition_indexes: np.ndarray
    proportions: np.ndarray
    singular_values: np.ndarray
    vif: np.ndarray


def collinearity(x, *, scale=True, center=False) -> Collinearity:
    """Belsley-Kuh-Welsch condition indexes and proportions, and the VIFs, of a design.

    Parameters
    ----------
    x : ndarray of shape (m, n)
        The design, m >= n >= 1, finite; with its intercept column if the model has one.
    scale : bool
        Scale each column to unit Euclidean length (BKW's recommendation).
    center : bool
        Subtract each column's mean first (``colldiag(center=TRUE)``; not recommended
        with an intercept, whose column it would zero).

    Returns
    -------
    Collinearity

    Raises
    ------
    ValueError
        For fewer rows than columns, a non-finite value, or a column that is zero (after
        centring) when ``scale`` asks to divide by its length.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < x.shape[1] or x.shape[1] < 1:
        raise ValueError(f"the design must have at least as many rows as columns (and one column); got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("the design holds NaN or Inf")
    return _collinearity(x, bool(scale), bool(center))


def _collinearity(x, scale, center):
    z = x - x.mean(axis=0) if center else x.copy()
    if scale:
        lengths = np.linalg.norm(z, axis=0)
        if np.any(lengths == 0):
            j = int(np.flatnonzero(lengths == 0)[0])
            raise ValueError(
                f"column {j} is zero{' after centring' if center else ''}: it cannot be scaled to unit length"
            )
        z /= lengths
    _, d, vt = scipy.linalg.svd(z, full_matrices=False, check_finite=False, lapack_driver="gesdd")
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.where(d > 0, d[0] / d, np.inf)
        phi = vt.T**2 / d**2  # (n, k): phi_jk = v_jk^2 / d_k^2
        pi = phi / phi.sum(axis=1, keepdims=True)
    return Collinearity(eta, pi.T, d, variance_inflation_factors(x))


def variance_inflation_factors(x) -> np.ndarray:
    """VIF_j = 1 / (1 - R_j^2) from regressing column j on the others (least squares).

    Parameters
    ----------
    x : ndarray of shape (m, n)

    Returns
    -------
    ndarray of shape (n,)
        inf where column j is an exact combination of the others; for a single column, 1.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[1]
    varying = np.ptp(x, axis=0) > 0  # exactly constant columns (an intercept) stay as they are
    x = x.copy()
    x[:, varying] = (x[:, varying] - x[:, varying].mean(axis=0)) / x[:, varying].std(axis=0)
    out = np.ones(n)
    for j in range(n):
        others = np.delete(x, j, axis=1)
        if others.shape[1] == 0:
            continue
        y = x[:, j]
        beta = scipy.linalg.lstsq(others, y, check_finite=False, lapack_driver="gelsd")[0]
        ssr = float(np.sum((y - others @ beta) ** 2))
        constant = np.any((np.ptp(others, axis=0) == 0) & np.any(others != 0, axis=0))
        tss = float(np.sum((y - y.mean()) ** 2)) if constant else float(np.sum(y * y))
        out[j] = np.inf if ssr == 0 else tss / ssr
    return out


def near_dependencies(diagnostics: Collinearity, threshold=30.0, proportion=0.5):
    """The near-dependencies: each condition index above ``threshold`` with the columns whose
    proportions on it exceed ``proportion``.

    Parameters
    ----------
    diagnostics : Collinearity
    threshold : float
    proportion : float

    Returns
    -------
    list of (int, float, list of int)
        (row k of ``proportions``, eta_k, the column indices), largest condition index first.
    """
    found = []
    for k in np.argsort(-diagnostics.condition_indexes):
        eta = float(diagnostics.condition_indexes[k])
        if not eta > threshold:
            break
        cols = [int(j) for j in np.flatnonzero(diagnostics.proportions[k] > proportion)]
        found.append((int(k), eta, cols))
    return found
