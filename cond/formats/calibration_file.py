"""The inputs of weighted compression: Fisher and input-Gram files, read lazily and checked.

Both are safetensors files keyed by the checkpoint's weight names:

- Fisher (``--fisher``): accumulated squared gradients per weight, either per
  element (the weight's shape) or already reduced to one importance per input
  feature (a vector of length ``in``) or per output feature (length ``out``).
  Any scale; non-negative and finite.
- Grams (``--activations``): per weight the Gram matrix X^T X of the layer's
  inputs, ``in x in``, symmetric (up to rounding of its dtype) and positive
  semidefinite.

A weight without an entry is compressed with plain SVD, and the report says
so. ``cond calibrate`` and :class:`cond.torch.calibrator.Calibrator` record in
the metadata how many input rows (tokens) each Gram was built from
(``cond.rows``: a JSON object name -> rows, or one integer for all); a Gram of
fewer rows than the layer has inputs is singular by construction (rank <= rows)
and is refused, with how much more text it needs. A file none of whose names matches a selected matrix is refused: that is a
naming mismatch (a ``model.`` prefix, say), not a choice.

Written by :func:`write_calibration` (``cond calibrate``, :class:`cond.torch.Calibrator`) and
read by :class:`CalibrationFile` (``cond compress --fisher / --activations``): one module for
the format, both ways.
"""

from __future__ import annotations

import math

import numpy as np

from cond.errors import InputError, UsageError
from cond.linalg.weighted import Weighting, fisher_weighting, whitening

SYMMETRY_TOLERANCE = {"F64": 2.0**-26, "F32": 2.0**-11, "F16": 2.0**-5, "BF16": 2.0**-4}


class CalibrationFile:
    """One Fisher or Gram file; ``weighting(name, shape)`` reads, checks and reduces one entry.

    Parameters
    ----------
    path : str
        The safetensors file.
    kind : {"fisher", "gram"}
    axis : {"in", "out", "both"}
        The Fisher variant (ignored for Grams).
    """

    def __init__(self, path, kind, axis="in"):
        from cond.formats import open_entries
        from cond.formats.detect import format_of

        self.path, self.kind, self.axis = str(path), kind, axis
        if format_of(self.path, self.path) != "safetensors":
            raise InputError(
                f"the {'Fisher' if kind == 'fisher' else 'Gram'} file must be a .safetensors "
                "file keyed by weight names",
                path=self.path,
            )
        with open_entries(self.path) as entries:
            self.entries = {e.name: e for e in entries}
        from cond.formats.safetensors_file import read_header

        self.metadata = read_header(self.path).metadata

    def rows(self, name):
        """How many input rows the entry was accumulated from, when the file says (else None)."""
        from cond.formats.safetensors_file import parse_json

        text = self.metadata.get("cond.rows")
        if text is None:
            return None
        value = parse_json(text, self.path, "cond.rows")
        if isinstance(value, dict):
            value = value.get(name)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InputError(
                f"metadata cond.rows must give non-negative integer row counts; got {value!r}",
                path=self.path,
                tensor=name,
            )
        return value

    def check_rows(self, entries):
        """Refuse a Gram built from fewer rows than its weight has inputs (it is singular)."""
        if self.kind != "gram":
            return
        for entry in entries:
            if entry.name not in self.entries:
                continue
            n = math.prod(entry.shape[1:])
            rows = self.rows(entry.name)
            if rows is not None and rows < n:
                unit = self.row_unit(rows)
                raise InputError(
                    f"this Gram was built from {rows} input rows for {n} inputs, so it is "
                    f"singular; calibrate on at least {n - rows} more {unit} of text "
                    f"(several times {n} is better)",
                    path=self.path,
                    tensor=entry.name,
                )

    def row_unit(self, rows):
        """What one input row of a layer is: a token, or a passage for a layer that sees one row per
        passage (a pooler), told by the file's token and sequence counts."""
        return row_unit(rows, self.metadata.get("cond.tokens"), self.metadata.get("cond.sequences"))

    def __contains__(self, name):
        return name in self.entries

    def check_names(self, names):
        """Refuse a file that matches none of the selected weights."""
        if names and not any(n in self.entries for n in names):
            ours = next(iter(names))
            theirs = next(iter(self.entries), "(none)")
            raise UsageError(
                f"no tensor name matches a selected matrix of the checkpoint (checkpoint has "
                f"'{ours}', this file '{theirs}'); write the file with the checkpoint's names",
                path=self.path,
            )

    def weighting(self, name, shape) -> Weighting:
        """The weighting of the weight ``name`` (stored ``shape``; compressed as (out, prod(rest)))."""
        entry = self.entries[name]
        m, n = shape[0], math.prod(shape[1:])
        values = entry.load()
        if not np.all(np.isfinite(values)):
            raise InputError("holds NaN or Inf", path=self.path, tensor=name, shape=entry.shape)
        return self._fisher(entry, values, shape, m, n) if self.kind == "fisher" else self._gram(entry, values, m, n)

    def _fisher(self, entry, values, shape, m, n):
        where = dict(path=self.path, tensor=entry.name, shape=entry.shape)
        if values.size and values.min() < 0:
            raise InputError(
                f"has negative entries (min {values.min():.3g}); squared gradients are non-negative", **where
            )
        if tuple(entry.shape) in (tuple(shape), (m, n)):
            values = values.reshape(m, n)
        elif values.ndim == 1 and self.axis != "both" and len(values) == (n if self.axis == "in" else m):
            pass
        else:
            wanted = f"{m}x{n} (per element)"
            if self.axis != "both":
                wanted += f" or a vector of length {n if self.axis == 'in' else m} (--fisher-axis {self.axis})"
            raise InputError(
                f"does not fit the weight of shape {'x'.join(map(str, shape))}: expected {wanted}", **where
            )
        return fisher_weighting(values, m, n, self.axis)

    def _gram(self, entry, values, m, n):
        where = dict(path=self.path, tensor=entry.name, shape=entry.shape)
        if tuple(entry.shape) != (n, n):
            raise InputError(f"a Gram matrix of this weight's inputs must be {n}x{n} (in x in)", **where)
        scale = float(np.max(np.abs(values))) if values.size else 0.0
        asymmetry = float(np.max(np.abs(values - values.T))) if values.size else 0.0
        tolerance = SYMMETRY_TOLERANCE.get(entry.dtype, 2.0**-11) * scale
        if asymmetry > tolerance:
            raise InputError(
                f"is not symmetric (max |G - G^T| = {asymmetry:.3g}, {asymmetry / scale:.2g} of "
                "its largest entry); a Gram matrix X^T X is",
                **where,
            )
        try:
            return whitening((values + values.T) / 2)
        except ValueError as exc:
            raise InputError(str(exc).replace("`gram` ", ""), **where) from None


def row_unit(rows, tokens, sequences) -> str:
    """``"passages"`` when a layer's row count is the number of passages (and not of tokens), else
    ``"tokens"``: a pooler sees one row per passage, so more tokens in the same passages do not help."""
    try:
        tokens, sequences = int(tokens), int(sequences)
    except (TypeError, ValueError):
        return "tokens"
    return "passages" if rows == sequences and rows != tokens else "tokens"


def write_calibration(plan, path, accumulated: dict, metadata: dict):
    """``{name: array}`` as float32 through the run's output ``plan`` (None: a plan of its own
    that replaces ``path``), metadata keys prefixed ``cond.``."""
    from safetensors.numpy import save_file

    from cond.formats.outputs import OutputPlan

    tensors = {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in accumulated.items()}
    own = plan is None
    plan = OutputPlan(force=True) if own else plan
    try:
        if own:
            plan.file(path, "--output")
        with plan.writing(path) as tmp:
            save_file(tensors, tmp, metadata={f"cond.{k}": str(v) for k, v in metadata.items()})
    finally:
        if own:
            plan.close()
