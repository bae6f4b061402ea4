"""``cond dedup``: drop near-duplicate columns of a design, and say what that did to kappa.

Two streaming passes over the rows (a design too big for memory is fine: the state is
d x d): the first accumulates the centred cross-product (correlations) and the TSQR R
factor; columns are then kept greedily in file order (or those matching ``prefer``
first), dropping each whose absolute correlation with a kept column reaches
``max_corr``. kappa and the effective rank before and after come from R and its kept
columns (A[:, keep] = Q R[:, keep], so their singular values are A's, without squaring
kappa). The second pass writes the kept columns. Schema ``cond.dedup/1``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

from cond.commands.choices import regex_option
from cond.commands.result import Result
from cond.commands.validate import check_design_memory
from cond.errors import UsageError, input_errors
from cond.formats.outputs import OutputPlan
from cond.formats.row_stream import open_rows
from cond.formats.sources import design_source
from cond.linalg.correlation import Moments, greedy_deduplication
from cond.linalg.leverage import RTree
from cond.linalg.spectrum import EPS64, UNRESOLVED_THRESHOLD
from cond.threads import busy_aware_blas

SCHEMA = "cond.dedup/1"
OUTPUT_SUFFIXES = (".csv", ".tsv", ".csv.gz", ".tsv.gz", ".npy")


@dataclass(frozen=True)
class DedupReport(Result):
    """What ``cond dedup`` kept and dropped. ``to_dict()`` is the ``cond.dedup/1`` object:
    ``input``, ``output`` (or null), ``rows``, ``options`` (max_corr, prefer), ``kept``
    (names), ``dropped`` (``column``, ``partner`` kept in its place, ``correlation``),
    ``constant`` (columns without a correlation, kept), and ``before`` / ``after``
    (``kappa``, its ``status`` as in cond inspect, ``effective_rank``), ``seconds``."""

    input: str
    output: Optional[str]
    rows: int
    options: dict
    kept: tuple
    dropped: tuple
    constant: tuple
    before: dict
    after: dict
    seconds: float = 0.0
    SCHEMA = SCHEMA

    def to_dict(self) -> dict:
        return self.document(
            output=self.output,
            rows=self.rows,
            kept=list(self.kept),
            dropped=[dict(d) for d in self.dropped],
            constant=list(self.constant),
            before=dict(self.before),
            after=dict(self.after),
        )


def dedup(
    source,
    output=None,
    *,
    max_corr=0.95,
    max_rel_mse=None,
    prefer=None,
    columns=None,
    input_format=None,
    header=None,
    notice=None,
    force=False,
) -> DedupReport:
    """Drop near-duplicate columns of a design matrix.

    Parameters
    ----------
    source : str
        ``.npy``, ``.npz``, ``.csv`` / ``.tsv`` (gzip too), ``.parquet``, a Zarr store or ``-``.
    output : str, optional
        Where to write the kept columns (``.csv``, ``.tsv``, gzipped or not, with a header;
        or ``.npy``); None: report only.
    max_corr : float
        In (0, 1]: a column whose |correlation| with a kept column reaches it is dropped.
    max_rel_mse : float, optional
        Also drop a column j whose relative MSE against a kept column k, mean((x_j - x_k)^2)
        / mean(x_j^2), is at most this (two predictions of nearly the same values).
    prefer : str, optional
        Regular expression: matching columns are considered (so kept) first.
    columns, input_format, header, notice
        As for :func:`cond.sample`.
    force : bool
        Replace an existing ``output``.

    Returns
    -------
    DedupReport
    """
    if not 0 < max_corr <= 1:
        raise UsageError(f"`--max-corr` must be in (0, 1]; got {max_corr}")
    if max_rel_mse is not None and not max_rel_mse >= 0:
        raise UsageError(f"`--max-rel-mse` must be >= 0; got {max_rel_mse}")
    prefer_re = regex_option("--prefer", prefer)
    if output is not None and not str(output).lower().endswith(OUTPUT_SUFFIXES):
        raise UsageError(f"`--output` must end in {', '.join(OUTPUT_SUFFIXES)}; got {output!r}", path=str(output))
    started = time.perf_counter()
    with design_source(source, "dedup") as (path, label, given_names), OutputPlan([path], force=force) as plan:
        if output is not None:
            output = plan.file(output, "--output")
        with open_rows(
            path,
            input_format=input_format,
            columns=columns,
            header=header,
            notice=notice,
            names=given_names,
            label=label,
        ) as rows:
            check_design_memory(rows.n, rows.d, label, "dedup")
            with busy_aware_blas():
                report = _deduplicate(rows, prefer_re, max_corr, max_rel_mse, plan, output)
    return DedupReport(
        input=label,
        output=output,
        rows=rows.n,
        options=dict(max_corr=float(max_corr), max_rel_mse=max_rel_mse, prefer=prefer),
        seconds=time.perf_counter() - started,
        **report,
    )


def _deduplicate(rows, prefer_re, max_corr, max_rel_mse, plan, output) -> dict:
    """The two passes over an open design: correlations and R, then the kept columns written."""
    names = rows.design_names
    moments, tree = Moments.empty(rows.d), RTree(rows.d)
    for _, x, _ in rows.blocks():
        moments.add_block(x)
        tree.add_block(x)
    corr = moments.correlations()
    preferred = [j for j in range(rows.d) if prefer_re is not None and prefer_re.search(names[j])]
    order = preferred + [j for j in range(rows.d) if j not in preferred]
    kept, dropped = greedy_deduplication(corr, max_corr, order, moments.relative_mse(), max_rel_mse)
    r = tree.result()
    with input_errors(path=rows.path):
        before, after = _spectrum_stats(r, rows.n), _spectrum_stats(r[:, kept], rows.n)
    if output is not None:
        _write(rows, kept, output, plan)
    return dict(
        kept=tuple(names[j] for j in kept),
        dropped=tuple(dict(column=names[j], partner=names[p], correlation=c) for j, p, c in dropped),
        constant=tuple(names[j] for j in range(rows.d) if not np.isfinite(corr[j, j])),
        before=before,
        after=after,
    )


def _spectrum_stats(r, n):
    """kappa, its status (as cond inspect's, with c = max(n, d)) and the effective rank of a matrix
    whose R factor (or its columns) is ``r``."""
    import scipy.linalg

    s = scipy.linalg.svdvals(r, check_finite=False)
    if not len(s) or s[0] == 0:
        return dict(kappa=math.inf, status="zero", effective_rank=0.0, columns=int(r.shape[1]))
    kappa = float(s[0] / s[-1]) if s[-1] > 0 else math.inf
    c = max(n, r.shape[1])
    status = "unresolved" if kappa * EPS64 * c > UNRESOLVED_THRESHOLD else "ok"
    p = s[s > 0] / s.sum()
    return dict(
        kappa=kappa, status=status, effective_rank=float(np.exp(-np.sum(p * np.log(p)))), columns=int(r.shape[1])
    )


def _write(rows, kept, output, plan):
    """The second pass: the kept columns, in file order, through the run's output plan. A
    ``.npy`` is written through a memory map whose space is allocated first (a full disk is
    an error, not SIGBUS)."""
    names = [rows.design_names[j] for j in kept]
    if str(output).lower().endswith(".npy"):
        header = {"descr": "<f8", "fortran_order": False, "shape": (rows.n, len(kept))}
        head = _npy_header(header)
        offset = len(head)
        with plan.writing(output, binary_size=offset + 8 * rows.n * len(kept)) as tmp:
            with open(tmp, "r+b") as f:
                f.write(head)
            if rows.n and kept:
                out = np.memmap(tmp, mode="r+", dtype="<f8", offset=offset, shape=(rows.n, len(kept)))
                for start, x, _ in rows.blocks():
                    out[start : start + len(x)] = x[:, kept]
                out.flush()
                del out
        return
    with plan.writing(output) as tmp:
        import csv
        import gzip

        sep = "\t" if ".tsv" in str(output).lower() else ","
        opener = gzip.open if str(output).lower().endswith(".gz") else open
        with opener(tmp, "wt", newline="") as f:
            csv.writer(f, delimiter=sep, lineterminator="\n").writerow(names)  # names quoted as CSV needs
            for _, x, _ in rows.blocks():
                f.write("".join(sep.join(repr(float(v)) for v in row) + "\n" for row in x[:, kept]))


def _npy_header(header) -> bytes:
    """The bytes of a ``.npy`` header (magic included) as NumPy writes it; the data follows."""
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue()
