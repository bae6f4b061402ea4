"""Which reader a path needs: from ``input_format``, the name, or the first bytes.

Standard input (``-``) is spilled to a temporary file first, so every reader
works on a real file and may seek; the file is removed when the source closes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile

from cond.errors import InputError, UsageError

#: every input format a reader serves (``--input-format``); a folder is "directory" or "zarr"
FORMATS = ("safetensors", "index", "npy", "npz", "csv", "tsv", "mtx", "parquet", "zarr")

_PICKLE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".bin", ".ckpt")


def format_of(path, display, input_format=None) -> str:
    """The format to read ``path`` as; ``input_format`` wins when given."""
    if input_format is not None:
        if input_format not in FORMATS:
            raise UsageError(f"`--input-format` must be one of {', '.join(FORMATS)}; got {input_format!r}")
        if input_format == "zarr" and not os.path.isdir(path):
            raise InputError(
                "is not a Zarr store (a folder); drop `--input-format zarr` or give the store", path=display
            )
        if input_format != "zarr" and os.path.isdir(path):
            raise InputError(
                f"is a folder, not a {input_format} file; drop `--input-format {input_format}`", path=display
            )
        return input_format
    if os.path.isdir(path):
        from cond.formats.zarr_store import is_zarr

        return "zarr" if is_zarr(path) else "directory"
    name = display.lower()
    if name.endswith(".safetensors.index.json"):
        return "index"
    for ext, fmt in (
        (".safetensors", "safetensors"),
        (".npy", "npy"),
        (".npz", "npz"),
        (".csv", "csv"),
        (".csv.gz", "csv"),
        (".tsv", "tsv"),
        (".tsv.gz", "tsv"),
        (".mtx", "mtx"),
        (".parquet", "parquet"),
    ):
        if name.endswith(ext):
            return fmt
    return _sniff(path, display)


def _sniff(path, display) -> str:
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except FileNotFoundError:
        raise InputError("no such file", path=display) from None
    if not head:
        raise InputError("empty file", path=display)
    if head[:1] == b"\x80" or display.lower().endswith(_PICKLE_SUFFIXES) and head[:2] == b"PK":
        raise InputError(
            "looks like a pickle (or a PyTorch zip checkpoint); cond never loads pickles. "
            "Convert it to safetensors first",
            path=display,
        )
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"PK"):
        return "npz"
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"%%MatrixMarket"):
        return "mtx"
    n = int.from_bytes(head[:8], "little") if len(head) >= 9 else 0
    if 0 < n < 100 * 2**20 and head[8:9] == b"{":
        return "safetensors"
    raise InputError(
        f"cannot tell the format from the name or the first bytes; use --input-format ({', '.join(FORMATS)})",
        path=display,
    )


@contextlib.contextmanager
def local_path(path):
    """Yield ``(real_path, display_name)``; ``-`` becomes a temporary copy of stdin."""
    if str(path) != "-":
        if not os.path.exists(path):
            raise InputError("no such file or directory", path=str(path))
        yield str(path), str(path)
        return
    fd, tmp = tempfile.mkstemp(prefix="cond-stdin-")
    try:
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
        yield tmp, "-"
    finally:
        os.unlink(tmp)
