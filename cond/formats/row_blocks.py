"""Row blocks that a Dask worker reads itself: where the rows of a file lie, and how a
table of rows becomes the fixed :data:`BLOCK_ROWS`-row design blocks every pass sees.

A locator (:class:`NpyRows`, :class:`ParquetRows`, :class:`ZarrRows`) is a small
frozen record (path, offsets, column choice) that pickles in a few hundred bytes;
``blocks(first, last)`` yields the same ``(start, X, y)`` blocks as
:meth:`cond.formats.row_stream.RowSource.blocks`, hence the same floats.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cond.errors import InputError
from cond.linalg import BLOCK_ROWS  # the one grain of every streaming pass (TSQR and sketch leaves)


def design_block(table, start, names, design, target, display):
    """(X, y) of one block of rows starting at row ``start``: float64 design columns and the
    target; a non-finite value is an InputError naming its row and column."""
    if design == list(range(len(names))) and table.dtype == np.float64 and table.flags.c_contiguous:
        x = table  # no copy when every column is a design column
    else:
        x = np.ascontiguousarray(table[:, design], dtype=np.float64)
    y = None if target is None else np.asarray(table[:, target], dtype=np.float64)
    if not np.isfinite(np.sum(x)):  # one reduction; NaN or Inf anywhere makes it non-finite
        bad = ~np.isfinite(x)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise InputError(
                f"row {start + i} column '{names[design[j]]}' is {x[i, j]}; drop or impute non-finite values first",
                path=display,
            )
    if y is not None and not np.all(np.isfinite(y)):
        i = int(np.flatnonzero(~np.isfinite(y))[0])
        raise InputError(f"row {start + i} target '{names[target]}' is {y[i]}", path=display)
    return x, y


@dataclass(frozen=True)
class RowsOnDisk:
    """What every locator carries: the file, its display name, the row count and the
    column choice (names, design column indices, target index)."""

    path: str
    display: str
    n: int
    names: tuple
    design: tuple
    target: int | None


@dataclass(frozen=True)
class NpyRows(RowsOnDisk):
    """Where the rows of a C-order ``.npy`` lie, so that a Dask worker reads its blocks itself
    (the same :data:`BLOCK_ROWS` blocks as :meth:`RowSource.blocks`, hence the same floats)."""

    offset: int
    dtype: str
    ncols: int

    def blocks(self, first, last):
        """``(start, X, y)`` for blocks ``first`` .. ``last - 1``."""
        dtype = np.dtype(self.dtype)
        with open(self.path, "rb") as f:
            for b in range(first, last):
                start = b * BLOCK_ROWS
                rows = min(BLOCK_ROWS, self.n - start)
                f.seek(self.offset + start * self.ncols * dtype.itemsize)
                table = np.fromfile(f, dtype=dtype, count=rows * self.ncols).reshape(rows, self.ncols)
                x, y = design_block(table, start, list(self.names), list(self.design), self.target, self.display)
                yield start, x, y


@dataclass(frozen=True)
class ParquetRows(RowsOnDisk):
    """Where the rows of a Parquet file lie: a Dask worker reads the row groups that hold its
    blocks and cuts the same :data:`BLOCK_ROWS` blocks as :meth:`RowSource.blocks`."""

    def blocks(self, first, last):
        """``(start, X, y)`` for blocks ``first`` .. ``last - 1``."""
        import pyarrow.parquet as pq

        from cond.formats.parquet import read_parquet_columns

        pf = pq.ParquetFile(self.path)
        lo, hi = first * BLOCK_ROWS, min(self.n, last * BLOCK_ROWS)
        groups, tables, begin, at = [], [], None, 0
        for g in range(pf.metadata.num_row_groups):
            rows = pf.metadata.row_group(g).num_rows
            if at + rows > lo and at < hi:
                groups.append((g, at))
                begin = at if begin is None else begin
            at += rows
        for g, start in groups:
            tables.append(read_parquet_columns(pf.read_row_group(g, columns=list(self.names)), self.display, start))
        yield from _cut_blocks(np.vstack(tables)[lo - begin : hi - begin], first, last, self)


@dataclass(frozen=True)
class ZarrRows(RowsOnDisk):
    """Where the rows of a Zarr array lie: a Dask worker reads the rows of its blocks (zarr
    decodes the chunks that hold them) and cuts the same :data:`BLOCK_ROWS` blocks as
    :meth:`RowSource.blocks`."""

    def blocks(self, first, last):
        """``(start, X, y)`` for blocks ``first`` .. ``last - 1``."""
        from cond.formats.zarr_store import design_array, read_rows

        array, _, _ = design_array(self.path, self.display)
        lo, hi = first * BLOCK_ROWS, min(self.n, last * BLOCK_ROWS)
        yield from _cut_blocks(read_rows(array, lo, hi, self.display), first, last, self)


def _cut_blocks(table, first, last, where):
    """``(start, X, y)`` for blocks ``first`` .. ``last - 1`` of ``table``, which holds the rows
    from block ``first`` on; ``where`` gives names, design, target, display and n."""
    lo, hi = first * BLOCK_ROWS, min(where.n, last * BLOCK_ROWS)
    for b in range(first, last):
        start = b * BLOCK_ROWS
        piece = table[start - lo : min(start + BLOCK_ROWS, hi) - lo]
        yield (start, *design_block(piece, start, list(where.names), list(where.design), where.target, where.display))
