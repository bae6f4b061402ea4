"""Shared bases for a collection of low-rank matrices of one shape (the same module of several
LoRA adapters): dW_i ~ U C_i V^T with U (m x k) and V (n x k) shared and a small core
C_i = U^T dW_i V (k x k) per matrix (Brüel-Gabrielsson et al., "Compress then Serve",
ICML 2025, fit U and V jointly; cond takes them from the concatenated, norm-weighted
singular vectors, as its concatenated SVD does, and bounds every member's error).

For orthonormal U and V the error of each member is exact from the factors:
``||dW_i - U U^T dW_i V V^T||_F^2 = ||dW_i||_F^2 - ||U^T dW_i V||_F^2``, and it cannot grow
when U and V gain columns, so the smallest shared rank meeting every bound is found by
bisection.
"""

from __future__ import annotations

import numpy as np


def shared_bases(svds, norms):
    """Orthonormal U (m x p) and V (n x p) whose leading columns best capture every member's
    range, each member weighted by 1 / ||dW_i|| (so each one's *relative* error counts alike).

    Parameters
    ----------
    svds : list of FactoredSVD
        Each member's SVD (u: m x r_i, s, vt: r_i x n).
    norms : list of float
        ||dW_i||_F.
    """
    cols = np.hstack([f.u * (f.s / n) for f, n in zip(svds, norms)])
    rows = np.hstack([f.vt.T * (f.s / n) for f, n in zip(svds, norms)])
    u, su, _ = np.linalg.svd(cols, full_matrices=False)
    v, sv, _ = np.linalg.svd(rows, full_matrices=False)
    p = min(u.shape[1], v.shape[1])
    return u[:, :p], v[:, :p]


def projected_errors(svds, norms, u, v):
    """Each member's relative error sqrt(1 - ||U^T dW_i V||^2 / ||dW_i||^2) for orthonormal u, v."""
    out = []
    for f, n in zip(svds, norms):
        core = (u.T @ f.u) * f.s @ (f.vt @ v)
        out.append(float(np.sqrt(max(0.0, 1.0 - float(np.sum(core * core)) / (n * n)))))
    return out


def smallest_shared_rank(svds, norms, u, v, bound):
    """The smallest k with every member's projected error at most ``bound`` using the first k
    columns of u and v (bisection: the errors do not grow with k); None when even all fail."""
    lo, hi = 1, u.shape[1]
    if max(projected_errors(svds, norms, u, v)) > bound:
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if max(projected_errors(svds, norms, u[:, :mid], v[:, :mid])) <= bound:
            hi = mid
        else:
            lo = mid + 1
    return lo


def best_core(left, right, scale, u, v):
    """The least-squares core C minimising ||scale L R - U C V^T||_F for any full-rank u, v (stored
    bases, rounded, are only nearly orthonormal): C = U^+ (scale L R) (V^+)^T, from the factors."""
    pu = np.linalg.pinv(u)
    pv = np.linalg.pinv(v)
    return float(scale) * (pu @ left) @ (right @ pv.T)
