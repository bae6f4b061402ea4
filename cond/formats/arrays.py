"""NumPy ``.npy`` and ``.npz`` files: tensor entries for ``inspect`` (``.npy`` memory-mapped) and
row streams for ``sample`` (``.npy`` read in chunks into recycled buffers). One header parser
for both; pickles are never loaded."""

from __future__ import annotations

import os
import sys
import zipfile

import numpy as np

from cond.errors import InputError
from cond.formats.entry import TensorEntry, skip_reason_for_ndim, unit_roundoff


def kind_reason(dtype: np.dtype, checkpoint=False):
    """Why an array of this dtype is not analysed, or None (the rule of :mod:`cond.formats.sources`):
    floats always are; integers and bools are numbers in data (npy, npz, Zarr, an array) and
    ids, masks or codes in a checkpoint (``checkpoint=True``)."""
    if dtype.hasobject:
        return None  # refused outright, see _refuse_pickle
    if dtype.kind == "f" or unit_roundoff(dtype) is not None:  # NumPy's floats and ml_dtypes' (bf16, fp8)
        return None
    if dtype.kind in "iub" and not checkpoint:
        return None
    if dtype.kind in "iub":
        return f"{'bool' if dtype.kind == 'b' else 'integer'} tensor ({dtype}) in a checkpoint, not a weight"
    return f"dtype {dtype} is not analysed"


def _refuse_pickle(dtype, display, name=None):
    if dtype.hasobject:
        raise InputError(
            "holds Python objects (a pickle); cond never loads pickles. Save a numeric array instead",
            path=display,
            tensor=name,
        )


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
        raise InputError(
            f"truncated data: the header needs {need} bytes, the file has {have}",
            path=display,
            tensor=name,
            shape=shape,
        )

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
                raise InputError(f"cannot read array ({exc})", path=display, tensor=name, shape=shape) from None
            return np.asarray(arr, dtype=np.float64)

        reason = kind_reason(dtype, checkpoint=True) or skip_reason_for_ndim(shape)
        yield TensorEntry(name, shape, str(dtype), display, unit_roundoff(dtype), reason, load)


def npy_chunks(path, display):
    """``(n, ncols, chunks, layout)`` of a 2-D numeric .npy for row streams: ``chunks(rows)``
    reads plain file reads into recycled buffers; ``layout`` lets Dask workers read blocks
    themselves (None for Fortran order)."""
    with open(path, "rb") as f:
        shape, fortran, dtype = _read_npy_header(f, display)  # pickles refused there
        offset = f.tell()
    if dtype.kind not in "fiub":
        raise InputError(f"dtype {dtype} is not numeric", path=display)
    if len(shape) != 2:
        raise InputError(f"must be a 2-D array (rows x columns); got shape {shape}", path=display)
    n, ncols = shape
    if ncols == 0:
        raise InputError("has no columns (a zero-size dimension)", path=display)
    need = n * ncols * dtype.itemsize
    if os.path.getsize(path) - offset < need:
        raise InputError(f"truncated data: the header needs {need} bytes", path=display)

    pools = {}  # chunk_rows -> ChunkBuffers, shared by every pass over the file

    def chunks(chunk_rows):
        if fortran:  # column-major: a row slice is strided; read through a memory map instead
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
            for s in range(0, n, chunk_rows):
                yield np.array(arr[s : s + chunk_rows])
            return
        buffers = pools.setdefault(chunk_rows, ChunkBuffers((min(chunk_rows, n), ncols), dtype))
        with open(path, "rb", buffering=0) as f:
            f.seek(offset)
            for s in range(0, n, chunk_rows):
                rows = min(chunk_rows, n - s)
                chunk = buffers.take()[:rows]
                if f.readinto(memoryview(chunk).cast("B")) != chunk.nbytes:
                    raise InputError(f"truncated data: rows from {s} on could not be read", path=display)
                yield chunk

    return n, ncols, chunks, None if fortran else {"offset": offset, "dtype": dtype.str, "ncols": ncols}


class ChunkBuffers:
    """Chunk arrays that are recycled once nothing refers to them any more.

    Reading into fresh memory costs a page fault per page (on the development VM a
    4 GB pass took 1.6 s with fresh arrays, 0.35 s reusing one). A buffer is handed
    out again only when its reference count shows that no block, view or task holds
    it, so recycling can never overwrite rows still in use; at most ``keep`` are kept.
    """

    def __init__(self, shape, dtype, keep=4):
        self.shape, self.dtype, self.keep = shape, dtype, keep
        self.pool = []

    def take(self):
        for buf in self.pool:
            if sys.getrefcount(buf) == 3:  # the pool's list, this loop's name, getrefcount's argument
                return buf
        buf = np.empty(self.shape, dtype=self.dtype)
        if len(self.pool) < self.keep:
            self.pool.append(buf)
        return buf


def npz_chunks(path, display):
    """``(n, ncols, chunks)`` of the one 2-D array of an .npz (loaded whole: zip members cannot be
    read in slices)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.keys())
            if len(keys) != 1:
                raise InputError(
                    f"holds {len(keys)} arrays ({', '.join(keys[:5])}); cond sample needs one (save it as .npy)",
                    path=display,
                )
            arr = z[keys[0]]
    except ValueError as exc:
        raise InputError(f"cannot read ({exc})", path=display) from None
    if arr.ndim != 2 or arr.dtype.kind not in "fiub":
        raise InputError(f"must be a 2-D numeric array; got {arr.dtype} {arr.shape}", path=display)

    def chunks(chunk_rows):
        for s in range(0, arr.shape[0], chunk_rows):
            yield arr[s : s + chunk_rows]

    return arr.shape[0], arr.shape[1], chunks
