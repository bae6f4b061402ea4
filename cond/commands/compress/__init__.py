"""``cond.compress``: a safetensors checkpoint to a ``cond-lowrank/3`` file, every matrix bounded.

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
import os
import time

from cond.commands.compress.budget import plan_budget
from cond.commands.compress.clusters import cluster_pass
from cond.commands.compress.options import CompressOptions, compress_options
from cond.commands.compress.own_form import first_pass, select_reason
from cond.commands.compress.report import CompressReport
from cond.errors import UsageError
from cond.formats import open_entries
from cond.formats.detect import format_of
from cond.formats.lowrank_format import FORMAT, is_compressed
from cond.formats.outputs import OutputPlan
from cond.formats.safetensors_file import read_header
from cond.formats.safetensors_writer import SafetensorsWriter
from cond.threads import busy_aware_blas

__all__ = ["CompressOptions", "CompressReport", "compress", "compress_options"]


def compress(
    source,
    output,
    *,
    max_error=None,
    rank=None,
    ratio=None,
    include=None,
    exclude=None,
    min_size=4096,
    cluster=None,
    estimator="incremental",
    patience=8,
    axis="auto",
    group=None,
    error_scope="matrix",
    dtype=None,
    seed=0,
    force=False,
    max_pool_bytes=2**30,
    method="svd",
    fisher=None,
    fisher_axis="in",
    activations=None,
    scheduler=None,
    progress=None,
    budget=None,
    budget_bytes=None,
    min_saving=0.05,
    allow_slower=False,
    base=None,
    group_size=None,
    rounding="auto",
    act_order=None,
    damp=0.01,
    symmetric=False,
    correction_rank=None,
    correction_dtype=None,
    preserve=False,
    rotate=True,
) -> CompressReport:
    """Compress the matrices of a safetensors checkpoint into a ``cond-lowrank/3`` file.

    Parameters
    ----------
    source : str
        A ``.safetensors`` file, an index JSON or a checkpoint directory.
    output : str
        The file to write (never the input; an existing file only with ``force``).
    max_error, rank, ratio : float, int, float
        The bound on every matrix's relative Frobenius error, a fixed rank, or the
        fraction of each matrix's parameters to keep (one of them, or a budget).
    budget, budget_bytes : float, optional
        The share of the selected matrices' parameters (or bytes) to keep in all,
        spent where the method's error falls most (:mod:`cond.commands.compress.budget`);
        ``max_error`` may be given too and is honoured for every matrix.
    min_saving : float
        A matrix is stored compressed only if that saves this share of its bytes
        (of its budget unit under a budget).
    allow_slower : bool
        Let a cluster member cost more multiply-adds than the dense matrix.
    include, exclude : str, optional
        Regular expressions on tensor names (``re.search``) selecting matrices.
    min_size : int
        Matrices with fewer entries stay as they are.
    cluster : bool, optional
        Let matrices share bases: None (default) does so with ``max_error``; True insists
        (``max_error`` needed); False never.
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
        Storage dtype of the factors (default: each tensor's own); ``int8`` stores
        int8 rows with a float32 scale each. A matrix may also be stored whole at it
        (``quantized``) when that is the cheapest form within the bound. ``int2`` ..
        ``int7`` (or ``int8`` with ``group_size``) store every matrix as group-wise codes
        (:mod:`cond.commands.compress.groupwise_form`), with a low-rank correction of
        ``correction_rank`` (with ``max_error``: the smallest rank from there that meets it).
        With ``budget_bytes`` and no dtype, every form competes for the bytes.
    group_size : {32, 64, 128}, optional
        Columns per group (default 128 at a uniform width; every size under a budget).
    rounding : {"auto", "gptq", "nearest"}
        GPTQ against the ``activations`` Grams (``auto``: when they are given), or round to nearest.
    act_order, damp : bool or None, float
        GPTQ's column order by decreasing Gram diagonal (None: on with GPTQ), and its damping
        (relative to the mean diagonal).
    rotate : bool
        Quantize W R for a seeded block-Hadamard rotation R (``seed``) and store Q R^T's
        codes: incoherence that shrinks the groups' ranges (:class:`cond.linalg.groupwise.Rotation`).
    symmetric : bool
        Group-wise codes without zero points.
    correction_rank : int, optional
        The rank of the low-rank correction of rounding at a uniform width (default 0).
    correction_dtype : str, optional
        Storage of the correction's factors: f16 (default), bf16, f32 or int8 rows.
    preserve : bool
        Keep the correction's directions before rounding (``W - L R`` is rounded) rather than
        correct the rounding residual afterwards.
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
        Safetensors file of input Gram matrices X^T X (in x in) per weight name: the
        whitening of ``method="whiten"``, and with any method the output error
        ``||(W - W_hat) X^T||_F / ||W X^T||_F`` reported per matrix.
    scheduler : str, optional
        A Dask scheduler address or ``local:N`` (default ``$COND_SCHEDULER``, else in
        this process): one task per matrix, then one per pool chunk; the workers read
        the tensors from the checkpoint's files, this process writes the output.
    progress : callable, optional
        ``progress(stage, done, total, name)``: before each matrix of a stage (``budget``,
        ``matrices``, ``clustering``) with the matrix's name, and once at the end with ``""``;
        tensors that are copied untouched are not counted.
    base : str, optional
        With a fine-tuned ``source``: its base checkpoint; writes the PEFT LoRA adapter of the
        fine-tune (:mod:`cond.commands.adapter_extract`). A LoRA adapter ``source`` (PEFT
        folder or kohya file) is resized instead (:mod:`cond.commands.adapter_compress`).

    Returns
    -------
    CompressReport
        Or, for an adapter or a fine-tune, an ``AdapterCompressReport`` (``cond.compress-adapter/1``).
    """
    if isinstance(source, (list, tuple)) or _is_adapter_folder_of_adapters(source):
        return _collection_run(source, output, base, locals())
    if base is not None or _is_adapter(source):
        return _adapter_run(source, output, base, locals())
    opts = compress_options(
        max_error=max_error,
        rank=rank,
        ratio=ratio,
        include=include,
        exclude=exclude,
        min_size=min_size,
        cluster=cluster,
        estimator=estimator,
        patience=patience,
        axis=axis,
        group=group,
        error_scope=error_scope,
        dtype=dtype,
        seed=seed,
        max_pool_bytes=max_pool_bytes,
        method=method,
        fisher=fisher,
        fisher_axis=fisher_axis,
        activations=activations,
        budget=budget,
        budget_bytes=budget_bytes,
        min_saving=min_saving,
        allow_slower=allow_slower,
        group_size=group_size,
        rounding=rounding,
        act_order=act_order,
        damp=damp,
        symmetric=symmetric,
        correction_rank=correction_rank,
        correction_dtype=correction_dtype,
        preserve=preserve,
        rotate=rotate,
    )
    started = time.perf_counter()
    from cond.formats.sources import checkpoint_source

    with (
        checkpoint_source(source, "compress") as (source, label),
        OutputPlan([source, fisher, activations], force=force) as plan,
    ):
        entries, sources, source_meta = _checkpoint(source, label)
        output = plan.file(output, "--output")
        with busy_aware_blas():
            return _compress(
                opts,
                plan,
                source,
                label,
                output,
                entries,
                sources,
                source_meta,
                fisher,
                activations,
                scheduler,
                progress,
                started,
            )


def _compress(
    opts, plan, source, label, output, entries, sources, source_meta, fisher, activations, scheduler, progress, started
):
    names = {e.name for e in entries}
    selected = [e for e in entries if select_reason(e, opts) is None]
    calibration, grams = _weights_files(opts, fisher, activations, source, output, sources, selected)
    sensitivities = _sensitivities(opts, fisher, source, output, sources, selected)
    from cond.distributed import scheduler_from

    spec = scheduler_from(scheduler)
    with contextlib.ExitStack() as stack:
        client = None
        if spec is not None:
            from cond.distributed import dask_client

            client = stack.enter_context(dask_client(spec))
            same = grams is calibration
            if calibration is not None:  # sent to every worker once, not with every task
                calibration = client.scatter(calibration, broadcast=True)
            if grams is not None:
                grams = calibration if same else client.scatter(grams, broadcast=True)
        plans, budget_summary = {}, None
        if opts.budget is not None:
            _refuse_zero_size(selected)
            plans, budget_summary = plan_budget(selected, opts, calibration, client, progress, sensitivities, grams)
        writer = stack.enter_context(SafetensorsWriter(plan, output))
        records, candidates = first_pass(entries, names, writer, opts, calibration, progress, client, plans, grams)
        clusters, cluster_summary = [], None
        if opts.cluster:
            clusters, cluster_summary = cluster_pass(
                candidates, records, writer, opts, calibration, progress, client, grams
            )
        manifest = dict(
            format=FORMAT,
            tool=f"cond {_version()}",
            method=opts.method,
            source=label,
            options=opts.record(),
            source_metadata=source_meta,
            tensors=[records[e.name].manifest_entry() for e in entries],
            clusters=[c.row() for c in clusters],
        )
        writer.set_metadata("cond.format", FORMAT)
        writer.set_metadata("cond.manifest", json.dumps(manifest, separators=(",", ":")))
    tensors = tuple(records[e.name] for e in entries)
    if budget_summary is not None:
        budget_summary["spent"] = _spent(tensors, clusters, opts.budget_unit)
    return CompressReport(
        budget=budget_summary,
        cluster_summary=cluster_summary,
        input=label,
        output=output,
        options=opts.record(),
        tensors=tensors,
        clusters=tuple(clusters),
        params_before=sum(t.params_before for t in tensors),
        params_after=sum(t.params_after for t in tensors) + sum(c.params for c in clusters),
        bytes_before=sum(os.path.getsize(p) for p in sources),
        bytes_after=writer.size,
        seconds=time.perf_counter() - started,
        method=opts.method,
        unweighted=tuple(c.name for c in candidates if c.weighting == "none" and calibration is not None),
    )


def _is_adapter(source):
    from cond.formats.lora import is_adapter

    return isinstance(source, (str, os.PathLike)) and is_adapter(source)


def _is_adapter_folder_of_adapters(source):
    """A folder (not itself an adapter) whose subfolders are PEFT adapters: a collection's input."""
    from cond.formats.lora import is_adapter

    if not isinstance(source, (str, os.PathLike)) or not os.path.isdir(source) or is_adapter(source):
        return False
    subs = [os.path.join(source, d) for d in sorted(os.listdir(source))]
    return any(os.path.isdir(d) and is_adapter(d) for d in subs)


def _collection_run(source, output, base, given):
    """Several adapters (or a folder of them) into one collection with shared bases."""
    from cond.commands.adapter_collection import compress_collection
    from cond.formats.lora import is_adapter

    if isinstance(source, (list, tuple)):
        sources = list(source)
    else:
        sources = [os.path.join(source, d) for d in sorted(os.listdir(source)) if is_adapter(os.path.join(source, d))]
    if (
        base is not None
        or given["rank"] is not None
        or given["budget"] is not None
        or given["budget_bytes"] is not None
    ):
        raise UsageError(
            "a collection of adapters takes `--max-error` (no `--base`, `--rank` or budget: every "
            "adapter is bounded on its own)"
        )
    for path in sources:
        if not is_adapter(path):
            raise UsageError(
                "several inputs make a collection of LoRA adapters; this is not one (a PEFT folder or a kohya file)",
                path=os.fspath(path),
            )
    given = dict(given, base=None)
    _refuse_checkpoint_options(given)  # the same refusals as one adapter
    tick = given["progress"]
    return compress_collection(
        sources,
        output,
        max_error=given["max_error"],
        dtype=given["dtype"],
        force=given["force"],
        progress=(lambda done, total, name: tick("modules", done, total, name)) if tick else None,
    )


def _adapter_run(source, output, base, given):
    """Resize an adapter or extract one from a fine-tune; options that only apply to checkpoints
    are refused, not ignored."""
    _refuse_checkpoint_options(given)
    tick = given["progress"]
    progress = (lambda done, total, name: tick("modules", done, total, name)) if tick else None
    common = dict(
        max_error=given["max_error"],
        rank=given["rank"],
        dtype=given["dtype"],
        include=given["include"],
        force=given["force"],
        progress=progress,
        budget=given["budget"],
        budget_bytes=given["budget_bytes"],
    )
    from cond.commands.adapter_compress import adapter_options

    adapter_options(
        given["max_error"],
        given["rank"],
        given["dtype"],
        given["budget"],
        given["method"],
        given["budget_bytes"],
        given["activations"],
        extract=base is not None,
    )
    if base is not None:
        from cond.commands.adapter_extract import extract

        return extract(source, base, output, seed=given["seed"], activations=given["activations"], **common)
    from cond.commands.adapter_compress import resize

    return resize(source, output, **common)


def _refuse_checkpoint_options(given):
    from cond.commands.validate import refuse_unused

    whitening = given["method"] == "whiten" and given.get("base") is not None
    refuse_unused(
        {
            "--ratio": given["ratio"] is not None,
            "--exclude": given["exclude"] is not None,
            "--cluster": bool(given["cluster"]),
            "--fisher": given["fisher"] is not None,
            "--activations": given["activations"] is not None and not whitening,
            "--scheduler": given["scheduler"] is not None,
            "--group": given["group"] is not None,
            "--allow-slower": bool(given["allow_slower"]),
            "--estimator": given["estimator"] != "incremental",
            "--axis": given["axis"] != "auto",
            "--error-scope": given["error_scope"] != "matrix",
        },
        "to checkpoints; an adapter or a fine-tune delta takes --max-error or --rank",
    )


def _version():
    from cond._version import __version__

    return __version__


def _checkpoint(source, label):
    """The checkpoint's entries (every header checked), its files and its own metadata."""
    fmt = format_of(source, label)
    if fmt not in ("safetensors", "index", "directory"):
        raise UsageError(
            f"cond compress reads safetensors checkpoints (file, index or directory); {label} is {fmt}", path=label
        )
    with open_entries(source) as entries:  # every header checked, the index against its shards
        entries = list(entries)
    sources = [source] if fmt == "safetensors" else list(dict.fromkeys(e.source for e in entries))
    source_meta = read_header(source).metadata if fmt == "safetensors" else {}
    if fmt == "safetensors" and is_compressed(source_meta):
        raise UsageError("is already a cond-lowrank file; expand it first", path=label)
    return entries, sources, source_meta


def _weights_files(opts, fisher, activations, source, output, sources, selected):
    """The method's weights file and the Gram file that measures output errors (the same for whiten)."""
    calibration = _calibration(opts, fisher, activations, source, output, sources)
    if calibration is not None:
        calibration.check_names([e.name for e in selected])
    grams = calibration if opts.method == "whiten" else _grams(activations, source, output, sources)
    if grams is not None:
        grams.check_names([e.name for e in selected])
        grams.check_rows(selected)
    return calibration, grams


def _sensitivities(opts, fisher, source, output, sources, selected):
    """With ``--method whiten --fisher``: the Fisher file that weighs each layer in the budget."""
    if opts.method != "whiten" or fisher is None:
        return None
    from cond.formats.calibration_file import CalibrationFile

    path = str(fisher)
    if os.path.abspath(path) in {os.path.abspath(p) for p in (*sources, output)}:
        raise UsageError("the weights file must not be the checkpoint or the output", path=path)
    found = CalibrationFile(path, "fisher", "in")
    found.check_names([e.name for e in selected])
    return found


def _spent(tensors, clusters, unit):
    """The share of the selected matrices' parameters (or bytes) the file holds for them."""
    chosen = [t for t in tensors if t.macs_before is not None]
    before = sum(getattr(t, f"{unit}_before") for t in chosen)
    after = sum(getattr(t, f"{unit}_after") for t in chosen) + sum(
        c.bytes if unit == "bytes" else c.params for c in clusters
    )
    return after / before if before else 0.0


def _refuse_zero_size(selected):
    from cond.errors import InputError

    for e in selected:
        if 0 in e.shape:
            raise InputError("matrix has a zero-size dimension", path=e.source, tensor=e.name, shape=e.shape)


def _grams(activations, source, output, sources):
    """The Gram file of ``--activations`` given with svd or fisher: the output error only."""
    if activations is None:
        return None
    from cond.formats.calibration_file import CalibrationFile

    path = str(activations)
    if os.path.abspath(path) in {os.path.abspath(p) for p in (*sources, output)}:
        raise UsageError("the weights file must not be the checkpoint or the output", path=path)
    return CalibrationFile(path, "gram")


def _calibration(opts, fisher, activations, source, output, sources):
    from cond.formats.calibration_file import CalibrationFile

    path = fisher if opts.method == "fisher" else activations if opts.method == "whiten" else None
    if path is None:
        return None
    path = str(path)
    if os.path.abspath(path) in {os.path.abspath(p) for p in (*sources, output)}:
        raise UsageError("the weights file must not be the checkpoint or the output", path=path)
    return CalibrationFile(path, "fisher" if opts.method == "fisher" else "gram", opts.fisher_axis)
