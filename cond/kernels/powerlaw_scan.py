"""Kolmogorov-Smirnov scan over candidate xmin for a continuous power law."""

from __future__ import annotations

import numpy as np
from numba import njit

from cond.kernels import JIT_OPTIONS


@njit(**JIT_OPTIONS)
def powerlaw_ks_scan(x, min_tail):
    """Clauset's MLE alpha and KS distance for every distinct candidate xmin.

    Parameters
    ----------
    x : ndarray of shape (n,)
        Positive samples sorted ascending.
    min_tail : int
        Smallest tail size considered.

    Returns
    -------
    alphas, distances : ndarray of shape (n,)
        For candidate ``x[k]``: alpha_k = 1 + t / sum(log(x[k:] / x[k])) with
        t = n - k, and the two-sided KS distance between the empirical CDF of
        the tail and 1 - (x / x[k])**(1 - alpha_k). NaN where ``x[k]`` repeats
        its predecessor, the tail is shorter than ``min_tail``, or all tail
        values are equal.
    """
    n = x.shape[0]
    logx = np.log(x)
    suffix = np.zeros(n + 1)
    for i in range(n - 1, -1, -1):
        suffix[i] = suffix[i + 1] + logx[i]
    alphas = np.full(n, np.nan)
    distances = np.full(n, np.nan)
    for k in range(n):
        t = n - k
        if t < min_tail:
            break
        if k > 0 and x[k] == x[k - 1]:
            continue
        s = suffix[k] - t * logx[k]
        if s <= 0.0:
            continue
        a = 1.0 + t / s
        d = 0.0
        for j in range(t):
            fit = 1.0 - np.exp((1.0 - a) * (logx[k + j] - logx[k]))
            lo = fit - j / t
            hi = (j + 1) / t - fit
            if lo > d:
                d = lo
            if hi > d:
                d = hi
        alphas[k] = a
        distances[k] = d
    return alphas, distances
