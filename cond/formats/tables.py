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


def parse_text_block(block, delimiter: str, names, display, line_offset=0, start=0):
    """Parse delimited numeric rows (no header) with the numba kernel; (values, lines in block).

    ``block`` is any bytes-like object (``bytes``, an ``mmap``); parsing starts at byte
    ``start``. Values equal Python's ``float()`` of each field. Large blocks are cut at
    line ends and parsed by one thread per CPU (the kernel releases the GIL) on views of
    the bytes, each into its own rows of one output array: the text is never copied and
    the values are written once. Ragged rows and non-numbers raise an InputError naming
    the line (``line_offset`` lines precede the block).
    """
    from concurrent.futures import ThreadPoolExecutor

    from cond.kernels.text_parse import count_lines
    from cond.threads import default_threads

    buf = np.frombuffer(block, dtype=np.uint8)[start:]
    workers = default_threads() if len(buf) > PARALLEL_BYTES else 1
    pieces, first = [], 0
    for k in range(1, workers):
        cut = _next_newline(buf, len(buf) * k // workers)
        if cut < 0 or cut + 1 <= first:
            continue
        pieces.append((first, cut + 1))
        first = cut + 1
    pieces.append((first, len(buf)))
    views = [buf[a:b] for a, b in pieces]
    if len(pieces) == 1:
        counts = [count_lines(views[0])]
    else:
        with ThreadPoolExecutor(len(pieces)) as pool:
            counts = list(pool.map(count_lines, views))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    out = np.empty((int(offsets[-1]), len(names)))
    jobs = [(views[k], out[offsets[k]:offsets[k + 1]]) for k in range(len(pieces))]
    if len(pieces) == 1:
        parts = [_parse_piece(*jobs[0], delimiter)]
    else:
        with ThreadPoolExecutor(len(pieces)) as pool:
            parts = list(pool.map(lambda job: _parse_piece(*job, delimiter), jobs))
    for (a, b), (_, failure) in zip(pieces, parts):
        if failure is not None:  # line numbers are only counted on the error path
            line_before = line_offset + int(np.count_nonzero(buf[:a] == 10))
            _raise_parse_error(buf[a:b].tobytes(), failure, names, delimiter, display, line_before)
    lines = int(offsets[-1])
    if any(len(v) < c for (v, _), c in zip(parts, counts)):  # blank lines: close the gaps
        out = np.concatenate([v for v, _ in parts]) if len(parts) > 1 else parts[0][0]
    return out, lines


def _next_newline(buf, pos, window=1 << 16):
    """Index of the first newline at or after ``pos`` in a uint8 array, or -1."""
    while pos < len(buf):
        hit = buf[pos:pos + window].tobytes().find(b"\n")
        if hit >= 0:
            return pos + hit
        pos += window
    return -1


def _parse_piece(buf, out, delimiter):
    """(values, None) or (None, failure) for a uint8 view of whole lines, parsed into ``out``."""
    from cond.kernels.text_parse import OK, parse_delimited

    values, slow, status, bad_row, bad_col, found, _ = parse_delimited(buf, ord(delimiter), out.shape[1], out)
    if status != OK:
        return None, (status, bad_row, bad_col, found)
    for r, c, a, b in slow:
        text = buf[a:b].tobytes().decode("utf-8", errors="replace").strip().strip('"')
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
    """One entry: the numeric table of a CSV / TSV file (gzip allowed).

    A plain file is memory-mapped and parsed in place (no copy of the text); a gzip
    file is decompressed into memory first.
    """
    import contextlib
    import mmap

    display = str(path) if display is None else display
    name = _stem(display)
    with open(path, "rb") as f:
        magic = f.read(2)
    try:
        if magic == b"\x1f\x8b":
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            with open(path, "rb") as f:
                data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if os.fstat(f.fileno()).st_size \
                    else b""
    except (OSError, EOFError) as exc:
        raise InputError(f"cannot read ({exc})", path=display) from None
    try:
        matrix = _parse_table(data, delimiter, columns, display)
    finally:
        if isinstance(data, mmap.mmap):
            with contextlib.suppress(BufferError):  # views held by a traceback: unmapped when freed
                data.close()
    yield TensorEntry(name, matrix.shape, "text", display, None, None, lambda: matrix)


def _parse_table(data, delimiter, columns, display):
    """The selected columns of a delimited table held in ``data`` (bytes or an mmap)."""
    pos, skipped = 0, 0
    first_line = None
    while pos < len(data):
        end = data.find(b"\n", pos)
        end = len(data) if end < 0 else end
        line = data[pos:end]
        pos = end + 1
        skipped += 1
        if line.strip():
            first_line = line
            break
    if first_line is None:
        raise InputError("empty file", path=display)
    fields = first_line.decode("utf-8", errors="replace").rstrip("\r").split(delimiter)
    has_header = not all(looks_numeric(x) for x in fields)
    names = [x.strip().strip('"') for x in fields] if has_header else [str(i) for i in range(len(fields))]
    use = select_columns(names, columns, display)
    if not has_header:  # the first line is data: parse from its start
        pos -= len(first_line) + 1
        skipped -= 1
    table, _ = parse_text_block(data, delimiter, names, display, skipped, start=max(pos, 0))
    if len(table) == 0:
        raise InputError("has a header but no data rows", path=display)
    return table if use == list(range(len(names))) else np.ascontiguousarray(table[:, use])


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
