"""GPTQ's inner loop over the columns of one block (Frantar et al., ICLR 2023, Algorithm 1).

:func:`cond.linalg.groupwise.gptq` sets each group's scale and zero point, then calls
:func:`quantize_columns` for the columns that share them; the kernel rounds column j,
divides its rounding error by U[j, j] and subtracts error times U[j, j:] from the
block's later columns (rows of the block in the outer loop, so memory is walked in
order).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from cond.kernels import JIT_OPTIONS


@njit(**JIT_OPTIONS)
def quantize_columns(block, u, scales, zeros, j0, j1, lo, hi, codes, errors):  # pragma: no cover - jitted
    """Round columns j0 .. j1 - 1 of ``block`` (m x B, float64, updated in place).

    ``scales`` and ``zeros`` (m,) float64 are the columns' group parameters; codes are clipped
    to [lo, hi]. ``codes`` and ``errors`` (m x B, float64) receive each column's codes and its
    scaled rounding error (w - q) / U[j, j].
    """
    m, width = block.shape
    for j in range(j0, j1):
        d = u[j, j]
        for i in range(m):
            x = block[i, j]
            q = np.rint(x / scales[i]) + zeros[i]
            if q < lo:
                q = lo
            elif q > hi:
                q = hi
            codes[i, j] = q
            e = (x - (q - zeros[i]) * scales[i]) / d
            errors[i, j] = e
            for k in range(j, width):
                block[i, k] -= e * u[j, k]
    return 0
