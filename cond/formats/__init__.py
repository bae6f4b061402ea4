"""Paths and bytes to arrays: every reader yields :class:`TensorEntry` objects lazily.

>>> with open_entries("model.safetensors") as entries:   # doctest: +SKIP
...     for entry in entries:
...         W = entry.load()          # float64, exactly widened, one tensor at a time
"""

from __future__ import annotations

import contextlib

from cond.errors import UsageError
from cond.formats.detect import FORMATS, format_of, local_path

__all__ = ["FORMATS", "TensorEntry", "open_entries"]


def __getattr__(name):  # TensorEntry needs numpy: loaded on first use, so `cond --help` stays light
    if name == "TensorEntry":
        from cond.formats.entry import TensorEntry

        return TensorEntry
    raise AttributeError(f"module 'cond.formats' has no attribute {name!r}")


@contextlib.contextmanager
def open_entries(path, *, input_format=None, columns=None, header=None, notice=None):
    """Open ``path`` (a file, a checkpoint directory, an index JSON, or ``-``).

    Parameters
    ----------
    path : str or os.PathLike
        What to read (a zarr store is a directory); ``-`` reads standard input (then ``input_format`` is
        needed unless the bytes tell the format).
    input_format : str, optional
        One of :data:`FORMATS`; by default from the name or the first bytes.
    columns : str, optional
        Column selection for tables (CSV, TSV, Parquet).
    header : bool, optional
        Text tables: whether the first line is a header (default: decided by its fields).
    notice : callable, optional
        ``notice(line)`` hears what cond decided on the user's behalf (a header line).

    Yields
    ------
    iterator of TensorEntry
        Entries in file order; each reads its tensor only when ``load()`` is called.
    """
    with local_path(path) as (real, display):
        fmt = format_of(real, display, input_format)
        if columns is not None and fmt not in ("csv", "tsv", "parquet"):
            raise UsageError(f"`--columns` applies to csv, tsv and parquet input; {display} is {fmt}")
        if header is not None and fmt not in ("csv", "tsv"):
            raise UsageError(f"`--header` / `--no-header` apply to csv and tsv input; {display} is {fmt}")
        if fmt in ("csv", "tsv"):
            from cond.formats.delimited import entries_of_delimited

            yield entries_of_delimited(real, display, "," if fmt == "csv" else "\t", columns, header, notice)
        else:
            yield _reader(fmt)(real, display, columns)


def _reader(fmt):
    from cond.formats import arrays, matrix_market, parquet, safetensors_file, zarr_store

    return {
        "directory": lambda p, d, c: safetensors_file.entries_of_directory(p),
        "index": lambda p, d, c: safetensors_file.entries_of_index(p, d),
        "safetensors": lambda p, d, c: safetensors_file.entries_of_file(p, d),
        "npy": lambda p, d, c: arrays.entries_of_npy(p, d),
        "npz": lambda p, d, c: arrays.entries_of_npz(p, d),
        "parquet": lambda p, d, c: parquet.entries_of_parquet(p, d, c),
        "mtx": lambda p, d, c: matrix_market.entries_of_mtx(p, d),
        "zarr": lambda p, d, c: zarr_store.entries_of_zarr(p, d),
    }[fmt]
