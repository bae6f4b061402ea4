"""Delimited text (CSV / TSV, optionally gzipped, a file or standard input): one matrix for
``inspect`` and a row stream for ``sample``, read by the same rules.

The rules of a text table, the same for ``inspect`` and ``sample`` (:func:`text_layout`
and the kernel):

- a UTF-8 byte-order mark is not part of the first name; blank lines and comment lines
  (first non-blank character ``#``, as in ``cond sample`` output) are skipped;
  LF, CRLF and CR-only (classic Mac) line ends are all read;
- the first content line is a header when one of its fields is neither a number nor a
  missing-value token, or when it follows cond's own ``# cond sample`` line (empty, ``NA``, ``N/A``, ``null``, ``None``): a data row with a
  missing value stays data, and then fails with the line and column named; the caller
  is told when cond decided so (``--header`` / ``--no-header`` decide instead);
- a quoted field runs to its closing quote: ``"1,000"`` is one field, and not a number;
- every value must be a number (Python's ``float()`` spelling); an empty field or a
  trailing delimiter is an error that names the line and what to do.

``columns`` selects columns by name, glob (``x*``), 0-based index or index range
(``2:5``), comma-separated, in the order given.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import os
import re
import tempfile
from dataclasses import dataclass

import numpy as np

from cond.errors import InputError
from cond.formats.columns import check_unique, select_columns, table_stem
from cond.formats.entry import TensorEntry

_NUMBER = re.compile(r"^\s*[-+]?(\d+\.?\d*([eE][-+]?\d+)?|\.\d+([eE][-+]?\d+)?|nan|inf|infinity)\s*$", re.IGNORECASE)


def looks_numeric(field: str) -> bool:
    return bool(_NUMBER.match(field.strip().strip('"')))


MISSING_TOKENS = frozenset({"", "na", "n/a", "#n/a", "null", "none"})
BOM = b"\xef\xbb\xbf"
OWN_OUTPUT = b"# cond sample "  # the first line of `cond sample` text output, then its column names


@dataclass(frozen=True)
class TextLayout:
    """Where a text table's data starts, and its column names.

    Attributes
    ----------
    names : list of str
        Column names from the header, or ``"0"``, ``"1"``, ... without one.
    start : int
        Byte offset of the first data line.
    lines : int
        Lines before ``start`` (for the line numbers of errors).
    header_line : int or None
        1-based line of the header that cond detected (None: no header, or the
        caller said so with ``header``).
    """

    names: list
    start: int
    lines: int
    header_line: int | None


def split_fields(line: str, delimiter: str) -> list:
    """The fields of one line, quotes honoured (``"1,000"`` is one field), stripped."""
    return [f.strip() for f in next(csv.reader([line], delimiter=delimiter), [""])]


def text_layout(data, delimiter, display, header=None) -> TextLayout:
    """The layout of a text table from its first bytes (enough to hold the first content line).

    ``header``: True or False decides; None lets the first content line decide (see the
    module's rules).
    """
    refuse_binary(data, display)
    pos = len(BOM) if bytes(data[: len(BOM)]) == BOM else 0
    lines, own_output = 0, False
    while True:
        if pos >= len(data):
            raise InputError("empty file (no data line)", path=display)
        end = data.find(b"\n", pos)
        end = len(data) if end < 0 else end
        line = bytes(data[pos:end])
        if line.strip() and not line.lstrip().startswith(b"#"):
            break
        own_output = own_output or line.startswith(OWN_OUTPUT)
        pos, lines = end + 1, lines + 1
    fields = split_fields(line.decode("utf-8", errors="replace").rstrip("\r"), delimiter)
    detected = header is None and not own_output  # cond's own output always has a header line
    if header is None:
        header = own_output or any(not looks_numeric(f) and f.lower() not in MISSING_TOKENS for f in fields)
    if not header:
        return TextLayout([str(j) for j in range(len(fields))], pos, lines, None)
    check_unique(fields, display)
    return TextLayout(fields, end + 1, lines + 1, lines + 1 if detected else None)


SNIFF_BYTES = 1 << 16


def refuse_binary(data, display):
    """Text tables are text: a NUL byte, or bytes that are not UTF-8, in the first 64 KiB mean a
    binary file read as text (an ``.npy`` given ``--input-format csv``): one line, exit 2."""
    head = bytes(data[:SNIFF_BYTES])
    bad = head.find(b"\0")
    if bad < 0:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad = exc.start if exc.start < len(head) - 3 else -1  # a character cut at the window's end is fine
    if bad >= 0:
        raise InputError(
            f"is not text (a binary byte at offset {bad}); give its real format with "
            "--input-format, or a CSV / TSV file",
            path=display,
        )


def header_notice(display, layout) -> str | None:
    """The one line that tells the user cond read a line as a header (None when it did not decide)."""
    if layout.header_line is None:
        return None
    shown = ", ".join(layout.names[:4]) + (", ..." if len(layout.names) > 4 else "")
    return f"{display}: read line {layout.header_line} as a header ({shown}); pass --no-header if it is data"


def lf_line_ends(data):
    """``data`` with CR-only line ends (classic Mac) turned into LF; other text as it is."""
    head = bytes(data[: 1 << 20])
    if b"\r" in head and b"\n" not in head:
        return bytes(data).replace(b"\r", b"\n")
    return data


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
    jobs = [(views[k], out[offsets[k] : offsets[k + 1]]) for k in range(len(pieces))]
    if len(pieces) == 1:
        buf, out_view = jobs[0]
        parts = [_parse_piece(buf, out_view, delimiter)]
    else:
        with ThreadPoolExecutor(len(pieces)) as pool:
            parts = list(pool.map(lambda job: _parse_piece(job[0], job[1], delimiter), jobs))
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
        hit = buf[pos : pos + window].tobytes().find(b"\n")
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
    text_line = _content_lines(piece)[row][1].decode("utf-8", errors="replace").rstrip("\r")
    trailing = text_line.rstrip().endswith(delimiter) if delimiter.strip() else text_line.endswith(delimiter)
    if status == RAGGED:
        if trailing and found == len(names) + 1:
            raise InputError(
                f"line {line} ends with the delimiter (an empty last field); remove the trailing delimiters",
                path=display,
            )
        raise InputError(f"ragged rows: line {line} has {found} fields, expected {len(names)}", path=display)
    fields = split_fields(text_line, delimiter)
    text = fields[col] if col < len(fields) else ""
    where = f"line {line}, column '{names[col]}'"
    if text == "" and trailing and col == len(names) - 1:
        raise InputError(
            f"line {line} ends with the delimiter (an empty last field); remove the trailing "
            "delimiters (and the empty last name of the header)",
            path=display,
        )
    if text.lower() in MISSING_TOKENS:
        raise InputError(
            f"missing value {text!r} at {where}: cond needs every value; impute or drop the row first", path=display
        )
    raise InputError(f"non-numeric value {text[:40]!r} at {where}", path=display)


def _content_lines(block):
    """(index, line) of the lines the kernel parses: not blank, not a '#' comment."""
    return [(k, ln) for k, ln in enumerate(block.split(b"\n")) if ln.strip() and not ln.lstrip().startswith(b"#")]


def _line_of_row(block, row):
    """1-based line number (within the block) of the row-th content line."""
    return _content_lines(block)[row][0] + 1


def is_gzip(path) -> bool:
    """Whether the file starts with the gzip magic bytes (a .gz name is not required)."""
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def entries_of_delimited(path, display=None, delimiter=",", columns=None, header=None, notice=None):
    """One entry: the numeric table of a CSV / TSV file (gzip allowed).

    A plain file is memory-mapped and parsed in place (no copy of the text); a gzip
    file is decompressed into memory first. ``notice(line)`` hears when cond decided
    that the first line is a header.
    """
    import contextlib
    import mmap

    display = str(path) if display is None else display
    name = table_stem(display)
    try:
        if is_gzip(path):
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            with open(path, "rb") as f:
                data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if os.fstat(f.fileno()).st_size else b""
    except (OSError, EOFError) as exc:
        raise InputError(f"cannot read ({exc})", path=display) from None
    try:
        matrix, names = _parse_table(lf_line_ends(data), delimiter, columns, display, header, notice)
    finally:
        if isinstance(data, mmap.mmap):
            with contextlib.suppress(BufferError):  # views held by a traceback: unmapped when freed
                data.close()
    yield TensorEntry(name, matrix.shape, "text", display, None, None, lambda: matrix, columns=tuple(names))


def _parse_table(data, delimiter, columns, display, header=None, notice=None):
    """(the selected columns of a delimited table held in ``data`` (bytes or an mmap), their names)."""
    layout = text_layout(data, delimiter, display, header)
    use = select_columns(layout.names, columns, display)
    table, _ = parse_text_block(data, delimiter, layout.names, display, layout.lines, start=layout.start)
    if len(table) == 0:
        raise InputError("has a header but no data rows", path=display)
    if notice is not None and header_notice(display, layout):
        notice(header_notice(display, layout))
    names = [layout.names[j] for j in use]
    return (table if use == list(range(len(layout.names))) else np.ascontiguousarray(table[:, use])), names


TEXT_CHUNK_BYTES = 32 * 2**20


@contextlib.contextmanager
def rows_of_delimited(path, display, delimiter, header=None, notice=None):
    """Parse a delimited text file once into a temporary float64 .npy; yield (path, names).

    The table's layout (header, first data line) comes from :func:`text_layout`, the
    rules ``inspect`` reads text by.
    """
    opener = gzip.open if is_gzip(path) else open
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
