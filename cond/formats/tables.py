"""Delimited text (CSV / TSV, optionally gzipped) and Parquet tables as one matrix.

A header line is detected when any field of the first non-blank line is not a
number. ``columns`` selects columns by name, glob (``x*``), 0-based index or
index range (``2:5``), comma-separated, in the order given.
"""

from __future__ import annotations

import fnmatch
import gzip
import io
import os
import re

import numpy as np

from cond.errors import InputError, UsageError
from cond.formats.entry import TensorEntry, unit_roundoff

_NUMBER = re.compile(r"^\s*[-+]?(\d+\.?\d*([eE][-+]?\d+)?|\.\d+([eE][-+]?\d+)?|nan|inf|infinity)\s*$",
                     re.IGNORECASE)


def select_columns(names, spec, display):
    """0-based indices of the columns that ``spec`` names, in the order given.

    Raises
    ------
    UsageError
        When an item of ``spec`` matches no column.
    """
    if spec is None:
        return list(range(len(names)))
    chosen = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if re.fullmatch(r"\d+", item):
            hits = [int(item)] if int(item) < len(names) else []
        elif re.fullmatch(r"\d*:\d*", item):
            lo, hi = item.split(":")
            hits = list(range(len(names)))[int(lo or 0):int(hi) if hi else None]
        else:
            hits = [i for i, n in enumerate(names) if fnmatch.fnmatchcase(n, item)]
        if not hits:
            raise UsageError(f"`--columns` item {item!r} matches no column; the columns are "
                             f"{', '.join(names[:12])}{' ...' if len(names) > 12 else ''}", path=display)
        chosen.extend(h for h in hits if h not in chosen)
    return chosen


def _open_text(path):
    with open(path, "rb") as f:
        magic = f.read(2)
    raw = gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8", errors="strict", newline="")


def entries_of_delimited(path, display=None, delimiter=",", columns=None):
    """One entry: the numeric table of a CSV / TSV file (gzip allowed)."""
    display = str(path) if display is None else display
    name = _stem(display)
    try:
        with _open_text(path) as f:
            text = f.read()
    except (UnicodeDecodeError, OSError, EOFError) as exc:
        raise InputError(f"cannot read as text ({exc})", path=display) from None
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise InputError("empty file" if not text else "file holds no data rows", path=display)
    fields = lines[first].split(delimiter)
    has_header = not all(_NUMBER.match(x) for x in fields)
    names = [x.strip().strip('"') for x in fields] if has_header else [str(i) for i in range(len(fields))]
    use = select_columns(names, columns, display)
    body_start = first + 1 if has_header else first
    if not any(line.strip() for line in lines[body_start:]):
        raise InputError("has a header but no data rows", path=display)
    try:
        table = np.loadtxt(io.StringIO(text), delimiter=delimiter, skiprows=body_start,
                           dtype=np.float64, ndmin=2, comments=None)
    except ValueError:
        _raise_first_bad_line(lines, body_start, delimiter, names, display)
        raise
    if table.shape[1] != len(names):
        raise InputError(f"header has {len(names)} fields but rows have {table.shape[1]}", path=display)
    matrix = np.ascontiguousarray(table[:, use])
    yield TensorEntry(name, matrix.shape, "text", display, None, None, lambda: matrix)


def _raise_first_bad_line(lines, start, delimiter, names, display):
    width = len(names)
    for number, line in enumerate(lines[start:], start=start + 1):
        if not line.strip():
            continue
        fields = line.split(delimiter)
        if len(fields) != width:
            raise InputError(f"ragged rows: line {number} has {len(fields)} fields, expected {width}",
                             path=display)
        for j, x in enumerate(fields):
            if not _NUMBER.match(x):
                raise InputError(f"non-numeric value {x.strip()[:40]!r} at line {number}, column "
                                 f"'{names[j]}'", path=display)


def entries_of_parquet(path, display=None, columns=None):
    """One entry: the numeric columns of a Parquet file (needs pyarrow)."""
    display = str(path) if display is None else display
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError("reading Parquet needs pyarrow: pip install 'cond[parquet]'",
                         path=display) from None
    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise InputError(f"not a valid Parquet file ({str(exc).splitlines()[0]})", path=display) from None
    names = list(schema.names)
    use = select_columns(names, columns, display)
    import pyarrow as pa

    for i in use:
        t = schema.field(i).type
        if not (pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_boolean(t)):
            raise InputError(f"column '{names[i]}' has type {t}, not numeric; choose numeric "
                             "columns with --columns", path=display)

    def load():
        table = pq.read_table(path, columns=[names[i] for i in use])
        cols = [np.asarray(table.column(k).to_numpy(zero_copy_only=False), dtype=np.float64)
                for k in range(table.num_columns)]
        return np.column_stack(cols) if cols else np.empty((0, 0))

    rows = pq.ParquetFile(path).metadata.num_rows
    kinds = {str(schema.field(i).type) for i in use}
    dtype = kinds.pop() if len(kinds) == 1 else "mixed"
    widths = {"double": np.float64, "float": np.float32, "halffloat": np.float16}
    u = unit_roundoff(widths[dtype]) if dtype in widths else None
    yield TensorEntry(_stem(display), (rows, len(use)), dtype, display, u, None, load)


def _stem(display):
    base = os.path.basename(display)
    for ext in (".gz", ".csv", ".tsv", ".txt", ".parquet"):
        if base.lower().endswith(ext):
            base = base[: -len(ext)]
    return base or "table"
