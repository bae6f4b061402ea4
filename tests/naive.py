"""Slow, obviously correct versions of cond's kernels, used as references."""

import numpy as np


def powerlaw_ks_scan(x, min_tail):
    """Per candidate xmin = x[k] (x sorted ascending): Clauset's alpha and the KS distance."""
    n = len(x)
    alphas = np.full(n, np.nan)
    distances = np.full(n, np.nan)
    for k in range(n - min_tail + 1):
        if k > 0 and x[k] == x[k - 1]:
            continue
        tail = x[k:]
        s = np.sum(np.log(tail / x[k]))
        if s <= 0:
            continue
        a = 1 + len(tail) / s
        fit = 1 - (tail / x[k]) ** (1 - a)
        t = len(tail)
        ecdf_hi = np.arange(1, t + 1) / t
        ecdf_lo = np.arange(0, t) / t
        alphas[k] = a
        distances[k] = max(np.max(ecdf_hi - fit), np.max(fit - ecdf_lo), 0.0)
    return alphas, distances
