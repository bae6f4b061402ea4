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
    from cond.kernels.powerlaw_scan import powerlaw_ks_scan

    alphas, distances = powerlaw_ks_scan(x, int(min_tail))
    if np.all(np.isnan(distances)):
        return None
    k = int(np.nanargmin(distances))
    n_tail = x.size - k
    alpha = float(alphas[k])
    return PowerLawFit(alpha, float((alpha - 1.0) / np.sqrt(n_tail)), float(x[k]), float(distances[k]), n_tail)
