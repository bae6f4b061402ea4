"""The one source layer: what each public function may read, and how it is opened.

Every public function (``cond.inspect``, ``compress``, ``expand``, ``sample``, ``dedup``,
``collinearity``, ``calibrate``) passes its ``source`` through :func:`source_kind` and
refuses, in one line naming the kind, what it cannot take (never the array's repr).

============  =======  =========  =====  =====  ======  ===========  =========
kind          inspect  compress   expand sample dedup   collinearity calibrate
============  =======  =========  =====  =====  ======  ===========  =========
path          yes      yes        yes    yes    yes     yes          yes
``-`` stdin   yes      no         no     yes    yes     yes          no
array         yes      no         no     yes    yes     yes          no
dict          yes      yes        no     no     no      no           no
DataFrame     yes      no         no     yes    yes     yes          no
============  =======  =========  =====  =====  ======  ===========  =========

*array* is a NumPy array or anything with ``__array__`` (a CuPy array is analysed on its
GPU by ``inspect``); *dict* maps tensor names to arrays (a checkpoint in memory);
*DataFrame* is a pandas DataFrame, whose column names are kept.

The rule for values, the same in every reader:

- **Collections of named tensors** (safetensors files, indexes, checkpoint folders,
  ``.npz`` archives, Zarr groups, dicts of arrays) are checkpoints: integer and bool
  tensors are ids, masks or quantized codes, not weights; they are listed as skipped
  with the reason.
- **One matrix** (an ``.npy``, a Zarr array, CSV / TSV, Parquet, Matrix Market, an
  array, a DataFrame) is data: integer and bool values are numbers, widened to float64
  (bool as 0 and 1; integers beyond 2**53 in magnitude round to the nearest float64).
- **Missing values** (an empty field or ``NA`` in text, a null in Parquet, a missing
  value in a DataFrame) are an error naming the row and the column, in every reader;
  a NaN or infinity *stored as a float* in an array file is a value (``inspect``
  reports it as non-finite; the design commands refuse it, naming row and column).
- **Column names** must be unique (a header, a Parquet schema, a DataFrame).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

from cond.errors import InputError, UsageError
from cond.formats.columns import check_unique

#: the source kinds each public function takes (the table above)
TAKES = {
    "inspect": ("path", "stdin", "array", "dict", "dataframe"),
    "compress": ("path", "dict"),
    "expand": ("path",),
    "sample": ("path", "stdin", "array", "dataframe"),
    "dedup": ("path", "stdin", "array", "dataframe"),
    "collinearity": ("path", "stdin", "array", "dataframe"),
    "calibrate": ("path",),
}

_SPOKEN = {
    "path": "a path",
    "stdin": "'-' (standard input)",
    "array": "an array",
    "dict": "a dict of arrays",
    "dataframe": "a pandas DataFrame",
}


def _is_dataframe(obj) -> bool:
    pandas = sys.modules.get("pandas")  # never imported for this: a DataFrame means pandas is loaded
    return pandas is not None and isinstance(obj, pandas.DataFrame)


def source_kind(source, command) -> str:
    """The kind of ``source`` (``path``, ``stdin``, ``array``, ``dict``, ``dataframe``), checked
    against what ``cond.<command>`` takes.

    Raises
    ------
    UsageError
        The kind is not one the function takes; the message names the kind, not the value.
    """
    if isinstance(source, (str, os.PathLike)):
        kind = "stdin" if os.fspath(source) == "-" else "path"
    elif isinstance(source, dict):
        kind = "dict"
    elif _is_dataframe(source):
        kind = "dataframe"
    elif hasattr(source, "__array__") or hasattr(source, "__cuda_array_interface__"):
        kind = "array"
    else:
        kind = None
    allowed = TAKES[command]
    if kind not in allowed:
        shown = _SPOKEN.get(
            kind or "",
            f"a {type(source).__module__}.{type(source).__qualname__}"
            if type(source).__module__ != "builtins"
            else f"a {type(source).__name__}",
        )
        raise UsageError(
            f"`cond.{command}` takes {', '.join(_SPOKEN[k] for k in allowed[:-1])}"
            f"{' or ' if len(allowed) > 1 else ''}{_SPOKEN[allowed[-1]]}; got {shown}"
        )
    if kind == "path" and not os.fspath(source):
        raise UsageError(f"`cond.{command}`: the path is empty")
    return kind


def dataframe_matrix(frame, label="<DataFrame>"):
    """``(float64 matrix, column names)`` of a DataFrame by the rule for data: numbers and bools
    widened, a missing value or a non-numeric column an error, names unique."""
    import numpy as np

    names = [str(c) for c in frame.columns]
    check_unique(names, label)
    columns = []
    for name, column in zip(names, (frame.iloc[:, j] for j in range(frame.shape[1]))):
        missing = column.isna().to_numpy()
        if missing.any():
            raise InputError(
                f"row {int(np.flatnonzero(missing)[0])} column '{name}' is a missing value; "
                "drop or impute missing values first",
                path=label,
            )
        kind = np.dtype(column.dtype).kind if isinstance(column.dtype, np.dtype) else getattr(column.dtype, "kind", "O")
        if kind not in "biuf":
            raise InputError(f"column '{name}' has dtype {column.dtype}, not numeric", path=label)
        columns.append(column.to_numpy(dtype=np.float64))
    if not columns:
        raise InputError("has no columns", path=label)
    return np.column_stack(columns), names


@contextlib.contextmanager
def design_source(source, command):
    """Open a design source for the streaming readers: yield ``(path, label, names)``.

    A path (or ``-``) is yielded as it is (``names`` None: the file's own); an array or a
    DataFrame is spilled to a temporary ``.npy`` read by the same reader as a file (the
    names of a DataFrame's columns kept), removed on exit.
    """
    kind = source_kind(source, command)
    if kind in ("path", "stdin"):
        yield os.fspath(source), os.fspath(source), None
        return
    import numpy as np

    if kind == "dataframe":
        label = "<DataFrame>"
        matrix, names = dataframe_matrix(source, label)
    else:
        label = "<array>"
        matrix, names = array_matrix(source, label), None
    fd, tmp = tempfile.mkstemp(prefix="cond-design-", suffix=".npy")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, matrix)
        yield tmp, label, names
    finally:
        os.unlink(tmp)


def array_matrix(source, label):
    import numpy as np

    if hasattr(source, "get") and hasattr(source, "__cuda_array_interface__"):
        source = source.get()  # CuPy: the design commands stream from the host
    array = np.asarray(source)
    if array.dtype.hasobject or array.dtype.kind not in "biuf":
        raise InputError(f"has dtype {array.dtype}, not numeric", path=label)
    if array.ndim != 2:
        raise InputError(
            f"a design is 2-D (rows x columns); got {array.ndim}-D shape {'x'.join(map(str, array.shape)) or 'scalar'}",
            path=label,
        )
    return np.ascontiguousarray(array, dtype=np.float64)


@contextlib.contextmanager
def checkpoint_source(source, command):
    """Open a checkpoint-like source as a path: yield ``(path, label)``. A dict of arrays becomes a
    temporary safetensors file (removed on exit); errors that name it name ``<dict>`` instead."""
    kind = source_kind(source, command)
    if kind != "dict":
        yield os.fspath(source), os.fspath(source)
        return
    from cond.errors import CondError

    folder = tempfile.mkdtemp(prefix="cond-dict-")
    tmp = os.path.join(folder, "dict.safetensors")
    try:
        write_dict(source, tmp)
        try:
            yield tmp, "<dict>"
        except CondError as exc:
            if exc.path == tmp:
                exc.path = "<dict>"
            raise
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        os.rmdir(folder)


def dict_arrays(source, label="<dict>"):
    """``{name: ndarray}`` of a dict source: names are strings, values arrays (no objects)."""
    import numpy as np

    out = {}
    for name, value in source.items():
        if not isinstance(name, str):
            raise UsageError(
                f"a dict source maps tensor names (str) to arrays; got a key of type {type(name).__name__}", path=label
            )
        if hasattr(value, "detach"):  # a torch tensor: its values, on the host
            value = value.detach().cpu().numpy()
        elif hasattr(value, "get") and hasattr(value, "__cuda_array_interface__"):
            value = value.get()
        if not hasattr(value, "__array__") and not isinstance(value, np.ndarray):
            raise UsageError(
                f"a dict source maps tensor names to arrays; '{name}' is a {type(value).__name__}", path=label
            )
        array = np.asarray(value)
        if array.dtype.hasobject:
            raise InputError("holds Python objects, not numbers", path=label, tensor=name)
        out[name] = np.ascontiguousarray(array)
    return out


def write_dict(source, path):
    """A dict of arrays as a safetensors file (each array in its own dtype)."""
    import ml_dtypes  # noqa: F401 - bf16 and fp8 arrays need their dtypes registered
    from safetensors.numpy import save_file

    arrays = dict_arrays(source)
    try:
        save_file(arrays, path)
    except (ValueError, TypeError) as exc:
        raise InputError(f"cannot be held as a checkpoint ({exc})", path="<dict>") from None
