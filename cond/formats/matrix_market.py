"""Matrix Market ``.mtx`` files (coordinate or array), read with SciPy, made dense."""

from __future__ import annotations

import os

import numpy as np

from cond.errors import InputError
from cond.formats.entry import TensorEntry, unit_roundoff

# Dense float64 copies above this many entries are refused with a message, not an OOM.
MAX_DENSE_ENTRIES = 2**31


def entries_of_mtx(path, display=None):
    """One entry: the Matrix Market matrix, densified on load."""
    import scipy.io

    display = str(path) if display is None else display
    try:
        rows, cols, _, fmt, field, _ = scipy.io.mminfo(path)
    except (ValueError, OSError, IndexError) as exc:
        raise InputError(f"not a valid Matrix Market file ({exc})", path=display) from None
    if field not in ("real", "integer", "pattern", "double"):
        raise InputError(f"Matrix Market field {field!r} is not analysed (real, integer or "
                         "pattern only)", path=display)
    if rows * cols > MAX_DENSE_ENTRIES:
        raise InputError(f"a {rows}x{cols} matrix is too large to analyse densely", path=display)

    def load():
        try:
            m = scipy.io.mmread(path)
        except (ValueError, OSError, IndexError) as exc:
            raise InputError(f"cannot read Matrix Market data ({exc})", path=display) from None
        return np.asarray(m.toarray() if hasattr(m, "toarray") else m, dtype=np.float64)

    name = os.path.splitext(os.path.basename(display))[0] or "matrix"
    yield TensorEntry(name, (rows, cols), field, display, unit_roundoff(np.float64), None, load)
