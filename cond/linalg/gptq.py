"""GPTQ (Frantar, Ashkboos, Hoefler, Alistarh, ICLR 2023, Algorithm 1): with the
layer's input Gram H = X^T X plus damping ``damp * mean(diag H)``, the columns are
quantized in order; each column's rounding error, divided by the diagonal of the
upper Cholesky factor U of H^-1, is spread over the columns not yet quantized
with U's row (the optimal update of Optimal Brain Surgeon, in the Cholesky form);
the updates are applied lazily in blocks of ``BLOCK`` columns. A group's scale and
zero point are set from the current (updated) values when its first column is
reached; with ``act_order`` the columns go by decreasing diag(H) and, so that the
groups stay contiguous in storage, every group's parameters are set before the
loop from the original values (AutoGPTQ's ``static_groups``). Columns whose input
is always zero (diag H = 0) are quantized as zero.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from cond.linalg.groupwise import GroupCodes, GroupSpec, _check, group_params

BLOCK = 128  # GPTQ's lazy-update block (a multiple of every group size)
DAMP = 0.01  # GPTQ's default damping, relative to the mean diagonal of H


def inverse_hessian_factor(gram: np.ndarray, damp: float = DAMP):
    """GPTQ's U: the upper Cholesky factor of (H + damp mean(diag H) I)^-1, and the dead columns.

    Parameters
    ----------
    gram : ndarray of shape (n, n)
        H = X^T X, symmetric positive semidefinite.
    damp : float
        Relative damping (GPTQ's ``percdamp``), > 0.

    Returns
    -------
    U : ndarray of shape (n, n), upper triangular
    dead : ndarray of shape (n,), bool
        Columns whose input is always zero (diag H = 0): quantized as zero.
    """
    h = np.array(gram, dtype=np.float64)
    dead = np.diag(h) <= 0
    h[dead, dead] = 1.0
    h[np.diag_indices_from(h)] += damp * float(np.mean(np.diag(h)))
    lower = np.linalg.cholesky(h)
    inverse = scipy.linalg.cho_solve((lower, True), np.eye(len(h)), check_finite=False)
    return scipy.linalg.cholesky((inverse + inverse.T) / 2, lower=False, check_finite=False), dead


def gptq(
    w: np.ndarray, gram: np.ndarray, spec: GroupSpec, *, damp: float = DAMP, act_order: bool = False, factor=None
) -> GroupCodes:
    """GPTQ rounding of W (m x n) against the input Gram H (n x n) into group-wise codes.

    Parameters
    ----------
    w : ndarray of shape (m, n), finite; ``spec.group`` divides n
    gram : ndarray of shape (n, n)
        The layer's input Gram X^T X.
    spec : GroupSpec
    damp : float
        Damping relative to the mean diagonal of H (GPTQ's 0.01).
    act_order : bool
        Quantize columns by decreasing diag(H); group parameters then come from the
        original values (static groups).
    factor : tuple, optional
        :func:`hessian_factor` of (gram, damp, act_order), when several forms of one matrix
        share it (it costs more than the loop).

    Returns
    -------
    GroupCodes
        Minimises ||(W - W_hat) X^T||_F greedily, column by column (Frantar et al. 2023).
    """
    w = _check(w, spec)
    m, n = w.shape
    gram = np.asarray(gram, dtype=np.float64)
    if gram.shape != (n, n):
        raise ValueError(f"`gram` must be {n}x{n} for a matrix of {n} columns; got {list(gram.shape)}")
    if not damp > 0:
        raise ValueError(f"`damp` must be positive; got {damp}")
    order, upper, dead = factor if factor is not None else hessian_factor(gram, damp, act_order)
    work = w.copy()
    work[:, dead] = 0.0
    g = spec.group
    groups = n // g
    scales = np.ones((m, groups), dtype=np.float16)
    zeros = np.zeros((m, groups))
    if act_order:
        s_all, z_all = group_params(work.reshape(m, groups, g), spec)
        scales[:], zeros[:] = s_all, z_all
        work = work[:, order]
    from cond.kernels.gptq import quantize_columns

    lo, hi = float(1 if spec.symmetric else 0), float(spec.top)
    codes = np.zeros((m, n), dtype=np.uint8)
    for i1 in range(0, n, BLOCK):
        i2 = min(i1 + BLOCK, n)
        cols = order[i1:i2]
        block = np.ascontiguousarray(work[:, i1:i2])
        u = np.ascontiguousarray(upper[i1:i2, i1:i2])
        got = np.zeros_like(block)
        errors = np.zeros_like(block)
        if act_order:  # static groups: every column's parameters known, one call for the block
            for j in range(i2 - i1):
                _column(block, u, scales, zeros, cols[j] // g, j, j + 1, lo, hi, got, errors, quantize_columns)
        else:  # groups are contiguous and aligned with the block: set each from the current values
            for j in range(0, i2 - i1, g):
                k = cols[j] // g
                s, z = group_params(block[:, j : j + g][:, None, :], spec)
                scales[:, k], zeros[:, k] = s[:, 0], z[:, 0]
                _column(block, u, scales, zeros, k, j, j + g, lo, hi, got, errors, quantize_columns)
        codes[:, cols] = got.astype(np.uint8)
        work[:, i2:] -= errors @ upper[i1:i2, i2:]
    return GroupCodes(spec, codes, scales, None if spec.symmetric else zeros.astype(np.uint8))


def _column(block, u, scales, zeros, k, j0, j1, lo, hi, got, errors, kernel):
    kernel(
        block,
        u,
        scales[:, k].astype(np.float64),
        np.ascontiguousarray(zeros[:, k], dtype=np.float64),
        j0,
        j1,
        lo,
        hi,
        got,
        errors,
    )


def hessian_factor(gram: np.ndarray, damp: float = DAMP, act_order: bool = False):
    """(column order, U, dead columns) for :func:`gptq`: U from :func:`inverse_hessian_factor` of H
    with its rows and columns in the order the columns are quantized."""
    gram = np.asarray(gram, dtype=np.float64)
    if not act_order:
        upper, dead = inverse_hessian_factor(gram, damp)
        return np.arange(len(gram)), upper, dead
    dead = np.diag(gram) <= 0
    order = np.argsort(-np.diag(gram), kind="stable")
    h = np.array(gram)
    h[dead, dead] = 1.0
    return order, inverse_hessian_factor(h[np.ix_(order, order)], damp)[0], dead
