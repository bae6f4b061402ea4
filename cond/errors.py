"""Typed errors that carry where a problem was found.

Every error cond raises on purpose is a :class:`CondError`. It carries the
path, the tensor name and the shape that were involved, so that the command
line can print one line naming the file and the problem, and library users can
inspect the fields.
"""

from __future__ import annotations


class CondError(Exception):
    """Base class of the errors cond raises on purpose.

    Parameters
    ----------
    message : str
        What is wrong, stating the rule and the observed value.
    path : str, optional
        The file (or ``-`` for standard input) the problem was found in.
    tensor : str, optional
        The tensor (or column, or array) the problem concerns.
    shape : tuple of int, optional
        The shape of that tensor.
    """

    def __init__(self, message, *, path=None, tensor=None, shape=None):
        super().__init__(message)
        self.message = message
        self.path = None if path is None else str(path)
        self.tensor = tensor
        self.shape = None if shape is None else tuple(shape)

    def __reduce__(self):
        # keep path, tensor and shape when the error crosses processes (Dask workers)
        return _rebuild, (type(self), self.message, self.path, self.tensor, self.shape)

    def one_line(self) -> str:
        """The error as one line: ``path: tensor 'x' (shape 3x4): message``."""
        parts = []
        if self.path is not None:
            parts.append(self.path)
        if self.tensor is not None:
            where = f"tensor '{self.tensor}'"
            if self.shape is not None:
                where += f" (shape {'x'.join(map(str, self.shape)) or 'scalar'})"
            parts.append(where)
        parts.append(self.message)
        return ": ".join(p.replace("\n", " ") for p in parts)

    def __str__(self) -> str:
        return self.one_line()


def _rebuild(cls, message, path, tensor, shape):
    return cls(message, path=path, tensor=tensor, shape=shape)


class InputError(CondError):
    """The input cannot be read: missing, empty, corrupt, truncated or unsupported."""


class UsageError(CondError):
    """An argument breaks a rule (a parameter out of range, an unknown column)."""


class OutputError(CondError):
    """An output cannot be written: no space, a read-only folder, permission denied, or
    another run writing the same path. Nothing is left behind."""


class input_errors:  # noqa: N801 - used as a context manager, read as a phrase
    """The boundary between ``cond.linalg`` and a command: a ``ValueError`` raised by the
    numerics on this input (a zero matrix, a rank it cannot have) becomes an
    :class:`InputError` naming the file, tensor and shape.

    >>> with input_errors(path="X.npy"):  # doctest: +SKIP
    ...     scores = leverage_scores(blocks, n, d, rcond)
    """

    def __init__(self, *, path=None, tensor=None, shape=None):
        self.where = dict(path=path, tensor=tensor, shape=shape)

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        if kind is not None and issubclass(kind, ValueError) and not isinstance(value, CondError):
            raise InputError(str(value), **self.where) from value
        return False
