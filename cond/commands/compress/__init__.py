"""``cond.compress``: a safetensors checkpoint to a ``cond-lowrank/1`` file, every matrix bounded.

Three passes, holding a bounded amount in memory:

1. every tensor once, in file order: untouched ones are copied byte for byte;
   each selected matrix gets its own best form (truncated SVD at the smallest
   rank meeting the bound after rounding to the storage dtype, or dense when
   that saves nothing), written tentatively;
2. with clustering, pools of matrices that could share a basis (equal row
   count for a shared left basis, equal column count for a shared right basis,
   the same storage dtype and ``group`` key) are loaded one pool at a time (in
   chunks of at most ``max_pool_bytes`` of float64) and clustered by
   :func:`cond.linalg.clustering.greedy_clusters`; a member's tentative form
   is replaced by its cluster factor once the cluster is verified;
3. the manifest is written and the file renamed into place.

Every error recorded is measured in float64 on what ``cond expand`` gives back: the
factors exactly as written, multiplied in float64 and rounded once to the tensor's
original dtype (for bf16 that last rounding alone can add 2**-9 relative).

With ``method="fisher"`` or ``"whiten"`` each matrix W is approximated through
a weighted matrix A W B (:mod:`cond.linalg.weighted`); the bound applies to the
weighted error and the plain error is recorded beside it. Weighted matrices
cluster only where the weighting keeps the shared basis: input-side weights (B:
``fisher --fisher-axis in``, ``whiten``) with a shared left basis, output-side
weights (A: ``fisher --fisher-axis out``) with a shared right basis. Given the
shared basis U, the best member factor in the weighted norm is the plain
projection U^T W_i whatever B_i is, so members keep their own weights.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from cond.commands.compress.report import ClusterRecord, CompressReport, TensorRecord
from cond.errors import InputError, UsageError, input_errors
from cond.formats import open_entries
from cond.formats.atomic import check_output
from cond.formats.detect import format_of
from cond.formats.lowrank_format import FORMAT
from cond.formats.safetensors_file import numpy_dtype, read_header
from cond.formats.safetensors_writer import SafetensorsWriter
from cond.linalg.clustering import greedy_clusters
from cond.linalg.concat_bounds import PREDICTORS
from cond.linalg.truncated import lowrank_params, rank_for_error, rank_for_ratio
from cond.linalg.weighted import FISHER_FLOOR, Weighting, weighted_factors

STORAGE_DTYPES = {"f64": "F64", "float64": "F64", "f32": "F32", "float32": "F32", "f16": "F16",
                  "float16": "F16", "bf16": "BF16", "bfloat16": "BF16"}
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2")
RANK_STEPS = 16  # ranks tried above the Eckart-Young rank before rounding makes a matrix dense
SMALL_MATRIX = 2**21  # entries below which one BLAS thread is faster


@dataclass
class _Candidate:
    name: str
    shape: tuple
    dtype: str
    storage_dtype: str
    m: int
    n: int
    own: TensorRecord
    entry: object = field(repr=False)
    group: str = ""
    weighting: str = "none"
    weight_sides: tuple = (False, False)  # (left A, right B)
    weight_note: Optional[str] = None


def compress(source, output, *, max_error=None, rank=None, ratio=None, include=None, exclude=None,
             min_size=4096, cluster=True, estimator="incremental", patience=8, axis="auto", group=None,
             error_scope="matrix", dtype=None, seed=0, force=False, max_pool_bytes=2**30,
             method="svd", fisher=None, fisher_axis="in", activations=None, scheduler=None,
             progress=None) -> CompressReport:
    """Compress the matrices of a safetensors checkpoint into a ``cond-lowrank/1`` file.

    Parameters
    ----------
    source : str
        A ``.safetensors`` file, an index JSON or a checkpoint directory.
    output : str
        The file to write (never the input; an existing file only with ``force``).
    max_error, rank, ratio : float, int, float
        Exactly one: the bound on every matrix's relative Frobenius error, a
        fixed rank, or the fraction of each matrix's parameters to keep.
    include, exclude : str, optional
        Regular expressions on tensor names (``re.search``) selecting matrices.
    min_size : int
        Matrices with fewer entries stay as they are.
    cluster : bool
        Let matrices share bases (needs ``max_error``).
    estimator : {"incremental", "weyl", "residual", "exact"}
    patience : int
    axis : {"auto", "cols", "rows"}
        ``cols``: equal row counts share a left basis; ``rows``: equal column
        counts share a right basis; ``auto``: ``cols`` first, then ``rows`` for
        what is left.
    group : str, optional
        Regular expression: only matrices whose match (first group if it has
        one) is equal may share; matrices without a match do not cluster.
    error_scope : {"matrix", "cluster"}
    dtype : str, optional
        Storage dtype of the factors (default: each tensor's own).
    seed : int
    force : bool
    max_pool_bytes : int
        Largest float64 pool loaded at once for clustering.
    method : {"svd", "fisher", "whiten"}
        Plain truncated SVD, Fisher-weighted SVD (needs ``fisher``) or
        activation-aware whitening (needs ``activations``).
    fisher : str, optional
        Safetensors file of accumulated squared gradients per weight name (per
        element, or a vector per input or output feature).
    fisher_axis : {"in", "out", "both"}
        One Fisher importance per input feature, per output feature, or both.
    activations : str, optional
        Safetensors file of input Gram matrices X^T X (in x in) per weight name.
    scheduler : str, optional
        A Dask scheduler address or ``local:N`` (default ``$COND_SCHEDULER``, else in
        this process): one task per matrix, then one per pool chunk; the workers read
        the tensors from the checkpoint's files, this process writes the output.
    progress : callable, optional
        ``progress(stage, done, total)``.

    Returns
    -------
    CompressReport
    """
    opts = _check_options(max_error, rank, ratio, include, exclude, min_size, cluster, estimator,
                          patience, axis, group, error_scope, dtype, max_pool_bytes, seed)
    opts.update(_check_method(method, fisher, fisher_axis, activations))
    started = time.perf_counter()
    source, output = str(source), str(output)
    fmt = format_of(source, source)
    if fmt not in ("safetensors", "index", "directory"):
        raise UsageError(f"cond compress reads safetensors checkpoints (file, index or directory); "
                         f"{source} is {fmt}", path=source)
    with open_entries(source) as entries:  # every header checked, the index against its shards
        entries = list(entries)
    sources = [source] if fmt == "safetensors" else list(dict.fromkeys(e.source for e in entries))
    source_meta = read_header(source).metadata if fmt == "safetensors" else {}
    if fmt == "safetensors" and source_meta.get("cond.format") == FORMAT:
        raise UsageError("is already a cond-lowrank/1 file; expand it first", path=source)
    check_output(output, inputs=sources, force=force)
    names = {e.name for e in entries}
    calibration = _calibration(opts, fisher, activations, source, output, sources)
    if calibration is not None:
        calibration.check_names([e.name for e in entries if _selected(e, opts) is None])
    from cond.distributed import scheduler_from

    spec = scheduler_from(scheduler)
    with contextlib.ExitStack() as stack:
        client = None
        if spec is not None:
            from cond.distributed import dask_client

            client = stack.enter_context(dask_client(spec))
            if calibration is not None:  # sent to every worker once, not with every task
                calibration = client.scatter(calibration, broadcast=True)
        writer = stack.enter_context(SafetensorsWriter(output, inputs=sources, force=force))
        records, candidates = _first_pass(entries, names, writer, opts, calibration, progress, client)
        clusters = []
        if opts["cluster"]:
            clusters = _cluster_pass(candidates, records, writer, opts, calibration, progress, client)
        manifest = dict(format=FORMAT, tool=f"cond {_version()}", method=opts["method"], source=source,
                        options={k: v for k, v in opts.items() if k != "patterns"},
                        source_metadata=source_meta,
                        tensors=[records[e.name].manifest_entry() for e in entries],
                        clusters=[c.row() for c in clusters])
        writer.set_metadata("cond.format", FORMAT)
        writer.set_metadata("cond.manifest", json.dumps(manifest, separators=(",", ":")))
    tensors = tuple(records[e.name] for e in entries)
    return CompressReport(
        input=source, output=output, options={k: v for k, v in opts.items() if k != "patterns"},
        tensors=tensors, clusters=tuple(clusters),
        params_before=sum(t.params_before for t in tensors),
        params_after=sum(t.params_after for t in tensors) + sum(c.params for c in clusters),
        bytes_before=sum(os.path.getsize(p) for p in sources), bytes_after=writer.size,
        seconds=time.perf_counter() - started, method=opts["method"],
        unweighted=tuple(c.name for c in candidates if c.weighting == "none" and calibration is not None))


def _version():
    from cond._version import __version__

    return __version__


def _check_options(max_error, rank, ratio, include, exclude, min_size, cluster, estimator, patience,
                   axis, group, error_scope, dtype, max_pool_bytes, seed):
    given = [n for n, v in (("--max-error", max_error), ("--rank", rank), ("--ratio", ratio))
             if v is not None]
    if len(given) != 1:
        raise UsageError("give exactly one of `--max-error`, `--rank`, `--ratio`; got "
                         f"{', '.join(given) or 'none'}")
    if max_error is not None and not 0 < max_error < 1:
        raise UsageError(f"`--max-error` must be in (0, 1); got {max_error}. Use `--rank` for a fixed rank")
    if rank is not None and (not isinstance(rank, int) or rank < 1):
        raise UsageError(f"`--rank` must be a positive integer; got {rank}")
    if ratio is not None and not 0 < ratio <= 1:
        raise UsageError(f"`--ratio` must be in (0, 1]; got {ratio}")
    if estimator not in PREDICTORS:
        raise UsageError(f"`--estimator` must be one of {', '.join(PREDICTORS)}; got {estimator!r}")
    if axis not in ("auto", "cols", "rows"):
        raise UsageError(f"`--axis` must be auto, cols or rows; got {axis!r}")
    if error_scope not in ("matrix", "cluster"):
        raise UsageError(f"`--error-scope` must be matrix or cluster; got {error_scope!r}")
    if not isinstance(patience, int) or patience < 1:
        raise UsageError(f"`--patience` must be a positive integer; got {patience}")
    if min_size < 0:
        raise UsageError(f"`--min-size` must be >= 0; got {min_size}")
    storage = None
    if dtype is not None:
        storage = STORAGE_DTYPES.get(str(dtype).lower())
        if storage is None:
            raise UsageError(f"`--dtype` must be one of f64, f32, f16, bf16; got {dtype!r}")
    patterns = {}
    for flag, value in (("--include", include), ("--exclude", exclude), ("--group", group)):
        try:
            patterns[flag] = re.compile(value) if value is not None else None
        except re.error as exc:
            raise UsageError(f"`{flag}` is not a valid regular expression ({exc}); got {value!r}") from None
    return dict(max_error=max_error, rank=rank, ratio=ratio, include=include, exclude=exclude, seed=int(seed),
                min_size=int(min_size), cluster=bool(cluster) and max_error is not None,
                estimator=estimator, patience=patience, axis=axis, group=group,
                error_scope=error_scope, dtype=storage, max_pool_bytes=int(max_pool_bytes),
                patterns=patterns)


def _check_method(method, fisher, fisher_axis, activations):
    if method not in ("svd", "fisher", "whiten"):
        raise UsageError(f"`--method` must be svd, fisher or whiten; got {method!r}")
    if fisher_axis not in ("in", "out", "both"):
        raise UsageError(f"`--fisher-axis` must be in, out or both; got {fisher_axis!r}")
    if method == "fisher" and fisher is None:
        raise UsageError("`--method fisher` needs `--fisher FILE` (accumulated squared gradients per weight)")
    if method == "whiten" and activations is None:
        raise UsageError("`--method whiten` needs `--activations FILE` (input Gram matrices per weight)")
    if fisher is not None and method != "fisher":
        raise UsageError(f"`--fisher` is given but `--method` is {method}; add `--method fisher`")
    if fisher_axis != "in" and method != "fisher":
        raise UsageError(f"`--fisher-axis` applies to `--method fisher`; got `--method {method}`")
    if activations is not None and method != "whiten":
        raise UsageError(f"`--activations` is given but `--method` is {method}; add `--method whiten`")
    return dict(method=method, fisher_axis=fisher_axis if method == "fisher" else None)


def _calibration(opts, fisher, activations, source, output, sources):
    from cond.commands.compress.calibration import CalibrationFile

    path = fisher if opts["method"] == "fisher" else activations if opts["method"] == "whiten" else None
    if path is None:
        return None
    path = str(path)
    if os.path.abspath(path) in {os.path.abspath(p) for p in (*sources, output)}:
        raise UsageError("the weights file must not be the checkpoint or the output", path=path)
    return CalibrationFile(path, "fisher" if opts["method"] == "fisher" else "gram", opts["fisher_axis"])


def _weighting_of(calibration, name, shape):
    """The entry's weighting, or none (with the reason) when the file has no entry for it."""
    if calibration is None:
        return Weighting(), None
    if name not in calibration:
        what = "Fisher" if calibration.kind == "fisher" else "Gram"
        return Weighting(), f"no {what} entry: plain SVD"
    weighting = calibration.weighting(name, shape)
    notes = []
    if weighting.clamped:
        notes.append(f"{weighting.clamped} importances raised to {FISHER_FLOOR:g} of the mean")
    if weighting.jitter:
        notes.append(f"jitter {weighting.jitter:.0e} of the mean diagonal added to the Gram")
    return weighting, "; ".join(notes) or None


def _rounder(storage_dtype):
    np_dtype = numpy_dtype(storage_dtype)
    return lambda x: np.asarray(x).astype(np_dtype).astype(np.float64)


def _selected(entry, opts):
    if entry.skip_reason is not None:
        return entry.skip_reason
    if entry.dtype not in FLOAT_DTYPES:
        return f"dtype {entry.dtype} is not compressed"
    inc, exc = opts["patterns"]["--include"], opts["patterns"]["--exclude"]
    if inc is not None and not inc.search(entry.name):
        return "not matched by --include"
    if exc is not None and exc.search(entry.name):
        return "matched by --exclude"
    if math.prod(entry.shape) < opts["min_size"]:
        return f"fewer than --min-size {opts['min_size']} entries"
    return None


def _first_pass(entries, names, writer, opts, calibration, progress, client=None):
    records, candidates = {}, []
    reasons = [_selected(entry, opts) for entry in entries]
    for entry, reason in zip(entries, reasons):
        if reason is None and 0 in entry.shape:
            raise InputError("matrix has a zero-size dimension", path=entry.source, tensor=entry.name,
                             shape=entry.shape)
        if reason is None:
            for key in (f"{entry.name}.U", f"{entry.name}.V"):
                if key in names:
                    raise InputError(f"tensor '{key}' would collide with a factor of '{entry.name}'; "
                                     "rename it or --exclude one of them", path=entry.source)
    own_forms = None
    if client is not None:  # one task per matrix, consumed in file order as the writer needs them
        from cond.distributed import ordered_map

        own_forms = ordered_map(client, _own_form, [e for e, r in zip(entries, reasons) if r is None],
                                opts=opts, calibration=calibration)
    for done, (entry, reason) in enumerate(zip(entries, reasons), 1):
        if reason is not None:
            size = math.prod(entry.shape)
            writer.add_bytes(entry.name, entry.dtype, entry.shape, entry.read_raw())
            records[entry.name] = TensorRecord(entry.name, tuple(entry.shape), entry.dtype, "dense",
                                               (entry.name,), None, None, None, None, size, size, reason)
        else:
            candidate, factors = next(own_forms) if own_forms is not None else \
                _own_form(entry, opts, calibration)
            if factors is None:
                writer.add_bytes(entry.name, entry.dtype, entry.shape, entry.read_raw())
            else:
                writer.add_array(f"{entry.name}.U", factors[0])
                writer.add_array(f"{entry.name}.V", factors[1])
            records[entry.name] = candidate.own
            candidates.append(candidate)
        if progress:
            progress("matrices", done, len(entries))
    return records, candidates


def _own_form(entry, opts, calibration):
    """The matrix's best form on its own: (candidate, (U, V) in the storage dtype, or None: dense).
    Runs in this process or as a Dask task (the worker reads the tensor)."""
    w = entry.load()
    w = w.reshape(w.shape[0], -1)
    if not np.all(np.isfinite(w)):
        raise InputError("holds NaN or Inf; cannot bound a relative error", path=entry.source,
                         tensor=entry.name, shape=entry.shape)
    m, n = w.shape
    name = entry.name
    weighting, weight_note = _weighting_of(calibration, name, entry.shape)
    storage = opts["dtype"] or entry.dtype
    np_dtype = numpy_dtype(storage)
    bound = opts["max_error"]
    expanded = _rounder(entry.dtype)  # what `cond expand` writes: the product in the original dtype
    # small SVDs run faster on one BLAS thread (and suffer less from a busy machine)
    with _blas_threads(1 if w.size < SMALL_MATRIX else None), \
            input_errors(path=entry.source, tensor=name, shape=entry.shape):  # linalg's ValueErrors
        left, right, s = weighted_factors(w, weighting, min(m, n))
    if bound is not None:
        first = max(1, rank_for_error(s, bound))
        ranks = range(first, min(min(m, n), first + RANK_STEPS) + 1)
    else:
        r = opts["rank"] if opts["rank"] is not None else rank_for_ratio(m, n, opts["ratio"])
        ranks = [min(r, min(m, n))]
    norm = float(np.linalg.norm(w))
    weighted_norm = norm if weighting.kind == "none" else float(np.linalg.norm(weighting.apply(w)))
    chosen = None
    for r in ranks:
        if lowrank_params(m, n, r) >= m * n:
            break
        with np.errstate(over="ignore"):
            lo, ro = left[:, :r].astype(np_dtype), right[:r].astype(np_dtype)
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(ro))):
            peak = max(float(np.max(np.abs(left[:, :r]))), float(np.max(np.abs(right[:r]))))
            raise InputError(f"the rank-{r} factors overflow {storage} (largest entry {peak:.3g}, beyond "
                             f"{float(np.finfo(np_dtype).max):.5g}); store them with `--dtype f32` or bf16",
                             path=entry.source, tensor=name, shape=entry.shape)
        approx = expanded(lo.astype(np.float64) @ ro.astype(np.float64))
        err = _error(w, weighted_norm, approx, weighting)
        if bound is None or err <= bound:
            plain = err if weighting.kind == "none" else _error(w, norm, approx)
            chosen = (r, lo, ro, err, plain)
            break
    notes = [weight_note] if weight_note else []
    factors = None
    if chosen is None:
        notes.insert(0, "dense: no rank saves parameters within the bound" if bound is not None else
                     "dense: the rank saves no parameters")
        own = TensorRecord(name, tuple(entry.shape), entry.dtype, "dense", (name,), None, 0.0, bound,
                           None, m * n, m * n, "; ".join(notes), 0.0, weighting.kind)
    else:
        r, lo, ro, err, plain = chosen
        factors = (lo, ro)
        own = TensorRecord(name, tuple(entry.shape), entry.dtype, "lowrank", (f"{name}.U", f"{name}.V"),
                           r, err, bound, None, m * n, lowrank_params(m, n, r), "; ".join(notes) or None,
                           plain, weighting.kind)
    group = ""
    if opts["patterns"]["--group"] is not None:
        match = opts["patterns"]["--group"].search(name)
        group = None if match is None else (match.group(1) if match.groups() else match.group(0))
    return _Candidate(name, tuple(entry.shape), entry.dtype, storage, m, n, own, entry, group,
                      weighting.kind, (weighting.has_left, weighting.has_right), weight_note), factors


_CONTROLLER = []


def _blas_threads(limit):
    """A context limiting BLAS threads (the controller is built once: it scans the libraries)."""
    if limit is None:
        import contextlib

        return contextlib.nullcontext()
    if not _CONTROLLER:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0].limit(limits=limit, user_api="blas")


def _error(w, norm, approx, weighting=None):
    """||A (W - approx) B||_F / norm (A = B = I without a weighting)."""
    if norm == 0:
        return 0.0
    diff = w - approx
    if weighting is not None and weighting.kind != "none":
        diff = weighting.apply(diff)
    return float(np.linalg.norm(diff) / norm)


def _cluster_pass(candidates, records, writer, opts, calibration, progress, client=None):
    clusters = []
    axes = ["cols", "rows"] if opts["axis"] == "auto" else [opts["axis"]]
    clustered = set()
    for axis in axes:
        pools = {}
        for c in candidates:
            if c.name in clustered or c.group is None:
                continue
            if c.weight_sides[0 if axis == "cols" else 1]:
                continue  # row weights change a shared left basis (column weights a right one)
            key = (c.m if axis == "cols" else c.n, c.storage_dtype, c.group)
            pools.setdefault(key, []).append(c)
        chunks = [chunk for pool in pools.values() for chunk in _chunks(pool, opts["max_pool_bytes"])
                  if len(chunk) >= 2]
        if client is not None:  # one task per chunk; the worker reads the members itself
            from cond.distributed import ordered_map

            found = ordered_map(client, _cluster_chunk, chunks, axis=axis, opts=opts, calibration=calibration,
                                progress=(lambda done, total: progress("clustering", done, total))
                                if progress else None)
        else:
            found = (_cluster_chunk(chunk, axis, opts, calibration, progress) for chunk in chunks)
        for chunk, computed in zip(chunks, found):
            for record in _write_clusters(chunk, axis, len(clusters), computed, writer, opts):
                # ids are consecutive: each chunk starts after the clusters written so far
                clusters.append(record)
                clustered.update(record.members)
    for c in candidates:  # members now carry their cluster records
        records[c.name] = c.own
    return clusters


def _chunks(pool, max_bytes):
    chunk, size = [], 0
    for c in pool:
        nbytes = c.m * c.n * 8
        if chunk and size + nbytes > max_bytes:
            yield chunk
            chunk, size = [], 0
        chunk.append(c)
        size += nbytes
    if chunk:
        yield chunk


def _cluster_chunk(chunk, axis, opts, calibration, progress=None):
    """Clusters of one chunk, verified: a list of (members, rank, basis, factors, errors, plain
    errors), bases and factors in the storage dtype. Runs here or as a Dask task.

    The driver sees the weighted blocks W_i B_i (cols) or (A_i W_i)^T (rows); the member
    factors are the plain projections U^T W_i, optimal in the weighted norm too.
    """
    blocks, weightings = [], []
    for c in chunk:
        w = c.entry.load()
        w = w.reshape(w.shape[0], -1)
        weighting = _weighting_of(calibration, c.name, c.shape)[0] if c.weighting != "none" else Weighting()
        if weighting.kind != "none":
            w = weighting.apply(w)
        blocks.append(w if axis == "cols" else np.ascontiguousarray(w.T))
        weightings.append(weighting)
    storage = chunk[0].storage_dtype
    rounding = _rounder(storage)
    np_dtype = numpy_dtype(storage)
    own = [c.own.params_after for c in chunk]
    with input_errors(path=chunk[0].entry.source, tensor=f"{chunk[0].name} and {len(chunk) - 1} more"):
        found = greedy_clusters(blocks, own, opts["max_error"], predictor=opts["estimator"],
                                scope=opts["error_scope"], patience=opts["patience"], rounding=rounding,
                                seed=opts["seed"],
                                progress=(lambda k: progress("clustering", k, len(chunk))) if progress else None)
    computed = []
    for cl in found:
        basis = cl.basis.astype(np_dtype)
        basis64 = basis.astype(np.float64)
        factors, errors, plain = {}, {}, {}
        for i in cl.members:
            if weightings[i].kind == "none":  # the block the driver saw is the matrix itself
                w = blocks[i] if axis == "cols" else blocks[i].T
            else:  # the driver saw the weighted matrix: read the plain one again
                w = chunk[i].entry.load()
                w = w.reshape(w.shape[0], -1)
            factors[i], errors[i], plain[i] = _member_factor(w, weightings[i], basis64, axis, np_dtype,
                                                             _rounder(chunk[i].dtype))
        if not _verified(errors, blocks, cl.members, opts):
            continue  # the driver measured the same arithmetic, so this should not happen: keep own forms
        computed.append((cl.members, cl.rank, basis, factors, errors, plain))
    return computed


def _write_clusters(chunk, axis, first_id, computed, writer, opts):
    """Write the verified clusters of a chunk; the members' records point at them."""
    records = []
    for members, rank, basis, factors, errors, plain in computed:
        cid = first_id + len(records)
        shared_key = f"cond.cluster.{cid}.U" if axis == "cols" else f"cond.cluster.{cid}.V"
        writer.add_array(shared_key, basis if axis == "cols" else np.ascontiguousarray(basis.T))
        names = []
        for i in members:
            c = chunk[i]
            for key in c.own.keys:
                writer.discard(key)
            if axis == "cols":
                key = f"{c.name}.V"
                writer.add_array(key, factors[i])
                keys = (shared_key, key)
            else:
                key = f"{c.name}.U"
                writer.add_array(key, np.ascontiguousarray(factors[i].T))
                keys = (key, shared_key)
            width = c.n if axis == "cols" else c.m
            note = "the bound applies to the cluster (--error-scope cluster)" \
                if opts["error_scope"] == "cluster" else None
            note = "; ".join(filter(None, (note, c.weight_note))) or None
            c.own = TensorRecord(c.name, c.shape, c.dtype, "cluster", keys, rank, errors[i],
                                 opts["max_error"], cid, c.m * c.n, rank * width, note, plain[i],
                                 c.weighting)
            names.append(c.name)
        m = basis.shape[0]
        records.append(ClusterRecord(cid, axis, tuple(names), rank, shared_key, m * rank))
    return records


def _member_factor(w, weighting, basis64, axis, np_dtype, expanded):
    """The factor of the member W (m x n) against the shared basis (r x n for cols, r x m for
    rows, in the storage dtype), its weighted error and its plain error, measured on what
    ``expanded`` (the rounding to the member's original dtype) makes of the product."""
    plain_block = w if axis == "cols" else w.T
    factor = (basis64.T @ plain_block).astype(np_dtype)
    approx = basis64 @ factor.astype(np.float64)
    approx = expanded(approx if axis == "cols" else approx.T)
    norm = float(np.linalg.norm(w))
    plain = float(np.linalg.norm(w - approx) / norm) if norm else 0.0
    if weighting.kind == "none":
        return factor, plain, plain
    weighted_norm = float(np.linalg.norm(weighting.apply(w)))
    weighted = float(np.linalg.norm(weighting.apply(w - approx)) / weighted_norm) if weighted_norm else 0.0
    return factor, weighted, plain


def _verified(errors, blocks, members, opts):
    """The exact check of what is about to be written: each member (or the cluster) within the bound."""
    if opts["error_scope"] == "matrix":
        return max(errors.values()) <= opts["max_error"]
    weights = {i: float(np.sum(blocks[i] ** 2)) for i in members}
    total = sum(weights.values())
    return math.sqrt(sum(weights[i] * errors[i] ** 2 for i in members) / total) <= opts["max_error"]
