"""``cond dedup``: drop near-duplicate columns of a design matrix (a stacking meta-design, say)."""

from __future__ import annotations

import math
from typing import Annotated, Optional

import typer

from cond.cli.errors import mapped_errors
from cond.cli.options import (
    ColumnsOpt,
    ForceOpt,
    FormatOpt,
    HeaderOpt,
    InputFormatOpt,
    InputPath,
    OutputFormat,
    QuietOpt,
)
from cond.cli.output import cell, notice_printer, printable, write_csv, write_json, write_jsonl

EPILOG = """Examples:

  cond dedup stack.csv --max-corr 0.95 -o stack.dedup.csv

  cond dedup predictions.parquet --columns 'model_*' --prefer 'xgb' -o kept.npy

  cond dedup X.npy --max-corr 0.99 -f json          # report only

Every dropped column has a kept partner whose |correlation| with it reaches --max-corr,
and no two kept columns do. kappa and the effective rank of the design are shown before
and after.
"""


def dedup_command(
    path: InputPath,
    max_corr: Annotated[
        float, typer.Option("--max-corr", help="Drop a column whose |correlation| with a kept column reaches this.")
    ] = 0.95,
    max_rel_mse: Annotated[
        Optional[float],
        typer.Option(
            "--max-rel-mse",
            help="Also drop a column whose relative MSE mean((x_j - x_k)^2) / mean(x_j^2) "
            "against a kept column is at most this.",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Optional[str],
        typer.Option(
            "--output",
            "-o",
            help="Write the kept columns here (.csv, .tsv, .gz of either, .npy); without it cond only reports.",
            show_default=False,
        ),
    ] = None,
    prefer: Annotated[
        Optional[str],
        typer.Option(
            "--prefer",
            help="Columns whose name matches this regex are considered first, so kept over their "
            "duplicates (default: earlier in the file wins).",
            show_default=False,
        ),
    ] = None,
    columns: ColumnsOpt = None,
    header: HeaderOpt = None,
    input_format: InputFormatOpt = None,
    force: ForceOpt = False,
    output_format: FormatOpt = OutputFormat.table,
    quiet: QuietOpt = False,
):
    """Drop near-duplicate columns (by absolute correlation) and show kappa before and after."""
    with mapped_errors("dedup", quiet):
        from cond.commands.dedup import dedup

        notice = notice_printer(quiet)

        report = dedup(
            path,
            output,
            max_corr=max_corr,
            max_rel_mse=max_rel_mse,
            prefer=prefer,
            columns=columns,
            input_format=None if input_format is None else input_format.value,
            header=header,
            notice=notice,
            force=force,
        )
        doc = report.to_dict()
        if output_format is OutputFormat.json:
            return write_json(doc)
        if output_format is OutputFormat.jsonl:
            return write_jsonl(
                [
                    *(("kept", {"column": c}) for c in doc["kept"]),
                    *(("dropped", d) for d in doc["dropped"]),
                    ("summary", {k: doc[k] for k in ("input", "output", "rows", "before", "after")}),
                ]
            )
        if output_format is OutputFormat.csv:
            return write_csv(
                ("column", "kept", "partner", "correlation"),
                [
                    *({"column": c, "kept": True} for c in doc["kept"]),
                    *(
                        {"column": d["column"], "kept": False, "partner": d["partner"], "correlation": d["correlation"]}
                        for d in doc["dropped"]
                    ),
                ],
            )
        _table(report)


def _g(v):
    return "inf" if v is None or not math.isfinite(v) else f"{v:.4g}"


def _table(report):
    from cond.cli.output import fitted_table, table_console

    console = table_console()
    title = (
        f"cond dedup {cell(report.input)}: {len(report.dropped)} of "
        f"{len(report.kept) + len(report.dropped)} columns dropped (|corr| >= "
        f"{report.options['max_corr']:g})"
    )
    columns = [("dropped", "left"), ("kept in its place", "left"), ("correlation", "right")]
    rows = [[cell(d["column"]), cell(d["partner"]), f"{d['correlation']:+.4f}"] for d in report.dropped]
    table, left_out = fitted_table(title, columns, rows, ["dropped", "correlation", "kept in its place"])
    console.print(table)
    if left_out:
        console.print(left_out, markup=False, highlight=False)
    b, a = report.before, report.after
    console.print(
        f"kappa {_g(b['kappa'])} ({b['status']}) -> {_g(a['kappa'])} ({a['status']}); effective rank "
        f"{b['effective_rank']:.3g} of {b['columns']} -> {a['effective_rank']:.3g} of {a['columns']}"
        + (f"; wrote {printable(report.output)}" if report.output else "; nothing written (no -o)"),
        markup=False,
        highlight=False,
    )
    if report.constant:
        console.print(
            f"constant columns (no correlation; kept): {printable(', '.join(report.constant))}",
            markup=False,
            highlight=False,
        )
