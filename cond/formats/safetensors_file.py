"""safetensors: single files, sharded checkpoints (index JSON) and directories.

The header is parsed and checked here rather than by the ``safetensors``
package, so that every way a file can be broken gets its own message and so
that tensors are read one at a time, straight from their byte range: memory
holds one tensor (and its float64 copy) whatever the checkpoint's size.

Layout of a file: 8 bytes little-endian header length N, N bytes of JSON
(``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}``),
then the data section; offsets are relative to its start.
"""

from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import dataclass

import numpy as np

from cond.errors import InputError
from cond.formats.entry import TensorEntry, skip_reason_for_ndim, unit_roundoff

MAX_HEADER_BYTES = 100 * 1024 * 1024

# dtype name -> (bits per element, numpy dtype name or None, reason it is not analysed or None)
_DTYPES = {
    "F64": (64, "float64", None),
    "F32": (32, "float32", None),
    "F16": (16, "float16", None),
    "BF16": (16, "bfloat16", None),
    "F8_E4M3": (8, "float8_e4m3fn", None),
    "F8_E5M2": (8, "float8_e5m2", None),
    "F8_E8M0": (8, "float8_e8m0fnu", None),
    "F6_E2M3": (6, None, "packed 6-bit float dtype F6_E2M3 is not supported"),
    "F6_E3M2": (6, None, "packed 6-bit float dtype F6_E3M2 is not supported"),
    "F4": (4, None, "packed 4-bit float dtype F4 is not supported"),
    "C64": (64, None, "complex dtype C64 is not analysed"),
    "BOOL": (8, "bool", "bool tensor, not floating point"),
    "U8": (8, "uint8", "integer tensor (U8), not floating point"),
    "I8": (8, "int8", "integer tensor (I8), not floating point"),
    "U16": (16, "uint16", "integer tensor (U16), not floating point"),
    "I16": (16, "int16", "integer tensor (I16), not floating point"),
    "U32": (32, "uint32", "integer tensor (U32), not floating point"),
    "I32": (32, "int32", "integer tensor (I32), not floating point"),
    "U64": (64, "uint64", "integer tensor (U64), not floating point"),
    "I64": (64, "int64", "integer tensor (I64), not floating point"),
}


def numpy_dtype(name: str) -> np.dtype:
    """The numpy dtype of a safetensors float dtype name (ml_dtypes for the narrow ones)."""
    import ml_dtypes  # noqa: F401  (registers bfloat16 and float8 with numpy)

    np_name = _DTYPES[name][1]
    if np_name is None:
        raise ValueError(f"safetensors dtype {name} has no numpy equivalent")
    return np.dtype(getattr(ml_dtypes, np_name)) if not hasattr(np, np_name) else np.dtype(np_name)


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple
    begin: int
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    """A checked header: tensors in file order, the metadata, where the data starts."""

    path: str
    tensors: tuple
    metadata: dict
    data_start: int


def read_header(path, display=None) -> SafetensorsHeader:
    """Parse and check the header of one safetensors file.

    Raises
    ------
    InputError
        For an empty or short file, a header length beyond the file or 100 MB,
        invalid JSON, a malformed entry, offsets that disagree with dtype x shape,
        overlap, or point outside (a truncated) data section.
    """
    display = str(path) if display is None else display
    size = _file_size(path, display)
    if size == 0:
        raise InputError("empty file", path=display)
    if size < 8:
        raise InputError(f"file is {size} bytes, too short for a safetensors header", path=display)
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if n > MAX_HEADER_BYTES:
            raise InputError(f"header length {n} bytes exceeds the 100 MB limit; not a safetensors file?", path=display)
        if 8 + n > size:
            raise InputError(
                f"header length {n} bytes exceeds the file size ({size} bytes); truncated or not a safetensors file",
                path=display,
            )
        raw = f.read(n)
    header = parse_json(raw, display, "header")
    if not isinstance(header, dict):
        raise InputError("header JSON is not an object", path=display)
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise InputError("__metadata__ is not an object", path=display)
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise InputError(
                f"__metadata__ must map strings to strings (the safetensors format); "
                f"'{key}' holds a {type(value).__name__}",
                path=display,
            )
    data_size = size - 8 - n
    tensors = [_check_entry(name, spec, display) for name, spec in header.items()]
    _check_layout(tensors, data_size, display)
    return SafetensorsHeader(display, tuple(tensors), dict(metadata), 8 + n)


def parse_json(raw, display, what):
    """JSON from bytes, any failure (bad UTF-8, bad syntax, nesting too deep) one InputError."""
    try:
        return json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{what} is not valid JSON ({exc})", path=display) from None
    except RecursionError:
        raise InputError(f"{what} JSON is nested too deeply to be a {what}", path=display) from None


def _file_size(path, display) -> int:
    if os.path.isdir(path):
        raise InputError("is a directory, not a safetensors file", path=display)
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        raise InputError("no such file", path=display) from None
    except OSError as exc:
        raise InputError(f"cannot read file ({exc.strerror})", path=display) from None


def _check_entry(name, spec, display) -> TensorInfo:
    if not isinstance(spec, dict):
        raise InputError("header entry is not an object", path=display, tensor=name)
    dtype, shape, offsets = spec.get("dtype"), spec.get("shape"), spec.get("data_offsets")
    if dtype not in _DTYPES:
        raise InputError(f"unknown dtype {dtype!r}", path=display, tensor=name)
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise InputError(f"shape must be a list of non-negative integers; got {shape!r}", path=display, tensor=name)
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        raise InputError(
            f"data_offsets must be [begin, end] with 0 <= begin <= end; got {offsets!r}",
            path=display,
            tensor=name,
            shape=shape,
        )
    bits = _DTYPES[dtype][0]
    need = math.ceil(math.prod(shape) * bits / 8)
    have = offsets[1] - offsets[0]
    if need != have:
        raise InputError(
            f"data_offsets span {have} bytes but {dtype} x shape {shape} needs {need}",
            path=display,
            tensor=name,
            shape=shape,
        )
    return TensorInfo(name, dtype, tuple(shape), offsets[0], offsets[1])


def _check_layout(tensors, data_size, display):
    ordered = sorted(tensors, key=lambda t: (t.begin, t.end))
    for prev, cur in zip(ordered, ordered[1:]):
        if cur.begin < prev.end:
            raise InputError(
                f"data_offsets [{cur.begin}, {cur.end}] overlap those of tensor "
                f"'{prev.name}' [{prev.begin}, {prev.end}]",
                path=display,
                tensor=cur.name,
            )
    beyond = [t for t in ordered if t.end > data_size]
    if not beyond:
        return
    contiguous = all(a.end == b.begin for a, b in zip(ordered, ordered[1:])) and ordered[0].begin == 0
    last = ordered[-1]
    if contiguous:
        raise InputError(
            f"truncated data section: the header needs {last.end} bytes of data, the file has {data_size}", path=display
        )
    t = beyond[0]
    raise InputError(
        f"data_offsets [{t.begin}, {t.end}] point outside the data section ({data_size} bytes)",
        path=display,
        tensor=t.name,
        shape=t.shape,
    )


def entries_of_file(path, display=None, header=None):
    """Yield a :class:`TensorEntry` per tensor of one safetensors file, in file order."""
    header = read_header(path, display) if header is None else header
    for info in header.tensors:
        yield _entry(path, header, info)


def _entry(path, header, info) -> TensorEntry:
    bits, np_name, reason = _DTYPES[info.dtype]
    reason = reason or skip_reason_for_ndim(info.shape)
    u = unit_roundoff(numpy_dtype(info.dtype)) if np_name else None  # a float's, analysed or not (None: not a float)
    # module-level functions with their arguments: an entry pickles to a few hundred bytes
    # (path, offset, length), so that Dask workers read the tensor themselves
    where = (path, header.data_start + info.begin, info.end - info.begin, header.path, info.name, tuple(info.shape))
    return TensorEntry(
        info.name,
        info.shape,
        info.dtype,
        header.path,
        u,
        reason,
        functools.partial(load_tensor, *where, info.dtype),
        functools.partial(read_tensor_bytes, *where),
    )


def read_tensor_bytes(path, offset, length, display, name, shape):
    """The stored bytes of one tensor (``length`` bytes at ``offset``)."""
    with open(path, "rb") as f:
        f.seek(offset)
        buf = f.read(length)
    if len(buf) != length:
        raise InputError(
            f"truncated data: expected {length} bytes, read {len(buf)}", path=display, tensor=name, shape=shape
        )
    return buf


def load_tensor(path, offset, length, display, name, shape, dtype):
    """One tensor widened exactly to float64, in its stored shape."""
    raw = read_tensor_bytes(path, offset, length, display, name, shape)
    return np.frombuffer(raw, dtype=numpy_dtype(dtype).newbyteorder("<")).reshape(shape).astype(np.float64)


def entries_of_index(index_path, display=None):
    """Yield the tensors of a sharded checkpoint described by ``*.safetensors.index.json``.

    Every shard header is read and checked against ``weight_map`` before the
    first tensor is handed out; then shards are read one after another.
    """
    display = str(index_path) if display is None else display
    _file_size(index_path, display)
    with open(index_path, "rb") as f:
        index = parse_json(f.read(), display, "index")
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise InputError("index has no 'weight_map' object", path=display)
    folder = os.path.dirname(os.path.abspath(index_path))
    shards = list(dict.fromkeys(weight_map.values()))
    headers = {}
    for shard in shards:
        if not isinstance(shard, str) or os.path.basename(shard) != shard:
            raise InputError(
                f"weight_map names shard {shard!r}, which is not a file name in the index's folder", path=display
            )
        headers[shard] = read_header(os.path.join(folder, shard))
    for shard, header in headers.items():
        names = {t.name for t in header.tensors}
        claimed = {k for k, v in weight_map.items() if v == shard}
        missing = sorted(claimed - names)
        if missing:
            raise InputError(f"weight_map puts tensor '{missing[0]}' in {shard}, whose header lacks it", path=display)
        extra = sorted(names - claimed)
        if extra:
            raise InputError(
                f"shard {shard} holds tensor '{extra[0]}', which weight_map does not list (or maps elsewhere)",
                path=display,
            )
    for shard, header in headers.items():
        yield from entries_of_file(os.path.join(folder, shard), header=header)


def entries_of_directory(folder):
    """Yield the tensors of a checkpoint directory: its index if it has one, else every shard."""
    indexes = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors.index.json"))
    if len(indexes) > 1:
        raise InputError(f"several index files ({', '.join(indexes)}); name the one to read", path=folder)
    if indexes:
        yield from entries_of_index(os.path.join(folder, indexes[0]))
        return
    files = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))
    if not files:
        raise InputError("directory holds no .safetensors file and no index", path=folder)
    headers = [read_header(os.path.join(folder, f)) for f in files]
    seen = {}
    for f, header in zip(files, headers):
        for t in header.tensors:
            if t.name in seen:
                raise InputError(
                    f"tensor '{t.name}' is in both {seen[t.name]} and {f}; a checkpoint "
                    "names each tensor once (add an index to say which shard holds it)",
                    path=folder,
                )
            seen[t.name] = f
    for f, header in zip(files, headers):
        yield from entries_of_file(os.path.join(folder, f), header=header)
