"""``cond compress``: a low-rank checkpoint with a verified error bound for every matrix."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from cond.cli.errors import mapped_errors
from cond.cli.options import ForceOpt, FormatOpt, OutputFormat, QuietOpt, SchedulerOpt, WideOpt, choices
from cond.cli.output import cell, printable, write_csv, write_json, write_jsonl
from cond.cli.progress import progress_bar
from cond.commands.choices import AXES, ERROR_SCOPES, ESTIMATORS, FISHER_AXES, METHODS, ROUNDINGS

Estimator = choices("Estimator", ESTIMATORS)
Axis = choices("Axis", AXES)
Method = choices("Method", METHODS)
FisherAxis = choices("FisherAxis", FISHER_AXES)
Scope = choices("Scope", ERROR_SCOPES)
Rounding = choices("Rounding", ROUNDINGS)


COMPRESS_EPILOG = """Examples:

  cond compress model.safetensors --max-error 0.05 -o model.lowrank.safetensors

  cond compress model.safetensors --rank 64 --include 'attn' -o out.safetensors

  cond compress model.safetensors --max-error 0.1 --no-cluster -o out.safetensors

  cond compress model.safetensors --max-error 0.05 --group '(query|key|value)' -o out.safetensors

  cond compress model.safetensors --max-error 0.05 --format json -o out.safetensors > report.json

  cond compress model.safetensors --method fisher --fisher fisher.safetensors --max-error 0.05 -o out.safetensors

  cond compress model.safetensors --method whiten --activations grams.safetensors --ratio 0.6 -o out.safetensors

  cond compress model.safetensors.index.json --max-error 0.05 --scheduler local:8 -o out.safetensors

  cond compress model.safetensors --method whiten --activations grams.safetensors --budget 0.7 -o out.safetensors

  cond compress model.safetensors --method whiten --activations grams.safetensors --fisher fisher.safetensors --budget 0.7 -o out.safetensors

  cond compress model.safetensors --dtype int8 --budget-bytes 0.25 -o out.safetensors

  cond compress model.safetensors --dtype int8 --max-error 0.02 -o out.safetensors

  cond compress model.safetensors --dtype int4 --group-size 64 -o out.safetensors

  cond compress model.safetensors --dtype int4 --activations grams.safetensors --correction-rank 16 -o out.safetensors

  cond compress model.safetensors --method whiten --activations grams.safetensors --budget-bytes 0.17 --max-error 0.2 -o out.safetensors
"""


def compress_command(
    paths: Annotated[
        list[str],
        typer.Argument(
            help="A .safetensors file, an index JSON or a checkpoint directory; a LoRA adapter (PEFT folder or "
            "kohya file) to resize; several adapters of one base (or a folder of them) for a collection.",
            show_default=False,
        ),
    ],
    output: Annotated[str, typer.Option("--output", "-o", help="The .safetensors file to write.", show_default=False)],
    max_error: Annotated[
        Optional[float],
        typer.Option(
            "--max-error", help="Bound on every matrix's relative Frobenius error, after rounding.", show_default=False
        ),
    ] = None,
    rank: Annotated[
        Optional[int], typer.Option("--rank", help="A fixed rank for every matrix.", show_default=False)
    ] = None,
    ratio: Annotated[
        Optional[float],
        typer.Option("--ratio", help="Fraction of each matrix's parameters to keep, in (0, 1].", show_default=False),
    ] = None,
    budget: Annotated[
        Optional[float],
        typer.Option(
            "--budget",
            help="Share of the selected matrices' parameters to keep in all, spent where the "
            "method's error falls most (may join --max-error).",
            show_default=False,
        ),
    ] = None,
    budget_bytes: Annotated[
        Optional[float],
        typer.Option(
            "--budget-bytes",
            help="As --budget, a share of the selected matrices' bytes (with --dtype, forms of other dtypes compete).",
            show_default=False,
        ),
    ] = None,
    min_saving: Annotated[
        float, typer.Option("--min-saving", help="Store a matrix compressed only if that saves this share of it.")
    ] = 0.05,
    allow_slower: Annotated[
        bool, typer.Option("--allow-slower", help="Let a cluster member cost more multiply-adds than its dense matrix.")
    ] = False,
    include: Annotated[
        Optional[str],
        typer.Option("--include", help="Compress only matrices whose name matches this regex.", show_default=False),
    ] = None,
    exclude: Annotated[
        Optional[str],
        typer.Option("--exclude", help="Leave matrices whose name matches this regex as they are.", show_default=False),
    ] = None,
    min_size: Annotated[int, typer.Option("--min-size", help="Matrices with fewer entries stay as they are.")] = 4096,
    cluster: Annotated[
        Optional[bool],
        typer.Option(
            "--cluster/--no-cluster",
            help="Let matrices share bases (default: yes with --max-error; --cluster needs it).",
            show_default=False,
        ),
    ] = None,
    estimator: Annotated[
        Estimator, typer.Option("--estimator", help="How a cluster's error is predicted while it grows.")
    ] = Estimator["incremental"],
    patience: Annotated[int, typer.Option("--patience", help="Failed candidates in a row that end a cluster.")] = 8,
    axis: Annotated[
        Axis,
        typer.Option(
            "--axis",
            help="cols: equal row counts share a left basis; rows: equal column counts share "
            "a right basis; auto: cols, then rows.",
        ),
    ] = Axis["auto"],
    group: Annotated[
        Optional[str],
        typer.Option(
            "--group",
            help="Only matrices with the same match of this regex (its first group if any) may share a basis.",
            show_default=False,
        ),
    ] = None,
    error_scope: Annotated[
        Scope,
        typer.Option(
            "--error-scope", help="matrix: bound every matrix; cluster: bound each cluster (the paper's scope)."
        ),
    ] = Scope["matrix"],
    dtype: Annotated[
        Optional[str],
        typer.Option(
            "--dtype",
            help="Storage dtype of the factors: f32, f16, bf16, f64, or int8 (a float32 scale "
            "per row); a matrix may also be stored whole at it (default: each tensor's "
            "own). int2 .. int7: every matrix as group-wise codes of that width (fp16 "
            "scales and zero points per group), with an optional low-rank correction.",
            show_default=False,
        ),
    ] = None,
    group_size: Annotated[
        Optional[int],
        typer.Option(
            "--group-size",
            help="Columns per group of group-wise codes: 32, 64 or 128 (default 128 at "
            "--dtype intN; every size under --budget-bytes). With --dtype int8: "
            "8-bit groups instead of int8 rows.",
            show_default=False,
        ),
    ] = None,
    rounding: Annotated[
        Rounding,
        typer.Option(
            "--rounding",
            help="How group-wise codes are rounded: gptq (against the --activations Grams), "
            "nearest, or auto (gptq when --activations is given).",
        ),
    ] = Rounding["auto"],
    act_order: Annotated[
        Optional[bool],
        typer.Option(
            "--act-order/--no-act-order",
            help="GPTQ: quantize columns by decreasing input energy (groups stay contiguous); default on with GPTQ.",
            show_default=False,
        ),
    ] = None,
    rotate: Annotated[
        bool,
        typer.Option(
            "--rotate/--no-rotate",
            help="Quantize the weights in a seeded block-Hadamard rotation of their "
            "inputs (incoherence; undone when read back).",
        ),
    ] = True,
    damp: Annotated[
        float, typer.Option("--damp", help="GPTQ's damping, relative to the mean diagonal of the Gram.")
    ] = 0.01,
    symmetric: Annotated[bool, typer.Option("--symmetric", help="Group-wise codes without zero points.")] = False,
    correction_rank: Annotated[
        Optional[int],
        typer.Option(
            "--correction-rank",
            help="Rank of the low-rank correction of rounding at --dtype intN (with "
            "--max-error: the smallest rank from there that meets it).",
            show_default=False,
        ),
    ] = None,
    correction_dtype: Annotated[
        Optional[str],
        typer.Option(
            "--correction-dtype",
            help="Storage of the correction's factors: f16 (default), bf16, f32 or int8.",
            show_default=False,
        ),
    ] = None,
    preserve: Annotated[
        bool,
        typer.Option(
            "--preserve",
            help="Keep the correction's directions before rounding and round the rest "
            "(preserve then quantize), instead of correcting the residual.",
        ),
    ] = False,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of the randomized range finder and of a rotation's signs.")
    ] = 0,
    method: Annotated[
        Method,
        typer.Option(
            "--method",
            help="svd: plain truncated SVD; fisher: Fisher-weighted SVD (--fisher); whiten: "
            "activation-aware whitening (--activations). With weights the bound applies "
            "to the weighted error.",
        ),
    ] = Method["svd"],
    fisher: Annotated[
        Optional[str],
        typer.Option(
            "--fisher",
            help="Safetensors file of accumulated squared gradients per weight name (per element, "
            "or a vector per input/output feature); with --method whiten and a budget, the "
            "layer sensitivities that weigh each layer's output error.",
            show_default=False,
        ),
    ] = None,
    fisher_axis: Annotated[
        FisherAxis,
        typer.Option(
            "--fisher-axis", help="One Fisher importance per input feature (in), per output feature (out), or both."
        ),
    ] = FisherAxis["in"],
    activations: Annotated[
        Optional[str],
        typer.Option(
            "--activations",
            help="Safetensors file of input Gram matrices X^T X (in x in) per weight name "
            "(cond calibrate writes one): whitening with --method whiten, and with "
            "any method each matrix's output error.",
            show_default=False,
        ),
    ] = None,
    max_pool_size: Annotated[
        str,
        typer.Option(
            "--max-pool-size",
            help="Most float64 data loaded at once for clustering (5GB, 512MiB); "
            "bigger pools are clustered in consecutive chunks.",
        ),
    ] = "1GiB",
    scheduler: SchedulerOpt = None,
    base: Annotated[
        Optional[str],
        typer.Option(
            "--base",
            help="The base checkpoint of a fine-tuned PATH: write the PEFT LoRA adapter of the "
            "fine-tune (a folder) within --max-error, or at --rank.",
            show_default=False,
        ),
    ] = None,
    force: ForceOpt = False,
    output_format: FormatOpt = OutputFormat.table,
    wide: WideOpt = False,
    quiet: QuietOpt = False,
):
    """Compress the matrices of a checkpoint into a cond-lowrank/3 safetensors file.

    Every matrix is stored untouched, whole at the storage dtype (quantized), as
    group-wise 2-8 bit codes with an optional low-rank correction, as a truncated
    SVD or as a member of a cluster sharing one basis, whichever is cheapest in
    bytes (--budget-bytes: whichever spends the bytes best); with --max-error each is within the bound, measured on the
    file as written (factors in the original dtype unless --dtype). The report
    gives bytes and multiply-adds per input vector against dense.
    """
    with mapped_errors("compress", quiet):
        from cond.commands.compress import compress
        from cond.commands.expand import byte_size

        with progress_bar("compress", enabled=not quiet) as tick:
            report = compress(
                paths[0] if len(paths) == 1 else paths,
                output,
                max_error=max_error,
                rank=rank,
                ratio=ratio,
                include=include,
                exclude=exclude,
                min_size=min_size,
                cluster=cluster,
                estimator=estimator.value,
                patience=patience,
                axis=axis.value,
                group=group,
                error_scope=error_scope.value,
                dtype=dtype,
                seed=seed,
                force=force,
                method=method.value,
                fisher=fisher,
                fisher_axis=fisher_axis.value,
                activations=activations,
                scheduler=scheduler,
                budget=budget,
                budget_bytes=budget_bytes,
                min_saving=min_saving,
                allow_slower=allow_slower,
                max_pool_bytes=byte_size(max_pool_size, "--max-pool-size"),
                base=base,
                group_size=group_size,
                rounding=rounding.value,
                act_order=act_order,
                damp=damp,
                symmetric=symmetric,
                correction_rank=correction_rank,
                correction_dtype=correction_dtype,
                preserve=preserve,
                rotate=rotate,
                progress=(lambda stage, done, total, name="": tick(done, total, f"{stage}: {name}" if name else stage))
                if tick
                else None,
            )
        if report.SCHEMA == "cond.compress-adapter/1":
            return _adapter_render(report, output_format)
        if report.SCHEMA == "cond.compress-collection/1":
            return _collection_render(report, output_format)
        _render(report, output_format, wide)
        if report.nothing_compressed is not None:
            print(f"cond: nothing compressed: {printable(report.nothing_compressed)}", file=sys.stderr)


def _render(report, fmt, wide=False):
    doc = report.to_dict()
    if fmt is OutputFormat.json:
        return write_json(doc)
    if fmt is OutputFormat.jsonl:
        return write_jsonl(
            [
                *(("tensor", t) for t in doc["tensors"]),
                *(("cluster", c) for c in doc["clusters"]),
                ("totals", doc["totals"]),
            ]
        )
    if fmt is OutputFormat.csv:
        from cond.commands.compress.report import TENSOR_FIELDS

        return write_csv(TENSOR_FIELDS, doc["tensors"])
    _table(doc, wide)


COMPRESS_PRIORITY = ["name", "storage", "error", "weighted error", "rank", "bytes", "bound", "output error", "shape",
                     "plain error", "MACs", "weighting", "params", "cluster"]  # fmt: skip


def _table(doc, wide=False):
    from cond.cli.output import fitted_table, table_console

    console = table_console(wide)
    weighted = doc["method"] != "svd"
    outputs = any(t["output_error"] is not None for t in doc["tensors"]) and doc["method"] != "whiten"
    columns = ["name", "shape", "storage", "rank", "weighted error" if weighted else "error", "bound"]
    columns += ["plain error", "weighting"] if weighted else []
    columns += ["output error"] if outputs else []
    columns += ["params", "bytes", "MACs", "cluster"]
    rows = []
    for t in doc["tensors"]:
        if t["storage"] == "dense" and t["error"] is None:
            continue  # untouched tensors: counted in the totals below
        storage = t["storage"] if t["storage"] == "dense" else f"{t['storage']} {t['storage_dtype']}"
        if t["storage"] == "groupwise":
            storage = f"int{t['bits']} g{t['group']}" + (f" + {t['storage_dtype']}" if t["rank"] else "")
        row = [
            cell(t["name"]),
            "x".join(map(str, t["shape"])),
            storage,
            "-" if t["rank"] is None else str(t["rank"]),
            _num(t["error"]),
            _num(t["bound"], "g"),
        ]
        if weighted:
            row += [_num(t["plain_error"]), cell(t["weighting"])]
        if outputs:
            row += [_num(t["output_error"])]
        rows.append(
            row
            + [
                f"{t['params_before']} -> {t['params_after']}",
                f"{t['bytes_before']} -> {t['bytes_after']}",
                f"x{t['macs_after'] / t['macs_before']:.2f}",
                "-" if t["cluster"] is None else str(t["cluster"]),
            ]
        )
    title = f"cond compress {cell(doc['input'])} -> {cell(doc['output'])}"
    justify = [(c, "left" if c in ("name", "storage", "weighting") else "right") for c in columns]
    table, dropped = fitted_table(title, justify, rows, [c for c in COMPRESS_PRIORITY if c in columns], wide)
    console.print(table)
    say = lambda text: console.print(printable(text), markup=False, highlight=False)  # noqa: E731
    if dropped:
        say(dropped)
    for line in note_lines(doc["tensors"], weighted):
        say(line)
    if doc["unweighted"]:
        say(f"no weights entry, compressed with plain SVD: {', '.join(doc['unweighted'])}")
    for c in doc["clusters"]:
        say(
            f"cluster {c['id']} ({c['axis']}, rank {c['rank']}, shared {c['params']} params): {', '.join(c['members'])}"
        )
    for line in summary_lines(doc["totals"]):
        say(line)


def note_lines(tensors, weighted):
    """The notes of the selected matrices, one line per distinct note with its count and the
    first names (a checkpoint's 37 untouched matrices are one line, not 37)."""
    groups: dict = {}
    for t in tensors:
        if t["note"] and t["error"] is not None and (weighted or t["storage"] == "dense"):
            groups.setdefault(t["note"], []).append(t["name"])
    lines = []
    for note, names in groups.items():
        if len(names) == 1:
            lines.append(f"{names[0]}: {note}")
            continue
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        lines.append(f"{len(names)} matrices: {note} ({shown})")
    return lines


def _num(value, fmt=".4f"):
    return "-" if value is None else format(value, fmt)


def summary_lines(t):
    """The totals as sentences: what was stored how, what it costs to run, what the function gives up."""
    worst = _num(t["worst_error"])
    lines = [
        f"{t['lowrank']} low-rank, {t['cluster']} in {t['clusters']} clusters, {t['quantized']} quantized, "
        f"{t['groupwise']} group-wise, "
        f"{t['matrices'] - t['lowrank'] - t['cluster'] - t['quantized'] - t['groupwise']} of {t['matrices']} "
        "matrices kept "
        f"dense; worst error {worst}; parameters {t['params_before']} -> {t['params_after']} "
        f"(x{t['param_ratio']:.2f}); file bytes {t['bytes_before']} -> {t['bytes_after']} "
        f"(x{t['compression_ratio']:.2f}); {t['seconds']:.1f} s"
    ]
    if t["matrices"]:
        lines.append(
            f"the compressed matrices: bytes {t['matrix_bytes_before']} -> {t['matrix_bytes_after']} "
            f"({t['matrix_bytes_after'] / max(t['matrix_bytes_before'], 1):.3f}), multiply-adds per "
            f"input vector {t['macs_before']} -> {t['macs_after']} "
            f"({t['macs_after'] / max(t['macs_before'], 1):.3f} of dense)"
        )
    if t["mean_output_error"] is not None:
        lines.append(
            f"on the calibration inputs each layer's output moves by {t['mean_output_error']:.4f} of its "
            f"norm on average over the {t['matrices']} matrices (kept ones at 0; worst "
            f"{t['worst_output_error']:.4f}): what the function gives up, layer by layer; on unseen text "
            "expect more where a few layers are cut hard"
        )
    if t["budget"]:
        b = t["budget"]
        lines.append(
            f"budget {b['share']:g} of the {b['unit']}: planned {b['planned']:.4f}, spent "
            f"{b['spent']:.4f} (measured on what was written)"
        )
    if t["clustering"]:
        c = t["clustering"]
        lines.append(
            f"clustering: {c['seconds']:.2f} s; {c['chunks']} pools, {c['proven']} of them proven to "
            f"hold no cluster that saves (not searched); {c['slower']} matrices left out because "
            "sharing would raise their multiply-adds above dense (--allow-slower)"
        )
    return lines


def _per_module(doc, fmt, fields, rows):
    """The machine-readable forms of a per-module report: the object (json), one record per module
    and the totals (jsonl), or ``rows`` with ``fields`` (csv). False for the table."""
    if fmt is OutputFormat.json:
        write_json(doc)
    elif fmt is OutputFormat.jsonl:
        write_jsonl([*(("module", m) for m in doc["modules"]), ("totals", doc["totals"])])
    elif fmt is OutputFormat.csv:
        write_csv(fields, rows)
    else:
        return False
    return True


def _adapter_render(report, fmt):
    """An adapter run: the cond.compress-adapter/1 object, or one line per module and a summary."""
    doc = report.to_dict()
    if _per_module(
        doc,
        fmt,
        ("name", "shape", "rank_before", "rank", "error", "bound", "bytes_before", "bytes_after", "route"),
        doc["modules"],
    ):
        return
    for m in doc["modules"]:
        before = "" if m["rank_before"] is None else f"rank {m['rank_before']} -> "
        print(f"{printable(m['name'])}: {before}rank {m['rank']}, error {m['error']:.4f} ({m['route']})")
    for w in doc["whole"]:
        print(f"{printable(w['key'])}: {printable(w['reason'])}")
    for left in doc["left_out"]:
        print(f"left out {printable(left['name'])}: {printable(left['reason'])}", file=sys.stderr)
    t = doc["totals"]
    worst = "-" if t["worst_error"] is None else f"{t['worst_error']:.4f}"
    print(
        f"{t['modules']} modules ({report.mode}), {t['bytes_before']} -> {t['bytes_after']} bytes of factored "
        f"weights, worst error {worst}; wrote {printable(report.output)} ({report.format})"
    )


def _collection_render(report, fmt):
    """A collection run: the cond.compress-collection/1 object, or a line per module and the bytes."""
    doc = report.to_dict()
    rows = [
        {**m, "groups": ";".join(f"{g['rank']}:{'+'.join(g['members'])}" for g in m["groups"])} for m in doc["modules"]
    ]
    if _per_module(doc, fmt, ("name", "shape", "groups", "worst_error"), rows):
        return
    for m in doc["modules"]:
        groups = ", ".join(f"rank {g['rank']} for {len(g['members'])}" for g in m["groups"])
        print(f"{printable(m['name'])}: {groups}; worst error {m['worst_error']:.4f}")
    t = doc["totals"]
    print(
        f"{len(report.adapters)} adapters in {printable(report.output)}: {t['bytes_collection']} bytes of factors, "
        f"{t['against_inputs']:.3f} of the inputs' {t['bytes_inputs']}, {t['against_alone']:.3f} of resizing each "
        f"alone ({t['bytes_alone']})"
    )
