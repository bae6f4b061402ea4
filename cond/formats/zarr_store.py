"""Zarr arrays (format 2 or 3, in a directory on a local or shared file system).

A store is an array, or a group whose direct members are arrays: ``cond inspect``
analyses every 2-D array; ``cond sample`` reads one 2-D array (a group must hold
exactly one, or name it: ``data.zarr/X``). Needs ``pip install 'cond[zarr]'``.

Zarr can decode chunks with pickle (format 2 object arrays, or a ``pickle``
codec named in the metadata): such stores are refused from their metadata,
before zarr is asked to read anything. A chunk that was never written reads as
the array's fill value (zarr's rule; zarr 3 skips writing chunks that equal it).
"""

from __future__ import annotations

import json
import os

import numpy as np

from cond.errors import InputError
from cond.formats.arrays import kind_reason
from cond.formats.entry import TensorEntry, skip_reason_for_ndim, unit_roundoff

MARKERS = ("zarr.json", ".zarray", ".zgroup")


def is_zarr(path) -> bool:
    """Whether ``path`` is a directory holding zarr metadata."""
    return os.path.isdir(path) and any(os.path.isfile(os.path.join(path, m)) for m in MARKERS)


def _zarr(display):
    try:
        import zarr
    except ImportError:
        raise InputError("reading Zarr needs zarr: pip install 'cond[zarr]'", path=display) from None
    return zarr


def _metadata_files(path):
    """The metadata files of a store: its own and those of its direct members."""
    found = [os.path.join(path, m) for m in MARKERS + (".zattrs",) if os.path.isfile(os.path.join(path, m))]
    for child in sorted(os.listdir(path)):
        sub = os.path.join(path, child)
        if os.path.isdir(sub):
            found += [os.path.join(sub, m) for m in ("zarr.json", ".zarray") if os.path.isfile(os.path.join(sub, m))]
    return found


def _pickle_codec(node):
    """The name of a pickle codec anywhere in a metadata document, or None."""
    if isinstance(node, dict):
        for key in ("id", "name"):
            value = node.get(key)
            if isinstance(value, str) and value.lower().rsplit(".", 1)[-1] == "pickle":
                return value
        children = node.values()
    elif isinstance(node, list):
        children = node
    else:
        return None
    for child in children:
        hit = _pickle_codec(child)
        if hit:
            return hit
    return None


def _refuse_pickles(path, display):
    """Refuse a store whose metadata asks for pickle decoding or Python-object dtypes."""
    for meta in _metadata_files(path):
        try:
            with open(meta, "rb") as f:
                doc = json.load(f)
        except (OSError, ValueError) as exc:
            raise InputError(f"unreadable zarr metadata {os.path.relpath(meta, path)} ({exc})", path=display) from None
        codec = _pickle_codec(doc)
        dtype = doc.get("dtype", doc.get("data_type")) if isinstance(doc, dict) else None
        if codec or dtype in ("|O", "object"):
            what = f"the codec {codec!r}" if codec else "Python objects"
            raise InputError(
                f"{os.path.relpath(meta, path)} asks for {what} (a pickle); cond never loads "
                "pickles. Store a numeric array instead",
                path=display,
            )


def open_arrays(path, display):
    """``[(name, zarr array)]``: the store's array, or the direct array members of its group."""
    zarr = _zarr(display)
    _refuse_pickles(path, display)
    try:
        node = zarr.open(store=path, mode="r")
    except Exception as exc:  # zarr raises several types for bad metadata
        raise InputError(f"not a readable zarr store ({str(exc).splitlines()[0]})", path=display) from None
    if isinstance(node, zarr.Array):
        name = os.path.basename(os.path.normpath(display))
        return [(os.path.splitext(name)[0] or "array", node)]
    arrays = sorted(node.arrays(), key=lambda item: item[0])
    if not arrays:
        raise InputError("zarr group holds no arrays", path=display)
    return arrays


def read_rows(array, lo, hi, display, name=None):
    """Rows ``lo:hi`` of a zarr array as a NumPy array; a chunk that fails to decode is an InputError."""
    try:
        return np.asarray(array[lo:hi])
    except Exception as exc:  # codec errors come as RuntimeError, ValueError, OSError ...
        raise InputError(
            f"cannot read rows {lo}..{hi - 1} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no detail'})",
            path=display,
            tensor=name,
            shape=tuple(array.shape),
        ) from None


def entries_of_zarr(path, display=None):
    """One entry per 2-D (or other) array of a zarr store, for ``cond inspect``."""
    display = str(path) if display is None else display
    arrays = open_arrays(path, display)  # pickle codecs refused here, before anything else opens it
    zarr = _zarr(display)
    group = not isinstance(zarr.open(store=path, mode="r"), zarr.Array)  # named tensors: a checkpoint
    for name, array in arrays:
        shape = tuple(int(s) for s in array.shape)

        def load(array=array, name=name, shape=shape):
            return np.asarray(read_rows(array, 0, shape[0], display, name) if shape else array[()], dtype=np.float64)

        reason = kind_reason(np.dtype(array.dtype), checkpoint=group) or skip_reason_for_ndim(shape)
        yield TensorEntry(name, shape, str(array.dtype), display, unit_roundoff(array.dtype), reason, load)


def design_array(path, display):
    """The one 2-D numeric array ``cond sample`` reads from a store: ``(array, n, ncols)``."""
    arrays = open_arrays(path, display)
    matrices = [(name, a) for name, a in arrays if len(a.shape) == 2]
    if len(matrices) != 1:
        names = ", ".join(name for name, _ in arrays[:8])
        raise InputError(
            f"holds {len(matrices)} 2-D arrays ({names}); name one: {display.rstrip('/')}/NAME", path=display
        )
    name, array = matrices[0]
    if np.dtype(array.dtype).kind not in "fiub":
        raise InputError(f"dtype {array.dtype} is not numeric", path=display, tensor=name)
    n, ncols = (int(s) for s in array.shape)
    if ncols == 0:
        raise InputError("has no columns (a zero-size dimension)", path=display)
    return array, n, ncols


def row_step(array, chunk_rows):
    """Rows to read at a time: a multiple of the array's row chunk near ``chunk_rows``, so that
    no chunk is decoded twice."""
    rc = int(array.chunks[0]) or 1
    return max(1, int(chunk_rows) // rc) * rc


def zarr_chunks(path, display):
    """``(n, ncols, chunks)`` of the store's one 2-D array, read in whole row chunks."""
    array, n, ncols = design_array(path, display)

    def chunks(chunk_rows):
        step = row_step(array, chunk_rows)
        for s in range(0, n, step):
            yield read_rows(array, s, min(n, s + step), display)

    return n, ncols, chunks
