"""How ``cond inspect`` shows a LoRA adapter (an AdapterReport): a table for people, or the
``cond.adapter/1`` object (json), one record per module (jsonl, csv)."""

from __future__ import annotations

import sys

from cond.cli.options import OutputFormat
from cond.cli.output import cell, printable, write_csv, write_json, write_jsonl


def render(report, fmt, rows):
    doc = report.to_dict()
    if fmt is OutputFormat.json:
        return write_json({**doc, "modules": [m.row() for m in rows]})
    if fmt is OutputFormat.jsonl:
        return write_jsonl([*(("module", m.row()) for m in rows), ("summary", doc["summary"])])
    if fmt is OutputFormat.csv:
        from cond.commands.adapter_report import ROW_FIELDS

        return write_csv(ROW_FIELDS, [m.row() for m in rows])
    _table(report, rows, doc)


def _g(v, digits=4):
    return "-" if v is None else f"{v:.{digits}g}"


def _table(report, rows, doc):
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=False, width=None if sys.stdout.isatty() else 250)
    what = f"its change from {cell(report.base)}" if report.format == "delta" else f"{report.format} LoRA adapter"
    table = Table(title=f"cond inspect {cell(report.input)} ({what})", title_justify="left", header_style="bold")
    for col in (
        "module",
        "shape",
        "rank",
        "numerical",
        "wasted",
        "scale",
        "sigma_max",
        "||dW||",
        "vs base" if report.base else None,
        "stable",
        "eff.",
        "r90",
        "r99",
    ):
        if col is not None:
            table.add_column(col, justify="left" if col == "module" else "right", no_wrap=True)
    for m in rows:
        cells = [
            cell(m.name),
            "x".join(map(str, m.shape)),
            str(m.rank),
            str(m.numerical_rank),
            str(m.wasted_rank),
            _g(m.scale),
            _g(m.sigma_max),
            _g(m.frobenius_norm),
        ]
        if report.base:
            cells.append(_g(m.relative_norm))
        cells += [_g(m.stable_rank, 3), _g(m.effective_rank, 3), _g(m.energy_rank_90), _g(m.energy_rank_99)]
        table.add_row(*cells)
    console.print(table)
    s = doc["summary"]
    for notice in report.notices:
        console.print(f"note: {printable(notice)}", markup=False, highlight=False)
    if report.saved:
        console.print(
            f"{len(report.saved)} tensors stored whole (not factored): "
            f"{printable(', '.join(report.saved[:3]))}{' ...' if len(report.saved) > 3 else ''}",
            markup=False,
            highlight=False,
        )
    console.print(
        f"{s['modules']} modules; nominal rank {s['nominal_rank']} in all, numerical "
        f"{s['numerical_rank']} ({s['wasted_rank']} wasted); {report.seconds:.2f} s",
        markup=False,
        highlight=False,
    )
