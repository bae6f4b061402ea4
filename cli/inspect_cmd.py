"""``cond inspect``: per-matrix condition numbers and spectral diagnostics."""

from __future__ import annotations

import math
import sys
from typing import Annotated, Optional

import typer

from cond.cli.errors import EXIT_GATE, mapped_errors
from cond.cli.options import (
    ColumnsOpt,
    Device,
    DeviceOpt,
    ForceOpt,
    FormatOpt,
    HeaderOpt,
    InputFormatOpt,
    InputPath,
    OutputFormat,
    QuietOpt,
    SchedulerOpt,
    WideOpt,
    WorkersOpt,
    choices,
)
from cond.cli.output import cell, notice_printer, printable, write_csv, write_json, write_jsonl
from cond.cli.progress import progress_bar
from cond.commands.choices import SORT_KEYS

SortKey = choices("SortKey", SORT_KEYS)


EPILOG = """Examples:

  cond inspect model.safetensors

  cond inspect model.safetensors.index.json --sort kappa --top 10

  cond inspect ./checkpoint-dir --format json | jq '.matrices[] | select(.kappa > 1e4)'

  cat X.csv | cond inspect - --input-format csv --columns 'x*'

  cond inspect model.safetensors --fail-above 1e6 || echo "ill-conditioned layer"

  cond inspect model.safetensors --alpha --spectra spectra.npz

  cond inspect model.safetensors.index.json --scheduler tcp://scheduler:8786

  cond inspect model.safetensors --device cuda

  cond inspect model.safetensors --alpha --plot plots/

  cond inspect design.csv --collinearity --add-intercept

  cond inspect design.csv --collinearity --fail-above 100 -f json

Exit codes: 0 ok, 1 --fail-above exceeded, 2 bad input or usage, 70 internal error.
"""


def inspect_command(
    path: InputPath,
    output_format: FormatOpt = OutputFormat.table,
    sort: Annotated[
        SortKey, typer.Option("--sort", help="Order of the rows: file order, by name, or a number (largest first).")
    ] = SortKey.file,
    top: Annotated[
        Optional[int], typer.Option("--top", help="Show only the first N rows after sorting.", show_default=False)
    ] = None,
    filter_: Annotated[
        Optional[str],
        typer.Option(
            "--include",
            "--filter",
            help="Analyse only tensors whose name matches this regular expression (--filter is the older name).",
            show_default=False,
        ),
    ] = None,
    alpha: Annotated[
        bool, typer.Option("--alpha", help="Fit a power law to the squared singular values (Clauset MLE).")
    ] = False,
    normality: Annotated[
        bool, typer.Option("--normality", help="Henrici departure from normality of square matrices.")
    ] = False,
    gram: Annotated[
        bool,
        typer.Option(
            "--gram/--no-gram",
            help="Allow the certified Gram route for tall or wide matrices (every singular "
            "value certified to 1e-9 relative, else an SVD); --no-gram: an SVD "
            "always (every value to about max(m, n) eps sigma_max).",
        ),
    ] = True,
    fail_above: Annotated[
        Optional[float],
        typer.Option(
            "--fail-above",
            help="Exit 1 if any kappa exceeds this (non-finite or all-zero matrices count as exceeding).",
            show_default=False,
        ),
    ] = None,
    spectra: Annotated[
        Optional[str],
        typer.Option(
            "--spectra",
            help="Also write every matrix's singular values to this .npz (one array per tensor name).",
            show_default=False,
        ),
    ] = None,
    collinearity: Annotated[
        bool,
        typer.Option(
            "--collinearity",
            help="For a design matrix: Belsley-Kuh-Welsch condition indexes, variance-"
            "decomposition proportions, VIFs and the near-dependencies, by column name. "
            "--fail-above then gates on the largest condition index.",
        ),
    ] = False,
    add_intercept: Annotated[
        bool, typer.Option("--add-intercept", help="With --collinearity: prepend a constant column named const.")
    ] = False,
    scale: Annotated[
        bool, typer.Option("--scale/--no-scale", help="With --collinearity: scale columns to unit length (BKW).")
    ] = True,
    center: Annotated[
        bool, typer.Option("--center", help="With --collinearity: centre columns first (not with an intercept).")
    ] = False,
    ci_threshold: Annotated[
        float,
        typer.Option("--ci-threshold", help="With --collinearity: condition indexes above this are near-dependencies."),
    ] = 30.0,
    plot: Annotated[
        Optional[str],
        typer.Option(
            "--plot",
            help="Write pictures into this folder: per matrix the spectral density with the power-law "
            "fit (--alpha) and the scree plot, and an overview per matrix in file order. Needs "
            "pip install 'cond[plot]'.",
            show_default=False,
        ),
    ] = None,
    plot_format: Annotated[str, typer.Option("--plot-format", help="png, svg or pdf.")] = "png",
    sparkline: Annotated[
        bool,
        typer.Option("--sparkline/--no-sparkline", help="A spectrum sparkline (log scale) per matrix in the table."),
    ] = True,
    input_format: InputFormatOpt = None,
    columns: ColumnsOpt = None,
    header: HeaderOpt = None,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    device: DeviceOpt = Device.cpu,
    force: ForceOpt = False,
    base: Annotated[
        Optional[str],
        typer.Option(
            "--base",
            help="For a LoRA adapter (a PEFT folder or a kohya file): its base checkpoint, so that "
            "each delta's norm is also given relative to its weight.",
            show_default=False,
        ),
    ] = None,
    wide: WideOpt = False,
    quiet: QuietOpt = False,
):
    """Per-matrix condition numbers and spectral diagnostics of a checkpoint or design matrix.

    Every 2-D tensor is analysed in float64 from its exact stored values (N-D
    tensors as (shape[0], prod(rest))); kappa carries a status: ok, unresolved
    (float64 cannot resolve sigma_min: a guaranteed lower bound is given),
    storage-limited (kappa beyond 1/unit roundoff of the stored dtype),
    non-finite or zero. Tensors not analysed are listed with the reason.
    """
    with mapped_errors("inspect", quiet):
        from cond.commands.inspect_report import check_sort
        from cond.commands.validate import refuse_unused

        notice = notice_printer(quiet)
        if collinearity:
            refuse_unused(
                {
                    "--alpha": alpha,
                    "--normality": normality,
                    "--no-gram": not gram,
                    "--spectra": spectra is not None,
                    "--plot": plot is not None,
                    "--plot-format": plot_format != "png",
                    "--sort": sort is not SortKey.file,
                    "--top": top is not None,
                    "--include": filter_ is not None,
                    "--workers": workers is not None,
                    "--scheduler": scheduler is not None,
                    "--device": device is not Device.cpu,
                    "--base": base is not None,
                },
                "to the matrices of a checkpoint, not to `--collinearity`",
            )
            return _collinearity(
                path,
                output_format,
                fail_above,
                dict(
                    columns=columns,
                    add_intercept=add_intercept,
                    scale=scale,
                    center=center,
                    threshold=ci_threshold,
                    input_format=None if input_format is None else input_format.value,
                    header=header,
                    notice=notice,
                ),
                wide,
            )
        refuse_unused(
            {
                "--add-intercept": add_intercept,
                "--center": center,
                "--no-scale": not scale,
                "--ci-threshold": ci_threshold != 30.0,
            },
            "to `--collinearity`; add it",
        )
        check_sort(sort.value, top, alpha)
        from cond.commands.inspect import inspect

        with progress_bar("inspect", enabled=not quiet) as tick:
            report = inspect(
                path,
                alpha=alpha,
                normality=normality,
                include=filter_,
                input_format=None if input_format is None else input_format.value,
                columns=columns,
                workers=workers,
                keep_spectra=sparkline and output_format is OutputFormat.table,
                scheduler=scheduler,
                device=device.value,
                progress=tick,
                header=header,
                notice=notice,
                gram=gram,
                spectra=spectra,
                plot=plot,
                plot_format=plot_format,
                fail_above=fail_above,
                force=force,
                base=base,
            )
        if report.SCHEMA == "cond.adapter/1":
            from cond.cli.adapter_view import render

            return render(report, output_format, report.ordered(sort.value, top), wide)
        if not report.matrices:
            why = f"no tensor matches `--include {filter_}`" if filter_ is not None else "no matrix to analyse"
            print(f"cond: {why}", file=sys.stderr)
        if report.pictures and not quiet:
            print(f"cond: wrote {len(report.pictures)} pictures to {printable(plot)}", file=sys.stderr)
        rows = report.ordered(sort.value, top)
        _render(report, rows, output_format, alpha, normality, sparkline, wide)
        if report.gate_failed:
            over = report.exceeded
            name = printable(over[0])
            worst = name if len(over) == 1 else f"{len(over)} matrices, e.g. {name}"
            print(f"cond: kappa above {fail_above:g}: {worst}", file=sys.stderr)
            raise typer.Exit(EXIT_GATE)


def _collinearity(path, output_format, fail_above, options, wide=False):
    from cond.cli.collinearity_view import render
    from cond.commands.collinearity import collinearity

    report = collinearity(path, **options)
    render(report, output_format, wide)
    if fail_above is not None and report.max_condition_index > fail_above:
        print(f"cond: condition index {report.max_condition_index:.4g} above {fail_above:g}", file=sys.stderr)
        raise typer.Exit(EXIT_GATE)


def _render(report, rows, fmt, alpha, normality, sparkline=False, wide=False):
    if fmt is OutputFormat.json:
        write_json({**report.to_dict(), "matrices": [m.row() for m in rows]})
    elif fmt is OutputFormat.jsonl:
        write_jsonl(
            [
                *(("matrix", m.row()) for m in rows),
                *(("skipped", s.row()) for s in report.skipped),
                ("summary", report.to_dict()["summary"]),
            ]
        )
    elif fmt is OutputFormat.csv:
        from cond.commands.inspect_report import ROW_FIELDS

        write_csv(ROW_FIELDS, [m.row() for m in rows])
    else:
        _table(report, rows, alpha, normality, sparkline, wide)


def _g(v, digits=4):
    if v is None:
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return f"{v:.{digits}g}"


STATUS_STYLE = {"ok": "green", "unresolved": "yellow", "storage-limited": "yellow", "non-finite": "red", "zero": "red"}


INSPECT_PRIORITY = [
    "name",
    "kappa",
    "status",
    "shape",
    "rank",
    "sigma_max",
    "sigma_min",
    "alpha",
    "henrici",
    "stable",
    "eff.",
    "r90",
    "r99",
    "dtype",
    "zeros",
    "spectrum (log)",
]  # kept first to last


def _table(report, rows, alpha, normality, sparkline=False, wide=False):
    from cond.cli.output import fitted_table, table_console

    console = table_console(wide)
    columns = [("name", "left"), ("shape", "right"), ("dtype", "left"), ("kappa", "right"), ("status", "left"),
               ("sigma_max", "right"), ("sigma_min", "right"), ("rank", "right"), ("stable", "right"),
               ("eff.", "right"), ("r90", "right"), ("r99", "right"), ("zeros", "right")]  # fmt: skip
    if alpha:
        columns.append(("alpha", "right"))
    if normality:
        columns.append(("henrici", "right"))
    if sparkline:
        from cond.commands.plots import sparkline as spark

        columns.append(("spectrum (log)", "left"))
    table_rows = []
    for m in rows:
        d = m.diagnostics
        shape = "x".join(map(str, m.shape)) + (" *" if m.reshaped else "")
        status = d.status
        if d.status == "non-finite":
            status = f"non-finite ({d.nonfinite_count})"
        kappa = _g(d.kappa) if d.kappa_lower_bound is None else f">= {_g(d.kappa_lower_bound)}"
        cells = [
            cell(m.name),
            shape,
            cell(m.dtype),
            kappa,
            f"[{STATUS_STYLE[d.status]}]{status}[/]",
            _g(d.sigma_max),
            _g(d.sigma_min),
            _g(d.numerical_rank),
            _g(d.stable_rank, 3),
            _g(d.effective_rank, 3),
            _g(d.energy_rank_90),
            _g(d.energy_rank_99),
            f"{d.zero_fraction:.1%}",
        ]
        if alpha:
            cells.append(_g(d.alpha, 3))
        if normality:
            cells.append(_g(d.henrici, 3))
        if sparkline:
            cells.append(spark(d.spectrum) if d.spectrum is not None else "")
        table_rows.append(cells)
    priority = [h for h in INSPECT_PRIORITY if h in [c for c, _ in columns]]
    table, dropped = fitted_table(f"cond inspect {cell(report.input)}", columns, table_rows, priority, wide)
    console.print(table)
    if dropped:
        console.print(dropped, markup=False, highlight=False)
    if any(m.reshaped for m in rows):
        console.print("* N-D tensor analysed as (shape[0], prod(rest))")
    for reason, names in _group_skipped(report.skipped):
        shown = ", ".join(printable(n) for n in names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        console.print(f"skipped {len(names)}: {printable(reason)}: {shown}", markup=False, highlight=False)
    if report.compressed is not None:
        _manifest_lines(console, report.compressed)
    sm = report.summary
    worst = "-" if sm.worst_kappa is None else f"{_g(sm.worst_kappa)} ({printable(sm.worst_kappa_name)})"
    console.print(
        f"{sm.matrices} matrices analysed, {sm.skipped} skipped; worst kappa {worst}; "
        f"{sm.unresolved} unresolved, {sm.storage_limited} storage-limited, "
        f"{sm.nonfinite} non-finite; {sm.seconds:.2f} s",
        markup=False,
        highlight=False,
    )


def _group_skipped(skipped):
    groups = {}
    for s in skipped:
        reason = s.reason if s.dtype in s.reason else f"{s.reason} ({s.dtype})"
        groups.setdefault(reason, []).append(s.name)
    return list(groups.items())


def _manifest_lines(console, manifest):
    tensors = manifest.get("tensors", [])
    counts = {
        k: sum(t["storage"] == k for t in tensors) for k in ("lowrank", "cluster", "quantized", "groupwise", "dense")
    }
    errors = [t["error"] for t in tensors if t.get("error") is not None]
    bound = manifest.get("options", {}).get("max_error")
    console.print(
        f"{manifest.get('format')} file written by {manifest.get('tool')} ({manifest.get('method')}): "
        f"{len(tensors)} original tensors: {counts['lowrank']} low-rank, {counts['cluster']} in "
        f"{len(manifest.get('clusters', []))} clusters, {counts['quantized']} quantized, {counts['groupwise']} group-wise, "
        f"{counts['dense']} "
        "dense; worst error "
        f"{max(errors) if errors else 0:.4g}"
        + (f" (bound {bound:g})" if bound else "")
        + ". The rows above are the stored factors; `cond expand` restores the matrices.",
        markup=False,
        highlight=False,
    )
