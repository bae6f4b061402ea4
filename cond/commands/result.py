"""What every command returns: a frozen result with a versioned schema and one ``to_dict()``.

Every JSON object cond prints starts with the same fields, in this order: ``schema``
(``cond.<command>/<N>``), ``cond_version``, ``input``, ``options`` (the checked request),
``seconds``; the command's own fields follow. Non-finite numbers become ``null`` (JSON has
no ``Infinity``), NumPy scalars plain numbers, tuples lists.
"""

from __future__ import annotations

import math
from typing import ClassVar


class Result:
    """The base of every command's result (a frozen dataclass with ``input``, ``options`` and
    ``seconds``); subclasses set ``SCHEMA`` and build ``to_dict()`` with :meth:`document`."""

    SCHEMA: ClassVar[str] = ""

    def document(self, **fields) -> dict:
        """The result's JSON object: the shared fields, then ``fields``, made JSON-safe."""
        from cond._version import __version__

        doc = dict(
            schema=self.SCHEMA,
            cond_version=__version__,
            input=self.input,
            options=dict(self.options or {}),
            seconds=self.seconds,
        )
        doc.update(fields)
        return json_safe(doc)


def json_safe(value):
    """``value`` with non-finite floats as None, NumPy scalars and arrays as Python values."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int):
        return value
    if hasattr(value, "tolist"):  # NumPy scalar or array
        return json_safe(value.tolist())
    return value
