"""Slow, obviously correct versions of cond's kernels, used as references."""

import math

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


def frobenius(a):
    """||a||_F of the exact values: fsum of squares after an exact power-of-two scaling
    (no over- or underflow for entries near the float64 limits)."""
    a = np.asarray(a, dtype=np.float64)
    peak = float(np.max(np.abs(a))) if a.size else 0.0
    if peak == 0.0:
        return 0.0
    shift = -math.frexp(peak)[1]
    scaled = np.ldexp(a, shift)  # exact: a power of two
    return math.ldexp(math.sqrt(math.fsum((scaled * scaled).ravel())), -shift)


def effective_rank(s):
    """exp of the entropy of p_i = sigma_i / sum(sigma) over the positive sigma (Roy & Vetterli)."""
    s = np.asarray(s, dtype=np.float64)
    s = s[s > 0]
    p = s / s.sum()
    return float(np.exp(-np.sum(p * np.log(p))))


def hat_diagonal(a):
    """Leverage scores: the diagonal of the hat matrix, from LAPACK's SVD, at numpy's default rank."""
    u, s, _ = np.linalg.svd(a, full_matrices=False)
    rank = int(np.sum(s > max(a.shape) * np.finfo(float).eps * s[0]))
    return np.sum(u[:, :rank] ** 2, axis=1)


def lewis_fixed_point(a, w, p):
    """(a_i^T (A^T W^(1-2/p) A)^-1 a_i)^(p/2): Lewis weights are the w this maps to itself."""
    m = a.T @ (a * (w ** (1 - 2 / p))[:, None])
    return np.einsum("ij,jk,ik->i", a, np.linalg.inv(m), a) ** (p / 2)


def brute_sensitivities(a, p, angles=200_000):
    """sup over unit x in R^2 of |a_i^T x|^p / ||A x||_p^p on a fine grid (a lower estimate)."""
    t = np.linspace(0, np.pi, angles, endpoint=False)
    x = np.vstack([np.cos(t), np.sin(t)])
    ax = np.abs(a @ x) ** p
    return np.max(ax / ax.sum(axis=0), axis=1)


def belsley_kuh_welsch(x, scale=True, center=False):
    """BKW by the book (Belsley, Kuh & Welsch 1980, ch. 3) with numpy's SVD: (condition indexes
    ascending, proportions with one row per index in that order)."""
    z = np.array(x, dtype=np.float64)
    if center:
        z = z - z.mean(axis=0)
    if scale:
        z = z / np.sqrt(np.sum(z * z, axis=0))
    _, d, vt = np.linalg.svd(z, full_matrices=False)
    phi = np.array([[vt[k, j] ** 2 / d[k] ** 2 for k in range(len(d))] for j in range(z.shape[1])])
    pi = phi / phi.sum(axis=1, keepdims=True)
    eta = d[0] / d
    order = np.argsort(eta)
    return eta[order], pi.T[order]


def gptq_textbook(w, gram, quantize_column, group_params, group, damp=0.01, order=None, static=None):
    """GPTQ as Optimal Brain Quantization in a fixed order, with the inverse Hessian updated by
    Gaussian elimination after every column (Frantar et al. 2022/2023, eq. 2-3), no Cholesky, no blocks.

    ``quantize_column(x, s, z)`` rounds a column with its group's parameters; ``group_params(x)``
    gives (s, z) for an (m, g) group of current values; ``static`` (s, z) per group when the
    parameters are fixed beforehand (act-order). Returns the codes (m, n).
    """
    w = np.array(w, dtype=np.float64)
    m, n = w.shape
    h = np.array(gram, dtype=np.float64)
    dead = np.diag(h) <= 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h += damp * np.mean(np.diag(h)) * np.eye(n)
    hinv = np.linalg.inv(h)
    order = np.arange(n) if order is None else order
    codes = np.zeros((m, n))
    params = {} if static is None else {k: (static[0][:, k], static[1][:, k]) for k in range(n // group)}
    remaining = list(order)
    for col in order:
        k = col // group
        if static is None and col % group == 0:
            params[k] = group_params(w[:, col : col + group])
        s, z = params[k]
        q = quantize_column(w[:, col], s, z)
        codes[:, col] = q
        err = (w[:, col] - (q - z) * s) / hinv[col, col]
        remaining.remove(col)
        rest = np.array(remaining, dtype=int)
        if len(rest):
            w[:, rest] -= np.outer(err, hinv[col, rest])
        hinv = hinv - np.outer(hinv[:, col], hinv[col, :]) / hinv[col, col]
    return codes
