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
import os
from dataclasses import dataclass

import numpy as np

from cond.errors import InputError, UsageError
from cond.formats.arrays import npy_chunks, npz_chunks
from cond.formats.columns import check_unique, select_columns
from cond.formats.delimited import rows_of_delimited
from cond.formats.detect import format_of, local_path
from cond.formats.parquet import check_numeric_columns, open_parquet, parquet_chunks
from cond.formats.row_blocks import BLOCK_ROWS, NpyRows, ParquetRows, ZarrRows, design_block
from cond.formats.zarr_store import zarr_chunks

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
def open_rows(
    path,
    *,
    input_format=None,
    columns=None,
    target=None,
    chunk_rows=None,
    header=None,
    notice=None,
    names=None,
    label=None,
):
    """Open a design matrix for streaming passes (a context manager yielding a RowSource).

    ``chunk_rows`` (rows read at a time) defaults to :func:`default_chunk_rows`. ``header``
    (text only): True or False says whether the first line is a header; None lets cond
    decide and tell ``notice(line)``. ``names`` and ``label``: the column names and the
    name of an in-memory source spilled to ``path`` (see :func:`cond.formats.sources.design_source`).
    """
    if chunk_rows is not None and int(chunk_rows) < 1:
        raise UsageError(f"`--chunk-rows` must be a positive integer; got {chunk_rows}")
    given_names = names
    with local_path(path) as (real, display), contextlib.ExitStack() as stack:
        display = display if label is None else label
        fmt = format_of(real, display, input_format)
        if header is not None and fmt not in ("csv", "tsv"):
            raise UsageError(f"`--header` / `--no-header` apply to csv and tsv input; {display} is {fmt}")
        if fmt in ("csv", "tsv"):
            real = stack.enter_context(rows_of_delimited(real, display, "," if fmt == "csv" else "\t", header, notice))
            names = real[1]
            real = real[0]
            fmt = "npy"
        else:
            names = None
        locator = None  # (the locator class, its own fields) where workers can read the rows
        if fmt == "npy":
            n, ncols, chunks, layout = npy_chunks(real, display)
            locator = None if layout is None else (NpyRows, layout)
        elif fmt == "npz":
            n, ncols, chunks = npz_chunks(real, display)
        elif fmt == "parquet":
            parquet, names = open_parquet(real, display)
            n, ncols, chunks = parquet.metadata.num_rows, len(names), None  # chunks: once columns are chosen
            locator = (ParquetRows, {})
        elif fmt == "zarr":
            n, ncols, chunks = zarr_chunks(real, display)
            locator = (ZarrRows, {})
        else:
            raise UsageError(f"cond sample reads npy, npz, csv, tsv, parquet or zarr; {display} is {fmt}", path=display)
        names = given_names or names or [str(j) for j in range(ncols)]
        check_unique(names, display)
        target_idx = None
        if target is not None:
            hits = select_columns(names, target, display)
            if len(hits) != 1:
                raise UsageError(f"`--target` must name one column; {target!r} matches {len(hits)}", path=display)
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
            chunks = parquet_chunks(parquet, names, display)
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
