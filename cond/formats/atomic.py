"""Atomic writers: write to a temporary file beside the target, then rename over it.

A reader never sees a half-written file, a failure leaves nothing behind, and
an input is never overwritten.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

from cond.errors import UsageError


@contextlib.contextmanager
def atomic_output(path, *, inputs=(), force=True):
    """Yield a temporary path; on success it is renamed to ``path``.

    Raises
    ------
    UsageError
        When ``path`` is one of ``inputs``, or exists and ``force`` is false.
    """
    path = os.fspath(path)
    target = os.path.realpath(path)
    for source in inputs:
        if source not in (None, "-") and os.path.exists(source) and os.path.realpath(source) == target:
            raise UsageError("refusing to overwrite the input; choose another output path", path=path)
    if os.path.exists(path) and not force:
        raise UsageError("exists; pass --force to replace it", path=path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError("the output's folder does not exist", path=path)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_spectra(path, spectra: dict, *, inputs=()):
    """Write ``{name: singular values}`` as an ``.npz`` (no pickles), atomically."""
    import numpy as np

    with atomic_output(path, inputs=inputs) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **spectra)
