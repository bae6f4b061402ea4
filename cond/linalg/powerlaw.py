"""Power-law fit of a spectrum's tail: Clauset, Shalizi & Newman (SIAM Review 2009).

The continuous MLE alpha = 1 + n / sum(ln(x_i / xmin)) over the tail x >= xmin,
with xmin chosen to minimise the Kolmogorov-Smirnov distance between the tail's
empirical CDF and the fitted one (their section 3.3). Standard error of alpha:
(alpha - 1) / sqrt(n_tail) (their eq. 3.2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_TAIL = 10


@dataclass(frozen=True)
class PowerLawFit:
    """A fitted tail: exponent, its standard error, xmin, KS distance, tail size."""

    alpha: float
    sigma: float
    xmin: float
    ks_distance: float
    n_tail: int


def fit_powerlaw(samples, *, min_tail: int = MIN_TAIL):
    """Fit p(x) ~ x**(-alpha) for x >= xmin to positive samples.

    Parameters
    ----------
    samples : array_like of shape (n,)
        Samples; values <= 0 or not finite are dropped.
    min_tail : int, default 10
        Smallest tail considered for xmin (small tails fit noise).

    Returns
    -------
    PowerLawFit or None
        None when fewer than ``min_tail`` positive samples remain or they are all equal.
    """
    if int(min_tail) < 2:
        raise ValueError(f"`min_tail` must be an integer >= 2; got {min_tail}")
    x = np.asarray(samples, dtype=np.float64).ravel()
    x = np.sort(x[np.isfinite(x) & (x > 0)])
    if x.size < min_tail:
        return None
    alphas, distances = ks_scan(x, int(min_tail))
    if np.all(np.isnan(distances)):
        return None
    k = int(np.nanargmin(distances))
    n_tail = x.size - k
    alpha = float(alphas[k])
    return PowerLawFit(alpha, float((alpha - 1.0) / np.sqrt(n_tail)), float(x[k]), float(distances[k]), n_tail)


def ks_scan(x, min_tail, chunk_entries=1 << 22):
    """Clauset's MLE alpha and KS distance for every distinct candidate xmin.

    Vectorised over (candidate, tail value) pairs in chunks of about ``chunk_entries``
    (O(n^2) work, O(chunk_entries) memory). NumPy only: loading a compiled kernel would
    cost a process about 0.6 s (numba's import and cache), more than the scan itself for
    any spectrum up to a few thousand values.

    Parameters
    ----------
    x : ndarray of shape (n,)
        Positive samples sorted ascending.
    min_tail : int
        Smallest tail size considered.

    Returns
    -------
    alphas, distances : ndarray of shape (n,)
        For candidate ``x[k]``: alpha_k = 1 + t / sum(log(x[k:] / x[k])) with t = n - k,
        and the two-sided KS distance between the empirical CDF of the tail and
        1 - (x / x[k])**(1 - alpha_k). NaN where ``x[k]`` repeats its predecessor, the
        tail is shorter than ``min_tail``, or all tail values are equal.
    """
    n = x.shape[0]
    logx = np.log(x)
    suffix = np.cumsum(logx[::-1])[::-1]  # suffix[k] = sum(logx[k:]), summed from the end
    k = np.arange(n)
    t = n - k
    with np.errstate(divide="ignore", invalid="ignore"):
        s = suffix - t * logx
        alphas = 1.0 + t / s
    fresh = np.ones(n, dtype=bool)
    fresh[1:] = x[1:] != x[:-1]
    valid = (t >= min_tail) & fresh & (s > 0)
    alphas = np.where(valid, alphas, np.nan)
    distances = np.full(n, np.nan)
    ks = np.flatnonzero(valid)
    step = max(1, int(chunk_entries) // max(n, 1))
    j = np.arange(n)
    for first in range(0, len(ks), step):
        rows = ks[first : first + step]
        rel = j[None, :] - rows[:, None]  # the tail index j - k, negative before the tail
        tails = t[rows][:, None]
        with np.errstate(over="ignore", invalid="ignore"):
            fit = 1.0 - np.exp((1.0 - alphas[rows])[:, None] * (logx[None, :] - logx[rows][:, None]))
            gap = np.maximum(fit - rel / tails, (rel + 1) / tails - fit)
        gap[rel < 0] = 0.0
        distances[rows] = np.max(gap, axis=1, initial=0.0)
    return alphas, distances
