"""Delimited text (CSV / TSV, optionally gzipped) and Parquet tables as one matrix.

A header line is detected when any field of the first non-blank line is not a
number. ``columns`` selects columns by name, glob (``x*``), 0-based index or
index range (``2:5``), comma-separated, in the order given.
"""

from __future__ import annotations

import fnmatch
import gzip
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


def looks_numeric(field: str) -> bool:
    return bool(_NUMBER.match(field.strip().strip('"')))


PARALLEL_BYTES = 4 * 2**20  # blocks larger than this are parsed on all cores


def parse_text_block(block: bytes, delimiter: str, names, display, line_offset=0):
    """Parse delimited numeric rows (no header) with the numba kernel; (values, lines in block).

    Values equal Python's ``float()`` of each field. Large blocks are cut at line ends and
    parsed by one thread per CPU (the kernel releases the GIL). Ragged rows and non-numbers
    raise an InputError naming the line (``line_offset`` lines precede the block).
    """
    import os
    from concurrent.futures import ThreadPoolExecutor

    lines = block.count(b"\n") + (0 if block.endswith(b"\n") or not block else 1)
    workers = min(os.cpu_count() or 1, 8) if len(block) > PARALLEL_BYTES else 1
    pieces, start = [], 0
    for k in range(1, workers):
        cut = block.find(b"\n", len(block) * k // workers)
        if cut < 0 or cut + 1 <= start:
            continue
        pieces.append((start, cut + 1))
        start = cut + 1
    pieces.append((start, len(block)))
    if len(pieces) == 1:
        parts = [_parse_piece(block, delimiter, names)]
    else:
        with ThreadPoolExecutor(len(pieces)) as pool:
            parts = list(pool.map(lambda ab: _parse_piece(block[ab[0]:ab[1]], delimiter, names), pieces))
    for (a, b), (_, failure) in zip(pieces, parts):
        if failure is not None:  # line numbers are only counted on the error path
            line_before = line_offset + block.count(b"\n", 0, a)
            _raise_parse_error(block[a:b], failure, names, delimiter, display, line_before)
    return (parts[0][0] if len(parts) == 1 else np.vstack([v for v, _ in parts])), lines


def _parse_piece(piece, delimiter, names):
    """(values, None) or (None, failure) for one piece of whole lines."""
    from cond.kernels.text_parse import OK, parse_delimited

    buf = np.frombuffer(piece, dtype=np.uint8)
    # an upper bound without a counting pass: a row takes at least 2 bytes a field
    rows = len(piece) // (2 * len(names)) + 1
    values, slow, status, bad_row, bad_col, found = parse_delimited(buf, ord(delimiter), len(names), rows)
    if status != OK:
        return None, (status, bad_row, bad_col, found)
    for r, c, a, b in slow:
        text = piece[a:b].decode("utf-8", errors="replace").strip().strip('"')
        try:
            values[r, c] = float(text)
        except ValueError:
            return None, (-1, r, c, 0)
    return values, None


def _raise_parse_error(piece, failure, names, delimiter, display, line_offset):
    from cond.kernels.text_parse import RAGGED

    status, row, col, found = failure
    line = line_offset + _line_of_row(piece, row)
    if status == RAGGED:
        raise InputError(f"ragged rows: line {line} has {found} fields, expected {len(names)}", path=display)
    text = _field_text(piece, row, col, delimiter)
    raise InputError(f"non-numeric value {text[:40]!r} at line {line}, column '{names[col]}'", path=display)


def _nonblank_lines(block):
    return [(k, ln) for k, ln in enumerate(block.split(b"\n")) if ln.strip()]


def _line_of_row(block, row):
    """1-based line number (within the block) of the row-th non-blank line."""
    return _nonblank_lines(block)[row][0] + 1


def _field_text(block, row, col, delimiter):
    line = _nonblank_lines(block)[row][1].decode("utf-8", errors="replace").rstrip("\r")
    fields = line.split(delimiter)
    return fields[col].strip() if col < len(fields) else ""


def entries_of_delimited(path, display=None, delimiter=",", columns=None):
    """One entry: the numeric table of a CSV / TSV file (gzip allowed)."""
    display = str(path) if display is None else display
    name = _stem(display)
    with open(path, "rb") as f:
        magic = f.read(2)
    try:
        with (gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")) as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise InputError(f"cannot read ({exc})", path=display) from None
    if not data.strip():
        raise InputError("empty file", path=display)
    lines = data.split(b"\n")
    first = next(k for k, ln in enumerate(lines) if ln.strip())
    fields = lines[first].decode("utf-8", errors="replace").rstrip("\r").split(delimiter)
    has_header = not all(looks_numeric(x) for x in fields)
    names = [x.strip().strip('"') for x in fields] if has_header else [str(i) for i in range(len(fields))]
    use = select_columns(names, columns, display)
    skip = first + 1 if has_header else first
    body = b"\n".join(lines[skip:])
    if not body.strip():
        raise InputError("has a header but no data rows", path=display)
    table, _ = parse_text_block(body, delimiter, names, display, skip)
    matrix = np.ascontiguousarray(table[:, use])
    yield TensorEntry(name, matrix.shape, "text", display, None, None, lambda: matrix)


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
