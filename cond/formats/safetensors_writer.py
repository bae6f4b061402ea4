"""A streaming safetensors writer: tensors are added one at a time, memory holds none of them.

Data goes to a spill file beside the output as it arrives; ``close()`` writes
the header (now that every size is known), copies the kept tensors' bytes
after it, and renames the result into place. Nothing is left behind on error,
and the input is never overwritten: the path is planned by the run's
:class:`cond.formats.outputs.OutputPlan`, which writes it.
A tensor added and then discarded costs spill space but is not written.
"""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np

from cond.formats.outputs import OutputPlan
from cond.formats.safetensors_file import _DTYPES

# numpy dtype name -> safetensors name: the inverse of the reader's one table
_NAMES = {np_name: name for name, (_, np_name, _) in _DTYPES.items() if np_name is not None}

COPY_CHUNK = 16 * 2**20


def dtype_name(dtype) -> str:
    """The safetensors name of a numpy (or ml_dtypes) dtype."""
    name = np.dtype(dtype).name
    if name not in _NAMES:
        raise ValueError(f"dtype {name} has no safetensors name")
    return _NAMES[name]


class SafetensorsWriter:
    """Context manager writing one safetensors file.

    >>> with SafetensorsWriter(plan, "out.safetensors", metadata={"k": "v"}) as w:  # doctest: +SKIP
    ...     w.add_array("x", np.eye(3, dtype=np.float32))
    ...     w.set_metadata("more", "values")

    ``plan`` is the run's :class:`~cond.formats.outputs.OutputPlan` (which has checked
    ``path``); None makes a plan of its own that replaces whatever is at ``path``.
    """

    def __init__(self, plan, path, *, metadata=None):
        self.path = os.fspath(path)
        self.metadata = dict(metadata or {})
        self._own_plan = plan is None
        self.plan = OutputPlan(force=True) if plan is None else plan
        self.entries = {}  # name -> (dtype, shape, spill offset, nbytes)
        self.size = 0

    def __enter__(self):
        if self._own_plan:
            self.plan.file(self.path)
        self._atomic = self.plan.writing(self.path)
        self._final = self._atomic.__enter__()
        fd, self._spill_path = tempfile.mkstemp(
            dir=os.path.dirname(os.path.abspath(self._final)), prefix=".cond-spill-", suffix=".tmp"
        )
        self._spill = os.fdopen(fd, "w+b")
        return self

    def __exit__(self, kind, value, tb):
        if kind is None:
            try:
                self._assemble()
            except BaseException as exc:  # a full disk at the end: the temporary file must not be renamed
                kind, value, tb = type(exc), exc, exc.__traceback__
        try:
            self._spill.close()  # flushing its buffer can meet the full disk too
        except OSError as exc:
            if kind is None:
                kind, value, tb = type(exc), exc, exc.__traceback__
        try:
            os.unlink(self._spill_path)
            if kind is None:
                self._atomic.__exit__(None, None, None)
            elif not self._atomic.__exit__(kind, value, tb):
                raise value  # the plan let it through unchanged (it replaces OS errors by one line)
        finally:
            if self._own_plan:
                self.plan.close(failed=kind is not None)
        return False

    def set_metadata(self, key: str, value: str):
        self.metadata[str(key)] = str(value)

    def add_array(self, name: str, array: np.ndarray):
        """Add an array in the dtype it is to be stored in (little-endian bytes)."""
        array = np.ascontiguousarray(array)
        data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        self.add_bytes(name, dtype_name(array.dtype), array.shape, data)

    def add_bytes(self, name: str, dtype: str, shape, data: bytes):
        """Add a tensor's raw little-endian bytes as they are (a byte-for-byte copy)."""
        if name in self.entries:
            raise ValueError(f"tensor {name!r} added twice")
        offset = self._spill.seek(0, os.SEEK_END)
        self._spill.write(data)
        self.entries[name] = (dtype, [int(d) for d in shape], offset, len(data))

    def discard(self, name: str):
        """Forget a tensor added earlier (it will not be written)."""
        del self.entries[name]

    def _assemble(self):
        header, position = {}, 0
        for name, (dtype, shape, _, nbytes) in self.entries.items():
            header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [position, position + nbytes]}
            position += nbytes
        if self.metadata:
            header["__metadata__"] = self.metadata
        blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
        blob += b" " * (-len(blob) % 8)  # data section 8-byte aligned, as the reference writer does
        self._spill.flush()
        with open(self._final, "wb") as out:
            out.write(len(blob).to_bytes(8, "little"))
            out.write(blob)
            for _, _, offset, nbytes in self.entries.values():
                self._spill.seek(offset)
                while nbytes:
                    chunk = self._spill.read(min(nbytes, COPY_CHUNK))
                    out.write(chunk)
                    nbytes -= len(chunk)
        self.size = 8 + len(blob) + position
