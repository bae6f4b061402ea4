"""Atomic writers: write to a temporary file beside the target, then rename over it.

A reader never sees a half-written file, a failure leaves nothing behind, and
an input is never overwritten.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

from cond.errors import UsageError


def _umask() -> int:
    """The process's umask: from /proc where Linux shows it (no other thread can see a change),
    else by setting it and putting it back."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_output(path, *, inputs=(), force=True, directory=False):
    """Check an output path before any work starts, so that a long run never fails at its end.

    ``directory``: the output is a folder (created if missing) rather than a file.

    Raises
    ------
    UsageError
        When ``path`` is ``-`` (no binary output to standard output), is one of ``inputs``,
        is a directory where a file is written (or a file where a folder is), exists and
        ``force`` is false, or its parent folder does not exist.
    """
    path = os.fspath(path)
    if path == "-":
        raise UsageError("this output is a file: give a path (`-` for standard output applies to "
                         "text output only)", path=path)
    target = os.path.realpath(path)
    for source in inputs:
        if source not in (None, "-") and os.path.exists(source) and os.path.realpath(source) == target:
            raise UsageError("refusing to overwrite the input; choose another output path", path=path)
    if directory:
        if os.path.exists(path) and not os.path.isdir(path):
            raise UsageError("exists and is not a directory; give a folder or a .safetensors file", path=path)
    elif os.path.isdir(path):
        raise UsageError("is a directory; give a file path", path=path)
    elif os.path.exists(path) and not force:
        raise UsageError("exists; pass --force to replace it", path=path)
    folder = os.path.dirname(os.path.abspath(path.rstrip(os.sep) or path))
    if not os.path.isdir(folder):
        raise UsageError("the output's folder does not exist", path=path)


@contextlib.contextmanager
def atomic_output(path, *, inputs=(), force=True):
    """Yield a temporary path; on success it is renamed to ``path`` with the user's umask
    applied (a temporary file is created 0600).

    Raises
    ------
    UsageError
        As :func:`check_output`.
    """
    path = os.fspath(path)
    check_output(path, inputs=inputs, force=force)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
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
