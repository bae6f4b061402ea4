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
        from cond.errors import UsageError

        raise UsageError("CuPy arrays are not supported yet; pass a NumPy array (cupy.asnumpy)")
    from cond.backends import numpy_backend

    return numpy_backend
