"""How ``cond inspect --collinearity`` shows a CollinearityReport: a table for people, or the
``cond.collinearity/1`` object (json), one record per condition index (jsonl, csv)."""

from __future__ import annotations

import math

from cond.cli.options import OutputFormat
from cond.cli.output import cell, printable, write_csv, write_json, write_jsonl


def render(report, fmt, wide=False):
    doc = report.to_dict()
    if fmt is OutputFormat.json:
        return write_json(doc)
    rows = [
        {"condition_index": eta, **dict(zip(doc["columns"], props))}
        for eta, props in zip(doc["condition_indexes"], doc["proportions"])
    ]
    if fmt is OutputFormat.jsonl:
        return write_jsonl(
            [
                *(("condition_index", r) for r in rows),
                ("vif", dict(zip(doc["columns"], doc["vif"]))),
                *(("dependency", d) for d in doc["dependencies"]),
            ]
        )
    if fmt is OutputFormat.csv:
        return write_csv(
            ["condition_index", *doc["columns"]],
            [*rows, {"condition_index": "vif", **dict(zip(doc["columns"], doc["vif"]))}],
        )
    from cond.cli.output import plain, table_cost, table_width

    headers, rows = _full_rows(report)
    width = None if wide else table_width()
    if width is not None and table_cost(headers, [[plain(c) for c in r] for r in rows]) > width:
        return _by_column(report, width)
    _table(report, headers, rows, wide)


def _by_column(report, width):
    """The layout for designs wider than the terminal: one row per column of the design (its VIF,
    and its largest proportion with the condition index it falls on), then each near-dependency."""
    from cond.cli.output import fitted_table, table_console

    console = table_console()
    opts = report.options
    high = [k for k, eta in enumerate(report.condition_indexes) if eta > opts["threshold"]]
    rows = []
    for j, name in enumerate(report.columns):
        props = [report.proportions[k][j] for k in range(len(report.condition_indexes))]
        k = max(range(len(props)), key=props.__getitem__)
        flag = k in high and props[k] > opts["proportion"]
        rows.append(
            [
                cell(name),
                _g(report.vif[j]),
                f"[red]{props[k]:.2f}[/]" if flag else f"{props[k]:.2f}",
                _g(report.condition_indexes[k]),
            ]
        )
    columns = [("column", "left"), ("VIF", "right"), ("largest proportion", "right"), ("at condition index", "right")]
    table, dropped = fitted_table(
        f"cond inspect --collinearity {cell(report.input)} ({report.rows} rows, {len(report.columns)} columns: one "
        f"row per column, as {len(report.columns) + 1} columns do not fit {width})",
        columns,
        rows,
        [c for c, _ in columns],
    )
    console.print(table)
    say = lambda text: console.print(text, markup=False, highlight=False)  # noqa: E731
    if dropped:
        say(dropped)
    say(
        f"{len(high)} condition indexes above {opts['threshold']:g}; red: a proportion above {opts['proportion']:g} "
        "on one of them (--wide or --format csv gives the whole variance-decomposition table)"
    )
    if not report.dependencies:
        say(f"no condition index above {opts['threshold']:g}: no near-dependency")
    for d in report.dependencies:
        shown = ", ".join(printable(c) for c in d["columns"]) or "no column above the proportion"
        say(f"near-dependency at condition index {_g(d['condition_index'])}: {shown}")


def _g(v):
    return "inf" if not math.isfinite(v) else f"{v:.4g}"


def _full_rows(report):
    """The variance-decomposition table: headers and rows of markup cells (a row per condition
    index, then the VIFs)."""
    opts = report.options
    headers = ["condition index", *(cell(name) for name in report.columns)]
    rows = []
    for eta, props in zip(report.condition_indexes, report.proportions):
        high = eta > opts["threshold"]
        rows.append(
            [
                f"[bold]{_g(eta)}[/]" if high else _g(eta),
                *(f"[red]{p:.2f}[/]" if high and p > opts["proportion"] else f"{p:.2f}" for p in props),
            ]
        )
    rows.append(["[dim]VIF[/]", *(f"[dim]{_g(v)}[/]" for v in report.vif)])
    return headers, rows


def _table(report, headers, rows, wide=False):
    from rich.table import Table

    from cond.cli.output import table_console

    console = table_console(wide)
    opts = report.options
    how = (
        ("scaled" if opts["scale"] else "unscaled")
        + (", centred" if opts["center"] else ", uncentred")
        + (", intercept added" if opts["add_intercept"] else "")
    )
    table = Table(
        title=f"cond inspect --collinearity {cell(report.input)} ({report.rows} rows; {how})",
        title_justify="left",
        header_style="bold",
    )
    for header in headers:
        table.add_column(header, justify="right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(
        f"variance-decomposition proportions: each column sums to 1; red: above {opts['proportion']:g} "
        f"on a condition index above {opts['threshold']:g}",
        markup=False,
        highlight=False,
    )
    if not report.dependencies:
        console.print(
            f"no condition index above {opts['threshold']:g}: no near-dependency", markup=False, highlight=False
        )
    for d in report.dependencies:
        shown = ", ".join(printable(c) for c in d["columns"]) or "no column above the proportion"
        console.print(
            f"near-dependency at condition index {_g(d['condition_index'])}: {shown}", markup=False, highlight=False
        )
