"""A design matrix read in row blocks, for any number of passes, in bounded memory.

Files are read ``chunk_rows`` rows at a time; the numerics always see blocks
of exactly :data:`BLOCK_ROWS` rows (the last one shorter), so results do not
depend on ``chunk_rows``. ``.npy`` is read with plain file reads (not a memory
map, whose touched pages would count as resident); CSV / TSV (gzip too) and
standard input are parsed once into a temporary ``.npy``; Parquet is read in
record batches, Zarr in whole row chunks; ``.npz`` arrays are loaded whole (zip
members cannot be read in slices).
"""

from __future__ import annotations

import contextlib
import gzip
import os
import sys
import tempfile
from dataclasses import dataclass

import numpy as np

from cond.errors import InputError, UsageError
from cond.formats.detect import format_of, local_path
from cond.formats.row_blocks import BLOCK_ROWS, NpyRows, ParquetRows, ZarrRows, design_block
from cond.formats.tables import check_numeric_columns, open_parquet, select_columns

TEXT_CHUNK_BYTES = 32 * 2**20
CHUNK_BYTES = 16 * 2**20  # default rows read at a time: this many bytes of float64 rows


@dataclass
class RowSource:
    """``blocks()`` yields ``(start, X, y)``: X (b x d) float64 design rows, y (b,) or None."""

    path: str
    n: int
    names: list
    design: list
    target: int | None
    _chunks: object
    chunk_rows: int
    locator: object = None  # NpyRows, ParquetRows or ZarrRows when workers can read the rows themselves

    @property
    def d(self) -> int:
        return len(self.design)

    @property
    def design_names(self):
        return [self.names[j] for j in self.design]

    def blocks(self):
        from cond.threads import prefetch

        start = 0
        for table in _reblock(prefetch(self._chunks(self.chunk_rows)), BLOCK_ROWS):
            x, y = design_block(table, start, self.names, self.design, self.target, self.path)
            yield start, x, y
            start += len(x)


def _reblock(chunks, size):
    """Regroup arrays of any row counts into arrays of exactly ``size`` rows (last shorter)."""
    pending, count = [], 0
    for chunk in chunks:
        while len(chunk):
            take = min(size - count, len(chunk))
            pending.append(chunk[:take])
            count += take
            chunk = chunk[take:]
            if count == size:
                yield pending[0] if len(pending) == 1 else np.vstack(pending)
                pending, count = [], 0
    if count:
        yield pending[0] if len(pending) == 1 else np.vstack(pending)


@contextlib.contextmanager
def open_rows(path, *, input_format=None, columns=None, target=None, chunk_rows=None, header=None,
              notice=None):
    """Open a design matrix for streaming passes (a context manager yielding a RowSource).

    ``chunk_rows`` (rows read at a time) defaults to :func:`default_chunk_rows`. ``header``
    (text only): True or False says whether the first line is a header; None lets cond
    decide and tell ``notice(line)``.
    """
    if chunk_rows is not None and int(chunk_rows) < 1:
        raise UsageError(f"`--chunk-rows` must be a positive integer; got {chunk_rows}")
    with local_path(path) as (real, display), contextlib.ExitStack() as stack:
        fmt = format_of(real, display, input_format)
        if header is not None and fmt not in ("csv", "tsv"):
            raise UsageError(f"`--header` / `--no-header` apply to csv and tsv input; {display} is {fmt}")
        if fmt in ("csv", "tsv"):
            real = stack.enter_context(_text_to_npy(real, display, "," if fmt == "csv" else "\t", header, notice))
            names = real[1]
            real = real[0]
            fmt = "npy"
        else:
            names = None
        locator = None  # (the locator class, its own fields) where workers can read the rows
        if fmt == "npy":
            n, ncols, chunks, layout = _npy_chunks(real, display)
            locator = None if layout is None else (NpyRows, layout)
        elif fmt == "npz":
            n, ncols, chunks = _npz_chunks(real, display)
        elif fmt == "parquet":
            parquet, names = open_parquet(real, display)
            n, ncols, chunks = parquet.metadata.num_rows, len(names), None  # chunks: once columns are chosen
            locator = (ParquetRows, {})
        elif fmt == "zarr":
            n, ncols, chunks = _zarr_chunks(real, display)
            locator = (ZarrRows, {})
        else:
            raise UsageError(f"cond sample reads npy, npz, csv, tsv, parquet or zarr; {display} is {fmt}",
                             path=display)
        names = names or [str(j) for j in range(ncols)]
        target_idx = None
        if target is not None:
            hits = select_columns(names, target, display)
            if len(hits) != 1:
                raise UsageError(f"`--target` must name one column; {target!r} matches {len(hits)}",
                                 path=display)
            target_idx = hits[0]
        design = [j for j in select_columns(names, columns, display) if j != target_idx]
        if not design:
            raise UsageError("no design columns left after --columns and --target", path=display)
        if fmt == "parquet":  # read only the chosen columns, each checked to be numeric
            used = sorted(set(design) | ({target_idx} if target_idx is not None else set()))
            check_numeric_columns(parquet, used, display)
            position = {j: k for k, j in enumerate(used)}
            names, design = [names[j] for j in used], [position[j] for j in design]
            target_idx = None if target_idx is None else position[target_idx]
            chunks = _parquet_chunks(parquet, names)
        if n == 0:
            raise InputError("has no rows (a zero-size dimension)", path=display)
        if locator is not None:
            kind, fields = locator
            locator = kind(os.path.abspath(real), display, n, tuple(names), tuple(design), target_idx, **fields)
        chunk_rows = default_chunk_rows(ncols) if chunk_rows is None else int(chunk_rows)
        yield RowSource(display, n, names, design, target_idx, chunks, chunk_rows, locator)


def default_chunk_rows(ncols, chunk_bytes=CHUNK_BYTES):
    """Rows read at a time by default: about ``chunk_bytes`` of float64 rows, a multiple of
    :data:`BLOCK_ROWS` (at least one block), so that a chunk cuts into whole blocks."""
    return max(1, chunk_bytes // (8 * max(1, ncols) * BLOCK_ROWS)) * BLOCK_ROWS


def _npy_chunks(path, display):
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            shape, fortran, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                                     else np.lib.format.read_array_header_2_0(f))
        except (ValueError, EOFError, SyntaxError) as exc:
            raise InputError(f"not a valid .npy array ({exc})", path=display) from None
        offset = f.tell()
    if dtype.hasobject:
        raise InputError("holds Python objects (a pickle); cond never loads pickles", path=display)
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
                yield np.array(arr[s:s + chunk_rows])
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


def _npz_chunks(path, display):
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.keys())
            if len(keys) != 1:
                raise InputError(f"holds {len(keys)} arrays ({', '.join(keys[:5])}); cond sample "
                                 "needs one (save it as .npy)", path=display)
            arr = z[keys[0]]
    except ValueError as exc:
        raise InputError(f"cannot read ({exc})", path=display) from None
    if arr.ndim != 2 or arr.dtype.kind not in "fiub":
        raise InputError(f"must be a 2-D numeric array; got {arr.dtype} {arr.shape}", path=display)

    def chunks(chunk_rows):
        for s in range(0, arr.shape[0], chunk_rows):
            yield arr[s:s + chunk_rows]

    return arr.shape[0], arr.shape[1], chunks


def _zarr_chunks(path, display):
    from cond.formats.zarr_store import design_array, read_rows, row_step

    array, n, ncols = design_array(path, display)

    def chunks(chunk_rows):
        step = row_step(array, chunk_rows)
        for s in range(0, n, step):
            yield read_rows(array, s, min(n, s + step), display)

    return n, ncols, chunks


def _parquet_chunks(pf, names):
    """Record batches of the named (numeric, checked) columns as float64 arrays."""
    from cond.formats.tables import read_parquet_columns

    def chunks(chunk_rows):
        for batch in pf.iter_batches(batch_size=chunk_rows, columns=list(names)):
            yield read_parquet_columns(batch)

    return chunks


@contextlib.contextmanager
def _text_to_npy(path, display, delimiter, header=None, notice=None):
    """Parse a delimited text file once into a temporary float64 .npy; yield (path, names).

    The table's layout (header, first data line) comes from :func:`tables.text_layout`, the
    rules ``inspect`` reads text by.
    """
    from cond.formats.tables import header_notice, lf_line_ends, parse_text_block, text_layout

    with open(path, "rb") as f:
        magic = f.read(2)
    opener = gzip.open if magic == b"\x1f\x8b" else open
    fd, tmp = tempfile.mkstemp(prefix="cond-rows-", suffix=".npy")
    os.close(fd)
    try:
        layout, rows, cr_only = None, 0, False
        with opener(path, "rb") as src, open(tmp, "wb") as out:
            out.write(b"\0" * 128)  # room for the .npy header, written at the end
            leftover, line_no = b"", 0
            while True:
                try:
                    piece = src.read(TEXT_CHUNK_BYTES)
                except (OSError, EOFError) as exc:
                    raise InputError(f"cannot read ({exc})", path=display) from None
                if layout is None and leftover == b"":
                    cr_only = lf_line_ends(piece) is not piece
                if cr_only:
                    piece = piece.replace(b"\r", b"\n")
                data = leftover + piece
                if not piece:
                    cut = len(data)
                else:
                    cut = data.rfind(b"\n") + 1
                    if cut == 0:
                        leftover = data
                        continue
                block, leftover = data[:cut], data[cut:]
                start = 0
                if layout is None:
                    if not block.strip(b" \t\r\n") and piece:
                        leftover = block + leftover
                        continue
                    layout = text_layout(block, delimiter, display, header)
                    start, line_no = layout.start, layout.lines
                values, lines = parse_text_block(block, delimiter, layout.names, display, line_no, start=start)
                line_no += block.count(b"\n", start)
                values.tofile(out)
                rows += len(values)
                if not piece:
                    break
        if rows == 0:
            raise InputError("has a header but no data rows", path=display)
        if notice is not None and header_notice(display, layout):
            notice(header_notice(display, layout))
        header_dict = {"descr": "<f8", "fortran_order": False, "shape": (rows, len(layout.names))}
        with open(tmp, "r+b") as out:
            _write_header(out, header_dict)
        yield tmp, layout.names
    finally:
        os.unlink(tmp)


def _write_header(f, header):
    """Write a .npy 1.0 header padded to exactly 128 bytes (the space reserved up front)."""
    text = repr(header).encode("latin1")
    pad = 128 - 10 - len(text) - 1
    if pad < 0:
        raise InputError("too many columns for the .npy spill header")
    f.seek(0)
    f.write(b"\x93NUMPY\x01\x00" + (118).to_bytes(2, "little") + text + b" " * pad + b"\n")
