"""Matrix Market ``.mtx`` files (coordinate or array), read with SciPy, made dense."""

from __future__ import annotations

import os
import re

import numpy as np

from cond.errors import InputError
from cond.formats.entry import TensorEntry, unit_roundoff

# Dense float64 copies above this many entries are refused with a message, not an OOM.
MAX_DENSE_ENTRIES = 2**31
# What the data lines of a real, integer or pattern file may hold: digits, signs, points,
# exponents and spaces. SciPy's reader takes "0x10" as 0 and "1.5abc" as 1.5 without a word.
_NOT_NUMERIC = re.compile(rb"[^0-9eE+\-. \t\r\n]")
_TOKEN = re.compile(rb"[^ \t\r\n]+")
_NUMBER = re.compile(rb"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _check_values(path, display):
    """Every field of the data lines is a number, or one InputError naming the line."""
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while data.startswith(b"%", pos):  # the banner and comment lines
        pos = data.find(b"\n", pos) + 1 or len(data)
    for match in _TOKEN.finditer(data, pos):
        token = match.group(0)
        if _NOT_NUMERIC.search(token) or not _NUMBER.fullmatch(token):
            line = data.count(b"\n", 0, match.start()) + 1
            raise InputError(f"line {line}: {token[:40].decode('utf-8', 'replace')!r} is not a number", path=display)


def entries_of_mtx(path, display=None):
    """One entry: the Matrix Market matrix, densified on load."""
    import scipy.io

    display = str(path) if display is None else display
    try:
        rows, cols, _, fmt, field, _ = scipy.io.mminfo(path)
    except (ValueError, OSError, IndexError) as exc:
        raise InputError(f"not a valid Matrix Market file ({exc})", path=display) from None
    if field not in ("real", "integer", "pattern", "double"):
        raise InputError(f"Matrix Market field {field!r} is not analysed (real, integer or pattern only)", path=display)
    if rows * cols > MAX_DENSE_ENTRIES:
        raise InputError(f"a {rows}x{cols} matrix is too large to analyse densely", path=display)

    def load():
        _check_values(path, display)
        try:
            m = scipy.io.mmread(path)
        except (ValueError, OSError, IndexError) as exc:
            raise InputError(f"cannot read Matrix Market data ({exc})", path=display) from None
        return np.asarray(m.toarray() if hasattr(m, "toarray") else m, dtype=np.float64)

    name = os.path.splitext(os.path.basename(display))[0] or "matrix"
    yield TensorEntry(name, (rows, cols), field, display, unit_roundoff(np.float64), None, load)
