"""``cond.sample``: a weighted row sample of a design matrix, streamed from disk.

Passes over the data: scores (2 for leverage, 1 + iterations for Lewis
weights, 2 for sketched scores, none for uniform), one to collect the sampled
rows, and with ``verify`` the ones the check needs (the exact R of A, and with
a target the residual of the sample's solution on the whole).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from cond.errors import UsageError, input_errors
from cond.formats.row_stream import open_rows
from cond.linalg import leverage as lev
from cond.linalg import sketch
from cond.linalg.row_sampling import (bernoulli_probabilities, sample_bernoulli, sample_with_replacement,
                                      subspace_distortion)

from cond.commands.choices import SAMPLE_METHODS as METHODS
DEFAULT_P = {"leverage": 2.0, "root-leverage": 1.0, "lewis": 1.0, "sensitivity": 1.0, "augmented": 1.0,
             "uniform": 2.0}


@dataclass
class SampleResult:
    """The sample: row indices (0-based), loss weights, row multipliers, probabilities."""

    header: dict
    indices: np.ndarray
    weights: np.ndarray
    scales: np.ndarray
    probs: np.ndarray
    counts: Optional[np.ndarray] = None
    scores: Optional[np.ndarray] = field(default=None, repr=False)
    rows: Optional[np.ndarray] = field(default=None, repr=False)
    target: Optional[np.ndarray] = field(default=None, repr=False)
    design_names: list = field(default_factory=list)
    target_name: Optional[str] = None
    verify: Optional[dict] = None
    seconds: float = 0.0


def parse_size(size, n, replacement=False):
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
        raise UsageError(f"`--size` must be at most the {n} rows (100%) without `--replacement`, which "
                         f"keeps each row at most once; got {size!r}")
    return m


def sample(source, *, size, method="leverage", p=None, seed=0, replacement=False, scores="exact",
           rcond=None, columns=None, target=None, input_format=None, chunk_rows=None, verify=False,
           keep_rows=False, scheduler=None, device="cpu", progress=None, header=None,
           notice=None) -> SampleResult:
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
    if method not in METHODS:
        raise UsageError(f"`--method` must be one of {', '.join(METHODS)}; got {method!r}")
    p = DEFAULT_P[method] if p is None else float(p)
    if not p > 0:
        raise UsageError(f"`-p` must be positive; got {p}")
    if method in ("lewis", "sensitivity", "augmented") and p >= 4:
        raise UsageError(f"`-p` must be below 4 for {method} (the Lewis-weight iteration does not "
                         f"contract for p >= 4); got {p}")
    if method == "root-leverage" and p > 2:
        raise UsageError(f"root-leverage scores tau^(p/2) bound sensitivities only for p <= 2; got {p}")
    if scores not in ("exact", "sketch", "sketch-srht"):
        raise UsageError(f"`--scores` must be exact, sketch or sketch-srht; got {scores!r}")
    if scores != "exact" and method not in ("leverage", "root-leverage"):
        raise UsageError(f"`--scores sketch` applies to leverage and root-leverage; {method} needs exact")
    if rcond is not None and not (isinstance(rcond, (int, float)) and 0 <= rcond < 1):
        raise UsageError(f"`--rcond` must be in [0, 1): singular values below rcond * sigma_max count as "
                         f"zero; got {rcond}")
    if verify and p != 2:
        raise UsageError(f"`--verify` checks the l2 subspace embedding, so it needs p = 2; got p = {p}")
    from cond.backends import check_device
    from cond.distributed import scheduler_from

    if device == "cuda" and scores != "sketch":
        raise UsageError("`--device cuda` computes sketched scores: add `--scores sketch` (exact scores "
                         f"and sketch-srht run on the CPU); got `--scores {scores}`")
    device = check_device(device)
    spec = scheduler_from(scheduler)
    if spec is not None and method in ("lewis", "sensitivity", "augmented") and p != 2:
        raise UsageError(f"`--scheduler` runs leverage scores (exact or sketched), and {method} only at p = 2 "
                         f"(the Lewis iteration at p = {p:g} runs in one process); run it without `--scheduler`")
    if spec is not None and device == "cuda":
        raise UsageError("`--scheduler` and `--device cuda` are either-or: the workers compute on their CPUs")
    started = time.perf_counter()
    tick = progress or (lambda stage: None)
    with open_rows(source, input_format=input_format, columns=columns, target=target,
                   chunk_rows=chunk_rows, header=header, notice=notice) as rows:
        n, d = rows.n, rows.d
        m = parse_size(size, n, replacement)
        with input_errors(path=rows.path, shape=(n, d)):  # e.g. a matrix that is numerically zero
            return _sample_rows(rows, n, d, m, method, p, seed, replacement, scores, rcond, verify, keep_rows,
                                spec, device, tick, started)


def _sample_rows(rows, n, d, m, method, p, seed, replacement, scores, rcond, verify, keep_rows, spec, device,
                 tick, started):
    """The passes over an open design: scores, the draw, the kept rows and the check."""
    def blocks():
        for start, x, _ in rows.blocks():
            yield start, x

    tick("scores")
    if spec is not None and method != "uniform":
        if rows.locator is None:
            raise UsageError("`--scheduler` reads .npy (C order), Parquet, Zarr or CSV/TSV files; run "
                             "this input without it", path=rows.path)
        precomputed = _distributed_scores(spec, rows.locator, n, d, rcond, scores, seed, tick)
    elif device == "cuda" and method != "uniform":
        from cond.linalg.leverage_device import namespace, sketched_leverage_on

        precomputed = sketched_leverage_on(namespace("cuda"), blocks, n, d, seed, rcond)
    else:
        precomputed = None
    s, rank, detail, r_exact = _scores(method, p, scores, blocks, n, d, seed, rcond, precomputed)
    tick("sampling")
    if replacement:
        idx, counts, probs = sample_with_replacement(s, m, seed)
        weights = counts / (m * probs)
    else:
        q, _ = bernoulli_probabilities(s, m)
        idx = sample_bernoulli(q, seed)
        counts, probs = None, q[idx]
        weights = 1.0 / probs
    scales = weights ** (1.0 / p)
    header = dict(method=method, p=p, n=n, d=d, rank=rank, expected=m,
                  actual=int(len(idx) if counts is None else int(np.sum(counts))),
                  distinct=int(len(idx)), seed=int(seed), replacement=bool(replacement), scores=scores,
                  **{k: v for k, v in detail.items() if isinstance(v, (int, float, bool, str))})
    result = SampleResult(header, idx, weights, scales, probs, counts, s,
                          design_names=rows.design_names,
                          target_name=None if rows.target is None else rows.names[rows.target])
    if keep_rows or verify:
        tick("rows")
        sel_x, sel_y = _collect(rows, idx)
        result.rows = sel_x * scales[:, None]
        result.target = None if sel_y is None else sel_y * scales
    if verify:
        tick("verify")
        result.verify = _verify(rows, blocks, n, d, r_exact, rcond, sel_x, sel_y, weights)
    result.seconds = time.perf_counter() - started  # not in the header: output is reproducible
    return result


def _scores(method, p, scores, blocks, n, d, seed, rcond, precomputed=None):
    """(scores, rank, detail, exact R or None). ``precomputed`` (a Scores) replaces the
    in-process leverage pass: exact scores from a Dask cluster, or sketched ones from the GPU."""
    leverage = (lambda: precomputed) if precomputed is not None else \
        (lambda: lev.leverage_scores(blocks, n, d, rcond))
    if method == "uniform":
        return np.ones(n), min(n, d), {}, None
    if method in ("leverage", "root-leverage"):
        sc = leverage() if scores == "exact" or precomputed is not None else \
            sketch.sketched_leverage(blocks, n, d, seed, rcond, srht=scores == "sketch-srht")
        tau = sc.values
        values = tau if method == "leverage" else tau ** (p / 2)
        r = sc.detail.get("r")
        return values, sc.rank, {k: v for k, v in sc.detail.items() if k != "r"}, r
    if p == 2:
        lewis = leverage()  # l2 Lewis weights are the leverage scores
        w, rank, r = lewis.values, lewis.rank, lewis.detail["r"]
        detail = {"iterations": 0, "converged": True}
    else:
        lw = lev.lewis_weights(blocks, n, d, p, rcond)
        w, rank, r = lw.values, lw.rank, None
        detail = {k: v for k, v in lw.detail.items()}
        if not lw.detail["converged"]:
            import warnings

            warnings.warn(f"Lewis weights did not converge in {lw.detail['iterations']} passes "
                          f"(last relative change {lw.detail['last_change']:.2e})", stacklevel=3)
    if method == "lewis":
        return w, rank, detail, r
    tau = w if p == 2 else lev.leverage_scores(blocks, n, d, rcond).values
    sens = lev.sensitivity_bounds(w, tau, p, rank)
    return (sens + tau if method == "augmented" else sens), rank, detail, r


def _distributed_scores(spec, locator, n, d, rcond, scores, seed, tick):
    """Leverage scores on a Dask cluster, the same floats as in one process.

    Exact: R by :class:`~cond.linalg.leverage.RTree` over the row blocks; sketched:
    S A by :class:`~cond.linalg.sketch.SketchSum` over its leaves. Tasks take aligned
    runs of 2**k leaves (blocks, or sketch leaves), so each returns a complete subtree
    of the in-process tree (the last one a partial stack); pushed in order, they give
    the same R or S A, then the same basis, and the score pass is row by row.
    """
    from cond.distributed import dask_client, ordered_map
    from cond.formats.row_blocks import BLOCK_ROWS
    from cond.threads import one_thread_blas

    nblocks = -(-n // BLOCK_ROWS)
    leaf_blocks = 1 if scores == "exact" else sketch.leaf_rows(n, d) // BLOCK_ROWS
    # BLAS on one thread here and on the workers, as in the in-process path (cond.threads)
    with dask_client(spec) as client, one_thread_blas():
        groups = aligned_groups(nblocks, leaf_blocks, len(client.scheduler_info().get("workers", {})))
        if scores == "exact":
            tree = lev.RTree(d)
            for stack in ordered_map(client, _group_r, groups, locator=locator, d=d):
                for node_level, node in stack:
                    tree.push(node_level, node)
            r = tree.result()
            t, k = lev.rank_basis(r, n, rcond)
            tick("scores")
            values = np.concatenate(list(ordered_map(client, _group_leverage, groups, locator=locator, t=t)))
            return lev.Scores(values, k, {"passes": 2, "r": r})
        total = sketch.SketchSum(n, d, seed)
        for stack in ordered_map(client, _group_sketch, groups, locator=locator, n=n, d=d, seed=seed):
            for node_level, node in stack:
                total.tree.push(node_level, node)
        tg, k, detail = sketch.sketch_basis(total.result(), n, d, seed, rcond, srht=scores == "sketch-srht")
        tick("scores")
        values = np.concatenate(list(ordered_map(client, _group_jl_scores, groups, locator=locator, tg=tg)))
        return lev.Scores(values, k, detail)


def aligned_groups(nblocks, leaf_blocks, workers):
    """Tasks as ``(first, last)`` block ranges: aligned runs of 2**k leaves of ``leaf_blocks``
    blocks (the last run shorter), about four per worker, so that each run is a complete
    subtree of the in-process reduction tree."""
    leaves = -(-nblocks // leaf_blocks)
    size = leaf_blocks * 2 ** max(0, int(math.floor(math.log2(max(1.0, leaves / (4 * max(1, workers)))))))
    return [(g, min(g + size, nblocks)) for g in range(0, nblocks, size)]


def _group_r(group, locator, d):
    """The R stack of blocks ``group`` = (first, last): one Dask task."""
    from cond.threads import one_thread_blas

    tree = lev.RTree(d)
    with one_thread_blas():
        for _, x, _ in locator.blocks(*group):
            tree.add_block(x)
    return tree.stack


def _group_leverage(group, locator, t):
    """Leverage scores of the rows of blocks ``group``: one Dask task."""
    from cond.threads import one_thread_blas

    with one_thread_blas():
        return np.concatenate([lev.block_leverage(x, t) for _, x, _ in locator.blocks(*group)])


def _group_sketch(group, locator, n, d, seed):
    """The S A stack of the sketch leaves in blocks ``group``: one Dask task."""
    total = sketch.SketchSum(n, d, seed)
    for start, x, _ in locator.blocks(*group):
        total.add(start, x)
    total.close_leaf()
    return total.tree.stack


def _group_jl_scores(group, locator, tg):
    """Sketched scores of the rows of blocks ``group``: one Dask task."""
    from cond.threads import one_thread_blas

    with one_thread_blas():
        return np.concatenate([sketch.jl_scores(x, tg) for _, x, _ in locator.blocks(*group)])


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
    r = r_exact if r_exact is not None else lev.streaming_r(blocks, d)
    basis, _ = lev.rank_basis(r, n, rcond)
    out = {"eps_hat": subspace_distortion(sel_x, weights, basis)}
    if sel_y is None:
        return out
    sw = np.sqrt(weights)
    x_s = np.linalg.lstsq(sel_x * sw[:, None], sel_y * sw, rcond=None)[0]
    resid_sample, aug = 0.0, np.zeros((0, d + 1))
    import scipy.linalg

    for _, x, y in rows.blocks():
        resid_sample += float(np.sum((x @ x_s - y) ** 2))
        aug = scipy.linalg.qr(np.vstack([aug, np.column_stack([x, y])]), mode="r", check_finite=False)[0]
        aug = aug[: d + 1]
    optimal = abs(float(aug[d, d])) if aug.shape[0] > d else 0.0
    out["residual_sample"] = math.sqrt(resid_sample)
    out["residual_optimal"] = optimal
    out["residual_ratio"] = math.sqrt(resid_sample) / optimal if optimal > 0 else math.inf
    return out
