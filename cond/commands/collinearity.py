"""``cond.collinearity`` (``cond inspect --collinearity``): which columns of a design make it
ill-conditioned. Belsley-Kuh-Welsch condition indexes and variance-decomposition
proportions, VIFs and the near-dependencies (:mod:`cond.linalg.collinearity`), with the
column names of the input; schema ``cond.collinearity/1``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from cond.commands.result import Result
from cond.commands.validate import check_design_memory
from cond.errors import InputError, UsageError, input_errors
from cond.formats import open_entries
from cond.formats.detect import format_of
from cond.linalg.collinearity import collinearity as bkw
from cond.linalg.collinearity import near_dependencies
from cond.threads import busy_aware_blas

SCHEMA = "cond.collinearity/1"


@dataclass(frozen=True)
class CollinearityReport(Result):
    """The collinearity of one design. ``to_dict()`` is the ``cond.collinearity/1`` object:
    ``input``, ``name``, ``rows``, ``columns`` (names), ``options`` (scale, center,
    add_intercept, threshold, proportion), ``condition_indexes`` (ascending), ``proportions``
    (one list per condition index, one value per column), ``vif`` (per column),
    ``dependencies`` (condition index above the threshold with the columns whose proportions
    exceed ``proportion``, largest first), ``max_condition_index`` and ``seconds``; infinite
    numbers are null."""

    SCHEMA = SCHEMA
    input: str
    name: str
    rows: int
    columns: tuple
    options: dict
    condition_indexes: tuple
    proportions: tuple
    vif: tuple
    dependencies: tuple
    seconds: float = 0.0

    @property
    def max_condition_index(self) -> float:
        return max(self.condition_indexes)

    def to_dict(self) -> dict:
        return self.document(
            name=self.name,
            rows=self.rows,
            columns=list(self.columns),
            condition_indexes=list(self.condition_indexes),
            proportions=[list(row) for row in self.proportions],
            vif=list(self.vif),
            dependencies=[dict(d) for d in self.dependencies],
            max_condition_index=self.max_condition_index,
        )


def collinearity(
    source,
    *,
    columns=None,
    add_intercept=False,
    scale=True,
    center=False,
    threshold=30.0,
    proportion=0.5,
    input_format=None,
    header=None,
    notice=None,
    name=None,
) -> CollinearityReport:
    """BKW diagnostics and VIFs of a design matrix.

    Parameters
    ----------
    source : str, os.PathLike or array_like
        A file holding one matrix (``.csv``, ``.tsv``, ``.npy``, ``.parquet``, ...), ``-``,
        or an array of shape (m, n), m >= n.
    columns : str, optional
        Table columns to use (names, globs, indices, ranges).
    add_intercept : bool
        Prepend a column of ones named ``const`` (refused when a constant column exists).
    scale, center : bool
        As ``colldiag``: columns scaled to unit length (default), not centred (default).
    threshold, proportion : float
        A near-dependency is a condition index above ``threshold`` with the columns whose
        proportions on it exceed ``proportion`` (BKW: 30 and 0.5).
    input_format, header, notice
        As for :func:`cond.inspect`.
    name : str, optional
        Name of an array ``source`` (default ``array``).

    Returns
    -------
    CollinearityReport
    """
    if not (threshold > 1 and 0 < proportion < 1):
        raise UsageError(
            f"`--ci-threshold` must be above 1 and the proportion in (0, 1); got {threshold}, {proportion}"
        )
    started = time.perf_counter()
    label, name, x, names = _design(source, columns, input_format, header, notice, name)
    if add_intercept:
        constant = np.flatnonzero((np.ptp(x, axis=0) == 0) & np.any(x != 0, axis=0))
        if len(constant):
            raise UsageError(
                f"column '{names[constant[0]]}' is already constant; `--add-intercept` would "
                "make the design exactly collinear",
                path=label,
            )
        x = np.column_stack([np.ones(len(x)), x])
        names = ("const", *names)
    with input_errors(path=label, shape=x.shape), busy_aware_blas():
        diag = bkw(x, scale=scale, center=center)
    deps = tuple(
        dict(index=k, condition_index=eta, columns=[names[j] for j in cols])
        for k, eta, cols in near_dependencies(diag, threshold, proportion)
    )
    options = dict(
        scale=bool(scale),
        center=bool(center),
        add_intercept=bool(add_intercept),
        threshold=float(threshold),
        proportion=float(proportion),
    )
    order = np.argsort(diag.condition_indexes, kind="stable")
    return CollinearityReport(
        input=label,
        name=name,
        rows=len(x),
        columns=tuple(names),
        options=options,
        condition_indexes=tuple(float(v) for v in diag.condition_indexes[order]),
        proportions=tuple(tuple(float(v) for v in diag.proportions[k]) for k in order),
        vif=tuple(float(v) for v in diag.vif),
        dependencies=tuple(dict(d, index=int(np.flatnonzero(order == d["index"])[0])) for d in deps),
        seconds=time.perf_counter() - started,
    )


def _design(source, columns, input_format, header, notice, name):
    """(label, name, float64 matrix, column names) of the one matrix of ``source``."""
    from cond.formats.sources import dataframe_matrix, source_kind

    kind = source_kind(source, "collinearity")
    if kind in ("array", "dataframe"):
        if columns is not None or input_format is not None or header is not None:
            raise UsageError(
                "`columns`, `input_format` and `header` apply to files; select the columns of "
                "an array or DataFrame before passing it"
            )
        if kind == "dataframe":
            label, (x, names) = "<DataFrame>", dataframe_matrix(source, "<DataFrame>")
        else:
            from cond.formats.sources import array_matrix

            label = "<array>"
            x = array_matrix(source, label)
            names = [str(j) for j in range(x.shape[1])]
        return label, name or ("array" if kind == "array" else "frame"), _checked_design(x, label), tuple(names)
    label = str(source)
    if str(source) != "-" and format_of(label, label, input_format) in ("safetensors", "index", "directory"):
        raise InputError(
            "is a checkpoint: its tensors are weights, not a design; the collinearity of a design "
            "needs one table or array (CSV, TSV, Parquet, .npy, ...)",
            path=label,
        )
    with open_entries(source, input_format=input_format, columns=columns, header=header, notice=notice) as entries:
        matrices = [e for e in entries if e.skip_reason is None]
    if len(matrices) != 1:
        raise InputError(f"holds {len(matrices)} matrices; the collinearity of a design needs one", path=label)
    entry = matrices[0]
    check_design_memory(entry.shape[0], int(np.prod(entry.shape[1:])), label, "collinearity", whole=True)
    x = entry.load()
    x = _checked_design(x.reshape(x.shape[0], -1), label)
    names = entry.columns or tuple(str(j) for j in range(x.shape[1]))
    return label, entry.name, x, tuple(names)


def _checked_design(x, label):
    """A design's values are finite and it has at least as many rows as columns."""
    if not np.all(np.isfinite(x)):
        raise InputError("holds NaN or Inf; drop or impute non-finite values first", path=label)
    if x.shape[0] < x.shape[1]:
        raise InputError(
            f"has fewer rows ({x.shape[0]}) than columns ({x.shape[1]}): a design needs at "
            "least one row per coefficient",
            path=label,
        )
    return x
