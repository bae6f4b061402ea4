"""The SVD of a matrix held as factors, dW = s L R (L: m x r, R: r x n), without forming it.

With thin QRs L = Q_L R_L and R^T = Q_R R_R, dW = Q_L (s R_L R_R^T) Q_R^T, so the SVD of
the r x r core C = s R_L R_R^T = U_c S V_c^T gives dW = (Q_L U_c) S (Q_R V_c)^T: the
singular values of dW and its singular vectors in O((m + n) r^2) work, never the m n of
the product (DESIGN.md, "LoRA adapters and fine-tune deltas"). Backward stable in the
factors: each value is within about ``c eps ||L|| ||R|| |s|`` of the product's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FactoredSVD:
    """dW = u @ diag(s) @ vt with u (m x k), s (k,) descending, vt (k x n), k = min(r, m, n)."""

    u: np.ndarray
    s: np.ndarray
    vt: np.ndarray


def factored_svd(left, right, scale=1.0, compute_uv=True):
    """The SVD of ``scale * left @ right`` from the factors (see the module's docstring).

    Parameters
    ----------
    left : ndarray of shape (m, r)
    right : ndarray of shape (r, n)
    scale : float
    compute_uv : bool
        False returns only the singular values, shape (k,).

    Returns
    -------
    FactoredSVD or ndarray
    """
    left = np.asarray(left, dtype=np.float64)
    right = np.asarray(right, dtype=np.float64)
    if left.ndim != 2 or right.ndim != 2 or left.shape[1] != right.shape[0]:
        raise ValueError(f"factors must be m x r and r x n; got {left.shape} and {right.shape}")
    q_l, r_l = np.linalg.qr(left)
    q_r, r_r = np.linalg.qr(right.T)
    core = float(scale) * (r_l @ r_r.T)
    if not compute_uv:
        return np.linalg.svd(core, compute_uv=False)
    u_c, s, vt_c = np.linalg.svd(core, full_matrices=False)
    return FactoredSVD(q_l @ u_c, s, vt_c @ q_r.T)
