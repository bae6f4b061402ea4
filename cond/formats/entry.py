"""What every reader hands out: one lazily loaded tensor at a time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np


@dataclass(frozen=True)
class TensorEntry:
    """A tensor found in an input, not yet read.

    Attributes
    ----------
    name : str
        Tensor name (safetensors key, npz key, or the file's stem).
    shape : tuple of int
        The stored shape.
    dtype : str
        The stored dtype as the format names it (``F32``, ``BF16``, ``float64``).
    source : str
        The file the tensor lives in (``-`` for standard input).
    unit_roundoff : float or None
        Unit roundoff of the stored dtype (half its machine epsilon), or None
        for a dtype that is not a float.
    skip_reason : str or None
        Why the tensor cannot be analysed (integer dtype, not a matrix); None
        when it can.
    load : callable
        ``load()`` returns the stored values widened exactly to float64, in the
        stored shape. An entry is read once: a writeable array that owns its
        data is the caller's to use as workspace.
    read_raw : callable or None
        ``read_raw()`` returns the stored bytes as they are (safetensors only),
        for byte-for-byte copies.
    columns : tuple of str or None
        Column names of a table (CSV / TSV header, Parquet schema), after ``--columns``.
    """

    name: str
    shape: tuple
    dtype: str
    source: str
    unit_roundoff: Optional[float]
    skip_reason: Optional[str] = None
    load: Callable[[], np.ndarray] = field(default=None, repr=False, compare=False)  # type: ignore[assignment]
    read_raw: Optional[Callable[[], bytes]] = field(default=None, repr=False, compare=False)
    columns: Optional[tuple] = None


def unit_roundoff(dtype) -> Optional[float]:
    """Half the machine epsilon of a float dtype (ml_dtypes ones included); None otherwise."""
    import ml_dtypes

    dtype = np.dtype(dtype)
    if dtype.kind == "f" or dtype.kind == "V" or dtype.name in _ML_FLOAT_NAMES:
        try:
            return float(ml_dtypes.finfo(dtype).eps) / 2.0
        except (ValueError, TypeError):
            return None
    return None


_ML_FLOAT_NAMES = {
    "bfloat16",
    "float8_e4m3fn",
    "float8_e5m2",
    "float8_e8m0fnu",
    "float8_e4m3",
    "float8_e3m4",
    "float8_e4m3fnuz",
    "float8_e5m2fnuz",
    "float8_e4m3b11fnuz",
}


def skip_reason_for_ndim(shape) -> Optional[str]:
    """Reason a tensor of this shape is not a matrix, or None when it can be analysed."""
    if len(shape) == 0:
        return "scalar (0-D), not a matrix"
    if len(shape) == 1:
        return "vector (1-D), not a matrix"
    return None
