"""NumPy ``.npy`` (memory-mapped) and ``.npz`` files. Pickles are never loaded."""

from __future__ import annotations

import os
import zipfile

import numpy as np

from cond.errors import InputError
from cond.formats.entry import TensorEntry, skip_reason_for_ndim, unit_roundoff


def kind_reason(dtype: np.dtype):
    """Why an array of this dtype is not analysed (not floating point), or None."""
    if dtype.hasobject:
        return None  # refused outright, see _refuse_pickle
    if dtype.kind == "f":
        return None
    if dtype.kind in "iub":
        return f"{'bool' if dtype.kind == 'b' else 'integer'} array ({dtype}), not floating point"
    return f"dtype {dtype} is not analysed"


def _refuse_pickle(dtype, display, name=None):
    if dtype.hasobject:
        raise InputError("holds Python objects (a pickle); cond never loads pickles. "
                         "Save a numeric array instead", path=display, tensor=name)


def _read_npy_header(f, display, name=None):
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    except (ValueError, EOFError, SyntaxError) as exc:
        raise InputError(f"not a valid .npy array ({exc})", path=display, tensor=name) from None
    _refuse_pickle(dtype, display, name)
    return shape, fortran, dtype


def entries_of_npy(path, display=None, name=None):
    """One entry for the array of a ``.npy`` file, named after the file's stem."""
    display = str(path) if display is None else display
    name = name or os.path.splitext(os.path.basename(display))[0] or "array"
    with open(path, "rb") as f:
        shape, _, dtype = _read_npy_header(f, display, name)
        header_end = f.tell()
    need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    have = os.stat(path).st_size - header_end
    if have < need:
        raise InputError(f"truncated data: the header needs {need} bytes, the file has {have}",
                         path=display, tensor=name, shape=shape)

    def load():
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        return np.asarray(arr, dtype=np.float64)

    reason = kind_reason(dtype) or skip_reason_for_ndim(shape)
    yield TensorEntry(name, tuple(shape), str(dtype), display, unit_roundoff(dtype), reason, load)


def entries_of_npz(path, display=None):
    """One entry per array of a ``.npz`` archive, in archive order."""
    display = str(path) if display is None else display
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise InputError("not a valid .npz (zip) archive", path=display) from None
    with archive:
        members = [m for m in archive.namelist() if m.endswith(".npy")]
        if not members:
            raise InputError("archive holds no .npy arrays", path=display)
        infos = []
        for member in members:
            with archive.open(member) as f:
                shape, _, dtype = _read_npy_header(f, display, member[:-4])
            infos.append((member, tuple(shape), dtype))
    for member, shape, dtype in infos:
        name = member[:-4]

        def load(member=member, name=name, shape=shape):
            try:
                with zipfile.ZipFile(path) as z, z.open(member) as f:
                    arr = np.lib.format.read_array(f, allow_pickle=False)
            except (ValueError, EOFError, zipfile.BadZipFile, OSError) as exc:
                raise InputError(f"cannot read array ({exc})", path=display, tensor=name,
                                 shape=shape) from None
            return np.asarray(arr, dtype=np.float64)

        reason = kind_reason(dtype) or skip_reason_for_ndim(shape)
        yield TensorEntry(name, shape, str(dtype), display, unit_roundoff(dtype), reason, load)
