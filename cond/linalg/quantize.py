"""Storage of a matrix at a narrower precision: float rounding, or int8 with one scale per row.

int8 (``I8``): row i is stored as q_i (int8 in [-127, 127]) and a float32 scale
s_i, and read back as s_i * q_i. The scale is the row's absmax / 127 times a
clip ratio c: c = 1 is absmax scaling (no entry clipped); a smaller c clips the
largest entries but rounds the rest finer, and is taken per row when it gives
a smaller squared error (the grid ``CLIP_RATIOS`` is searched exhaustively, so
the result is never worse than absmax). The error is then measured on what is
written, like every rounding in cond.
"""

from __future__ import annotations

import numpy as np

INT8_LEVEL = 127  # symmetric: -128 is never used, so that -q is representable
CLIP_RATIOS = (1.0, 0.99, 0.98, 0.96, 0.94, 0.92, 0.9, 0.87, 0.84, 0.8, 0.75, 0.7, 0.6, 0.5)
SCALE_BYTES = 4  # float32 per row


def quantize_rows(x: np.ndarray):
    """int8 rows with a float32 scale each, the scale chosen per row (absmax or a clip ratio).

    Parameters
    ----------
    x : ndarray of shape (m, n)
        Finite values.

    Returns
    -------
    q : ndarray of shape (m, n), int8
    scale : ndarray of shape (m,), float32
        Row i is read back as ``scale[i] * q[i]``; 0 for a zero row.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"`x` must be 2-D; got {x.ndim}-D")
    peak = np.max(np.abs(x), axis=1) if x.shape[1] else np.zeros(x.shape[0])
    with np.errstate(over="ignore"):
        top = (peak / INT8_LEVEL).astype(np.float32)
    if not np.all(np.isfinite(top)):
        raise ValueError(f"overflow the float32 scales of int8 (largest entry {peak.max():.3g})")
    best_q = np.zeros(x.shape, dtype=np.int8)
    best_scale = np.zeros(x.shape[0], dtype=np.float32)
    best_err = np.full(x.shape[0], np.inf)
    for ratio in CLIP_RATIOS:
        scale = (peak * ratio / INT8_LEVEL).astype(np.float32)
        s64 = scale.astype(np.float64)
        safe = np.where(s64 > 0, s64, 1.0)
        q = np.clip(np.rint(x / safe[:, None]), -INT8_LEVEL, INT8_LEVEL)
        err = np.sum((q * s64[:, None] - x) ** 2, axis=1)
        better = err < best_err
        best_err[better] = err[better]
        best_scale[better] = scale[better]
        best_q[better] = q[better].astype(np.int8)
    return best_q, best_scale


def dequantize_rows(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``scale[i] * q[i]`` in float64: what an int8 matrix stands for.

    Parameters
    ----------
    q : ndarray of shape (m, n), int8
    scale : ndarray of shape (m,)

    Returns
    -------
    ndarray of shape (m, n), float64
    """
    return np.asarray(q, dtype=np.float64) * np.asarray(scale, dtype=np.float64)[:, None]
