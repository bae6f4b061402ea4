"""How ``cond compress`` stores a matrix or a factor: a float dtype, or int8 with a scale per row.

:class:`Storage` is the one place that knows what a storage dtype writes and what it
reads back: every error in the report is measured on ``Storage.round(x)``, which is
exactly what ``cond expand`` and ``cond.torch`` rebuild from the file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cond.formats.safetensors_file import _DTYPES, numpy_dtype
from cond.linalg.quantize import SCALE_BYTES, dequantize_rows, quantize_rows

INT8 = "I8"


def dtype_bytes(dtype: str, count: int) -> int:
    """Bytes of ``count`` values of a safetensors dtype."""
    return math.ceil(count * _DTYPES[dtype][0] / 8)


@dataclass(frozen=True)
class Storage:
    """A storage dtype (a safetensors name: ``F32``, ``BF16``, ``I8`` ...).

    ``I8`` stores each row as int8 with a float32 scale (``<key>.scale``).
    """

    dtype: str

    @property
    def scaled(self) -> bool:
        return self.dtype == INT8

    def store(self, x: np.ndarray):
        """(array to write, its per-row float32 scales or None). Raises ValueError on overflow."""
        x = np.asarray(x, dtype=np.float64)
        if self.scaled:
            return quantize_rows(x)
        with np.errstate(over="ignore"):
            stored = x.astype(numpy_dtype(self.dtype))
        if not np.all(np.isfinite(stored)):
            peak = float(np.max(np.abs(x)))
            limit = float(np.finfo(stored.dtype).max)
            raise ValueError(f"overflow {self.dtype} (largest entry {peak:.3g}, beyond {limit:.5g})")
        return stored, None

    def value(self, stored, scale=None) -> np.ndarray:
        """What a stored array stands for, in float64."""
        return dequantize_rows(stored, scale) if scale is not None else np.asarray(stored, dtype=np.float64)

    def round(self, x: np.ndarray) -> np.ndarray:
        """x as it reads back after storing (rows scaled for int8)."""
        return self.value(*self.store(x))

    def round_columns(self, x: np.ndarray) -> np.ndarray:
        """x as it reads back when its transpose is what is stored (int8 scales per column of x)."""
        return self.round(np.asarray(x).T).T if self.scaled else self.round(x)

    def nbytes(self, rows: int, cols: int) -> int:
        """Bytes of a rows x cols array in this storage (scales included)."""
        return dtype_bytes(self.dtype, rows * cols) + (rows * SCALE_BYTES if self.scaled else 0)

    def lowrank_bytes(self, m: int, n: int, r: int) -> int:
        """Bytes of the factors U (m x r) and V (r x n)."""
        return self.nbytes(m, r) + self.nbytes(r, n)
