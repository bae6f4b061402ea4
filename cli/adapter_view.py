"""How ``cond inspect`` shows a LoRA adapter (an AdapterReport): a table for people, or the
``cond.adapter/1`` object (json), one record per module (jsonl, csv)."""

from __future__ import annotations

from cond.cli.options import OutputFormat
from cond.cli.output import cell, printable, write_csv, write_json, write_jsonl


def render(report, fmt, rows, wide=False):
    doc = report.to_dict()
    if fmt is OutputFormat.json:
        return write_json({**doc, "modules": [m.row() for m in rows]})
    if fmt is OutputFormat.jsonl:
        return write_jsonl([*(("module", m.row()) for m in rows), ("summary", doc["summary"])])
    if fmt is OutputFormat.csv:
        from cond.commands.adapter_report import ROW_FIELDS

        return write_csv(ROW_FIELDS, [m.row() for m in rows])
    _table(report, rows, doc, wide)


def _g(v, digits=4):
    return "-" if v is None else f"{v:.{digits}g}"


ADAPTER_PRIORITY = ["module", "rank", "numerical", "wasted", "||dW||", "vs base", "sigma_max", "shape", "scale",
                    "stable", "eff.", "r90", "r99"]  # fmt: skip


def _table(report, rows, doc, wide=False):
    from cond.cli.output import fitted_table, table_console

    console = table_console(wide)
    what = f"its change from {cell(report.base)}" if report.format == "delta" else f"{report.format} LoRA adapter"
    headers = ["module", "shape", "rank", "numerical", "wasted", "scale", "sigma_max", "||dW||"]
    headers += ["vs base"] if report.base else []
    headers += ["stable", "eff.", "r90", "r99"]
    table_rows = []
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
        table_rows.append(cells)
    columns = [(h, "left" if h == "module" else "right") for h in headers]
    table, dropped = fitted_table(
        f"cond inspect {cell(report.input)} ({what})",
        columns,
        table_rows,
        [h for h in ADAPTER_PRIORITY if h in headers],
        wide,
    )
    console.print(table)
    if dropped:
        console.print(dropped, markup=False, highlight=False)
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
