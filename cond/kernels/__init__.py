"""Private numba kernels: arrays and scalars in, arrays or scalars out.

Every kernel is ``@njit(cache=True)`` with the flags from :data:`JIT_OPTIONS`;
none draws random numbers. ``NUMBA_DISABLE_JIT=1`` runs them as plain Python,
and the test suite checks both ways.
"""

JIT_OPTIONS = dict(cache=True, nogil=True, fastmath=False)
