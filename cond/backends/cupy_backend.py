"""The GPU backend: float64 singular values with CuPy (cuSOLVER ``gesvd``).

Imported only when ``--device cuda`` is asked for or a CuPy array is passed in.
Accuracy policy (DESIGN.md): singular values are computed in float64 whatever
the stored dtype, so that kappa and its status mean what they mean on the CPU;
the results come back as NumPy arrays.
"""

from __future__ import annotations

import importlib.util

import numpy as np

INSTALL = "pip install 'cond[gpu]' (CuPy for CUDA 12; 'cond[gpu-cuda13]' for CUDA 13)"


def require_gpu():
    """Raise a one-line UsageError unless CuPy imports and sees a CUDA device."""
    from cond.errors import UsageError

    if importlib.util.find_spec("cupy") is None:
        raise UsageError(f"`--device cuda` needs CuPy: {INSTALL}")
    try:
        import cupy

        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001 - CUDA raises its own types when no driver is there
        raise UsageError(
            f"`--device cuda`: CuPy found no usable GPU ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no detail'})"
        ) from None
    if count < 1:
        raise UsageError("`--device cuda`: CuPy found no GPU")


def to_device(a: np.ndarray):
    """A float64 CuPy copy of a host array."""
    import cupy

    return cupy.asarray(a, dtype=cupy.float64)


def svdvals(a, overwrite_a: bool = False) -> np.ndarray:
    """Singular values of a finite 2-D float64 CuPy array, descending, as a NumPy array."""
    import cupy

    if a.dtype != cupy.float64:
        raise TypeError(f"`a` must be float64 on the GPU; got {a.dtype}")
    s = cupy.linalg.svd(a if a.shape[0] >= a.shape[1] else a.T, compute_uv=False)
    return cupy.asnumpy(s)


def eigvals(a) -> np.ndarray:
    """Eigenvalues of a square float64 array (on the host: CuPy has no general eigensolver)."""
    import cupy
    import scipy.linalg

    return scipy.linalg.eigvals(cupy.asnumpy(a), check_finite=False)
