"""``cond.sample``: a weighted row sample of a design matrix, streamed from disk.

Passes over the data: scores (2 for leverage, 1 + iterations for Lewis
weights, 2 for sketched scores, none for uniform), one to collect the sampled
rows, and with ``verify`` the ones the check needs (the exact R of A, and with
a target the residual of the sample's solution on the whole). The options are
checked in :mod:`.options`, the scores come from :mod:`.scores` (or, under
``--scheduler``, :mod:`.distributed`), the result is :class:`.report.SampleResult`.
"""

from __future__ import annotations

import math
import re
import time

import numpy as np

from cond.commands.sample.emit import write_sample, write_scores
from cond.commands.sample.options import DEFAULT_P, SampleOptions, sample_options
from cond.commands.sample.report import SampleResult
from cond.commands.sample.scores import method_scores
from cond.commands.validate import check_design_memory
from cond.errors import UsageError, input_errors
from cond.formats.outputs import OutputPlan
from cond.formats.row_stream import open_rows
from cond.formats.sources import design_source
from cond.linalg import leverage as lev
from cond.linalg.row_sampling import (
    bernoulli_probabilities,
    sample_bernoulli,
    sample_with_replacement,
    subspace_distortion,
)
from cond.threads import busy_aware_blas

__all__ = ["DEFAULT_P", "SampleOptions", "SampleResult", "sample_size", "sample", "sample_options"]


def sample_size(size, n, replacement=False):
    """A count (``2000``) or a percentage of n (``1%``) -> an expected sample size.

    Without replacement each row is kept at most once, so the size is at most n (100%).
    """
    text = str(size).strip()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*%", text)
    if match:
        value = float(match.group(1)) / 100.0 * n
        if not 0 < value:
            raise UsageError(f"`--size` must be positive; got {size!r}")
        m = max(1, int(round(value)))
    elif not re.fullmatch(r"\d+", text) or int(text) < 1:
        raise UsageError(f"`--size` must be a positive count or a percentage like 1%; got {size!r}")
    else:
        m = int(text)
    if m > n and not replacement:
        raise UsageError(
            f"`--size` must be at most the {n} rows (100%) without `--replacement`, which "
            f"keeps each row at most once; got {size!r}"
        )
    return m


def sample(
    source,
    *,
    size,
    method="leverage",
    p=None,
    seed=0,
    replacement=False,
    scores="exact",
    rcond=None,
    columns=None,
    target=None,
    input_format=None,
    chunk_rows=None,
    verify=False,
    keep_rows=False,
    scheduler=None,
    device="cpu",
    progress=None,
    header=None,
    notice=None,
    output=None,
    output_format="tsv",
    emit="indices",
    scores_out=None,
    force=False,
) -> SampleResult:
    """Score every row of a design matrix and draw a weighted sample.

    Parameters
    ----------
    source : str
        ``.npy``, ``.npz``, ``.csv`` / ``.tsv`` (gzip too), ``.parquet``, a Zarr store (a
        directory; a group holding one 2-D array, or ``store.zarr/NAME``) or ``-``.
    size : int or str
        Expected sample size: a count or a percentage of the rows (``"1%"``).
    method : {"leverage", "root-leverage", "lewis", "sensitivity", "augmented", "uniform"}
    p : float, optional
        The l_p norm; defaults: 2 for leverage and uniform, 1 otherwise. Lewis weights
        and sensitivities need 0 < p < 4.
    seed : int
    replacement : bool
        Draw with replacement instead of independent Bernoulli draws.
    scores : {"exact", "sketch", "sketch-srht"}
        Exact leverage scores, or sketched ones (leverage-based methods only; ``sketch-srht``
        adds a subsampled randomized Hadamard transform before the QR).
    rcond : float, optional
        Relative cut-off for the numerical rank (default max(n, d) * eps).
    columns, target : str, optional
        Design columns (names, globs, indices, ranges) and the target column.
    chunk_rows : int, optional
        Rows read at a time (default: 16 MiB of float64 rows, a multiple of 4096).
    verify : bool
        Measure the l2 subspace-embedding distortion (p = 2) and, with a target, the
        residual ratio of the sample's least-squares solution.
    keep_rows : bool
        Return the scaled sampled rows (and target).
    scheduler : str, optional
        A Dask scheduler address or ``local:N`` (default ``$COND_SCHEDULER``, else in this
        process). The score passes run as tasks over groups of row blocks that the
        workers read from the file themselves (``.npy``, Parquet, Zarr, and CSV through its
        spilled ``.npy``: storage the workers share); R (or the sketch S A) is reduced over
        the same binary tree as in one process, so scores and sample are the same floats.
        Leverage scores, exact or sketched (leverage, root-leverage, and the p = 2
        Lewis-based methods); not with ``device="cuda"``.
    device : {"cpu", "cuda"}
        ``cuda`` computes sketched scores (``scores="sketch"``) with CuPy on the GPU.
    progress : callable, optional
        ``progress(stage)`` at each pass.
    header : bool, optional
        CSV / TSV: whether the first line is a header (default: decided by its fields).
    notice : callable, optional
        ``notice(line)`` hears what cond decided on the caller's behalf (a header line).
    """

    opts = sample_options(
        size=size,
        method=method,
        p=p,
        seed=seed,
        replacement=replacement,
        scores=scores,
        rcond=rcond,
        verify=verify,
        keep_rows=keep_rows or emit == "rows",
        scheduler=scheduler,
        device=device,
        output_format=output_format,
        emit=emit,
    )
    started = time.perf_counter()
    tick = progress or (lambda stage: None)
    with design_source(source, "sample") as (path, label, names), OutputPlan([path], force=force) as plan:
        output = None if output in (None, "-") else plan.file(output, "--output")
        scores_out = None if scores_out is None else plan.file(scores_out, "--scores-out")
        with open_rows(
            path,
            input_format=input_format,
            columns=columns,
            target=target,
            chunk_rows=chunk_rows,
            header=header,
            notice=notice,
            names=names,
            label=label,
        ) as rows:
            check_design_memory(rows.n, rows.d, label, "sample")
            m = sample_size(opts.size, rows.n, opts.replacement)
            with input_errors(path=rows.path, shape=(rows.n, rows.d)), busy_aware_blas():  # e.g. a zero matrix
                drawn = _sample_rows(rows, m, opts, tick)
        result = SampleResult(
            **{
                **drawn,
                "seconds": time.perf_counter() - started,
                "input": label,
                "output": output,
                "options": opts.record(),
            }
        )
        if scores_out is not None:
            with plan.writing(scores_out) as tmp, open(tmp, "wb") as f:
                write_scores(result.scores, scores_out, f)
        if output is not None:
            with plan.writing(output) as tmp, open(tmp, "wb" if opts.output_format == "npy" else "w") as f:
                write_sample(result, opts.output_format, opts.emit, f)
    return result


def _sample_rows(rows, m, opts, tick) -> dict:
    """The passes over an open design: scores, the draw, the kept rows and the check."""
    n, d = rows.n, rows.d

    def blocks():
        for start, x, _ in rows.blocks():
            yield start, x

    tick("scores")
    s, rank, detail, r_exact = method_scores(
        opts.method, opts.p, opts.scores, blocks, n, d, opts.seed, opts.rcond, _precomputed(rows, blocks, opts, tick)
    )
    tick("sampling")
    if opts.replacement:
        idx, counts, probs = sample_with_replacement(s, m, opts.seed)
        weights = counts / (m * probs)
    else:
        q, _ = bernoulli_probabilities(s, m)
        idx = sample_bernoulli(q, opts.seed)
        counts, probs = None, q[idx]
        weights = 1.0 / probs
    scales = weights ** (1.0 / opts.p)
    header = dict(
        method=opts.method,
        p=opts.p,
        n=n,
        d=d,
        rank=rank,
        expected=m,
        actual=int(len(idx) if counts is None else int(np.sum(counts))),
        distinct=int(len(idx)),
        seed=opts.seed,
        replacement=opts.replacement,
        scores=opts.scores,
        **{k: v for k, v in detail.items() if isinstance(v, (int, float, bool, str))},
    )
    out = dict(
        header=header,
        indices=idx,
        weights=weights,
        scales=scales,
        probs=probs,
        counts=counts,
        scores=s,
        design_names=tuple(rows.design_names),
        target_name=None if rows.target is None else rows.names[rows.target],
    )
    if opts.keep_rows or opts.verify:
        tick("rows")
        sel_x, sel_y = _collect(rows, idx)
        out.update(rows=sel_x * scales[:, None], target=None if sel_y is None else sel_y * scales)
        if opts.verify:
            tick("verify")
            out["verify"] = _verify(rows, blocks, n, d, r_exact, opts.rcond, sel_x, sel_y, weights)
    return out


def _precomputed(rows, blocks, opts, tick):
    """Leverage scores computed elsewhere (a Dask cluster, the GPU), or None: in this process."""
    if opts.method == "uniform":
        return None
    if opts.scheduler is not None:
        if rows.locator is None:
            raise UsageError(
                "`--scheduler` reads .npy (C order), Parquet, Zarr or CSV/TSV files; run this input without it",
                path=rows.path,
            )
        from cond.commands.sample.distributed import distributed_scores

        return distributed_scores(
            opts.scheduler, rows.locator, rows.n, rows.d, opts.rcond, opts.scores, opts.seed, tick
        )
    if opts.device == "cuda":
        from cond.backends import array_module
        from cond.linalg.sketch import sketched_leverage

        return sketched_leverage(blocks, rows.n, rows.d, opts.seed, opts.rcond, xp=array_module("cuda"))
    return None


def _collect(rows, idx):
    xs, ys = [], []
    pos = 0
    for start, x, y in rows.blocks():
        end = np.searchsorted(idx, start + len(x), side="left")
        local = idx[pos:end] - start
        xs.append(x[local])
        if y is not None:
            ys.append(y[local])
        pos = end
    x = np.vstack(xs) if xs else np.zeros((0, rows.d))
    return x, (np.concatenate(ys) if ys else None) if rows.target is not None else None


def _verify(rows, blocks, n, d, r_exact, rcond, sel_x, sel_y, weights):
    r = r_exact if r_exact is not None else lev.tree_r(blocks, d)
    basis, _ = lev.rank_basis(r, n, rcond)
    out = {"eps_hat": subspace_distortion(sel_x, weights, basis)}
    if sel_y is None:
        return out
    sw = np.sqrt(weights)
    x_s = np.linalg.lstsq(sel_x * sw[:, None], sel_y * sw, rcond=None)[0]
    resid_sample, aug = 0.0, lev.RTree(d + 1)  # R of [A y]: its last diagonal entry is the optimal residual
    for _, x, y in rows.blocks():
        resid_sample += float(np.sum((x @ x_s - y) ** 2))
        aug.add_block(np.column_stack([x, y]))
    optimal = abs(float(aug.result()[d, d]))
    out["residual_sample"] = math.sqrt(resid_sample)
    out["residual_optimal"] = optimal
    out["residual_ratio"] = math.sqrt(resid_sample) / optimal if optimal > 0 else math.inf
    return out
