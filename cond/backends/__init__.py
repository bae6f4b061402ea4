"""Where arrays live. The backend follows the array: there is no global backend.

CuPy is recognised through ``sys.modules`` without importing it, so that
``import cond`` never pulls in a GPU stack (array-api-compat does the same).
"""

from __future__ import annotations

import sys


def is_cupy_array(x) -> bool:
    """True when ``x`` is a CuPy array (CuPy already imported by someone else)."""
    cupy = sys.modules.get("cupy")
    return cupy is not None and isinstance(x, cupy.ndarray)


def backend_of(x):
    """The backend module that computes on ``x``'s device."""
    if is_cupy_array(x):
        from cond.backends import cupy_backend

        return cupy_backend
    from cond.backends import numpy_backend

    return numpy_backend


def array_module(device):
    """The array module of ``device``: numpy for "cpu", cupy for "cuda" (checked by :func:`check_device`)."""
    if device == "cuda":
        import cupy

        return cupy
    import numpy

    return numpy


def check_device(device) -> str:
    """``cpu``, or ``cuda`` once CuPy and a GPU are known to be there (one-line error otherwise).

    CuPy is found with ``importlib.util.find_spec`` before anything imports it.
    """
    if device not in ("cpu", "cuda"):
        from cond.errors import UsageError

        raise UsageError(f"`--device` must be cpu or cuda; got {device!r}")
    if device == "cuda":
        from cond.backends.cupy_backend import require_gpu

        require_gpu()
    return device
