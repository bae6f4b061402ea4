"""A stand-in for CuPy on machines without a GPU: NumPy behind CuPy's names.

Only for testing the plumbing of ``--device cuda`` (device checks, the copy to the
device, the backend following the array, the copy back). Like CuPy, its arrays
refuse implicit conversion to NumPy, so a code path that forgets ``.get()`` /
``cupy.asnumpy`` fails here as it would on a GPU. Nothing here says anything
about GPU numerics: benchmarks/gpu_check.py runs the real thing.
"""

import importlib.machinery
import sys
import types

import numpy as np


class ndarray:  # noqa: N801 - CuPy's name
    def __init__(self, data):
        self._data = np.asarray(data)

    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed (fake CuPy)")

    shape = property(lambda self: self._data.shape)
    dtype = property(lambda self: self._data.dtype)
    T = property(lambda self: ndarray(self._data.T))

    def get(self):
        return self._data.copy()


def install():
    """Put the fake module in ``sys.modules['cupy']``."""
    module = types.ModuleType("cupy")
    module.__spec__ = importlib.machinery.ModuleSpec("cupy", None)
    module.__version__ = "fake"
    module.ndarray = ndarray
    module.float64 = np.float64
    module.float32 = np.float32
    module.asarray = lambda a, dtype=None: ndarray(np.array(a, dtype=dtype))
    module.asnumpy = lambda a: a.get()
    module.linalg = types.SimpleNamespace(
        svd=lambda a, compute_uv=True: ndarray(np.linalg.svd(a._data, compute_uv=compute_uv))
    )
    module.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 1))
    sys.modules["cupy"] = module
    return module
