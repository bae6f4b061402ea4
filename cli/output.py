"""What every command prints for people: names made safe for a terminal and for rich.

A tensor or column name comes from the input file, so it may hold rich markup
(``a[/]b``, which rich would try to parse) or control characters (an ANSI
escape would recolour or move the user's terminal). Both are shown literally.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text) -> str:
    """``text`` with control characters shown as escapes (``\\x1b``), for plain output."""
    return _CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), str(text))


def cell(text) -> str:
    """``text`` for a rich table cell: printable and with markup escaped."""
    from rich.markup import escape

    return escape(printable(text))


def write_json(doc, indent=2, out=None) -> None:
    """One JSON document (a command's versioned object) on stdout, newline-terminated."""
    import json
    import sys

    out = sys.stdout if out is None else out
    json.dump(doc, out, indent=indent, allow_nan=False)  # JSON has no Infinity: results say null
    out.write("\n")


def write_jsonl(records, out=None) -> None:
    """``(kind, dict)`` pairs as JSON lines, each with ``"record": kind`` first."""
    import json
    import sys

    out = sys.stdout if out is None else out
    for kind, record in records:
        out.write(json.dumps({"record": kind, **record}, allow_nan=False) + "\n")


def write_csv(fields, rows, out=None) -> None:
    """Dict rows as CSV with the columns ``fields``: shapes as ``384x1536``, None empty."""
    import csv
    import sys

    writer = csv.DictWriter(
        sys.stdout if out is None else out, fieldnames=list(fields), lineterminator="\n", extrasaction="ignore"
    )
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {k: "" if v is None else "x".join(map(str, v)) if k.endswith("shape") else v for k, v in row.items()}
        )


def notice_printer(quiet):
    """``notice(line)`` for the library: ``cond: LINE`` on stderr, unless ``--quiet``."""
    import sys

    def notice(line):
        if not quiet:
            print(f"cond: {printable(line)}", file=sys.stderr)

    return notice


def table_width():
    """The width tables must fit: ``COLUMNS`` when set, else the terminal's when stdout is one,
    else None (a pipe or a file gets every column at its full width)."""
    import os
    import shutil
    import sys

    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    if sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return None


def shorten_middle(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters by replacing its middle with one ellipsis."""
    if len(text) <= width:
        return text
    if width <= 1:
        return text[:width]
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head) :]


NAME_FLOOR, NAME_MIN = 28, 12  # names shrink to NAME_FLOOR before any column is dropped, then to NAME_MIN


def natural_widths(headers, rows):
    """Each column's width in terminal cells: its longest header or plain cell (wide characters count 2)."""
    from rich.cells import cell_len

    return [max([cell_len(h)] + [cell_len(r[i]) for r in rows]) for i, h in enumerate(headers)]


def table_cost(headers, rows):
    """The width a rich box table of these plain cells takes: 3 cells per column (padding, border) plus 1."""
    return 1 + sum(w + 3 for w in natural_widths(headers, rows))


def fit_columns(headers, rows, width, priority, name=0):
    """Which columns a table keeps at ``width`` and how wide its name column may be.

    A rich box table costs 3 characters per column (padding and border) plus 1. Numbers
    are never cut: long names are shortened in the middle (to ``NAME_FLOOR``), then columns
    are dropped from the end of ``priority`` (the headers, most important first), then names
    shrink to ``NAME_MIN``.

    Parameters
    ----------
    headers : list of str
    rows : list of list of str
        Plain cell text (markup removed).
    width : int or None
        None: keep everything.
    priority : list of str
        Every header, most important first.
    name : int
        The index of the name column (shortened, never dropped).

    Returns
    -------
    kept : list of int
        Indices of the columns kept, in table order.
    name_width : int or None
        The width names are shortened to (None: as they are).
    dropped : list of str
        Headers left out, in priority order.
    """
    natural = natural_widths(headers, rows)
    if width is None:
        return list(range(len(headers))), None, []
    kept = set(range(len(headers)))
    total = lambda: 1 + sum(natural[i] + 3 for i in kept if i != name) + 3  # noqa: E731  (name excluded)
    room = width - total()
    dropped = []
    order = [headers.index(h) for h in priority if headers.index(h) != name]
    while room < min(natural[name], NAME_FLOOR) and order:
        worst = order.pop()
        kept.discard(worst)
        dropped.insert(0, headers[worst])
        room = width - total()
    name_width = max(NAME_MIN, min(natural[name], room))
    return sorted(kept), (name_width if name_width < natural[name] else None), dropped


def plain(markup_text: str) -> str:
    """The visible text of a rich markup string."""
    from rich.text import Text

    return Text.from_markup(markup_text).plain


def fitted_table(title, columns, rows, priority, wide=False, name=0):
    """A rich Table of ``rows`` (markup strings) fitted to :func:`table_width` (unless ``wide``),
    and a note naming the columns left out (or None).

    ``columns`` are (header, justify) pairs; see :func:`fit_columns` for the rule.
    """
    from rich.table import Table

    headers = [h for h, _ in columns]
    width = None if wide else table_width()
    kept, name_width, dropped = fit_columns(headers, [[plain(c) for c in r] for r in rows], width, priority, name)
    table = Table(title=title, title_justify="left", header_style="bold")
    for i in kept:
        table.add_column(headers[i], justify=columns[i][1], no_wrap=True)
    for r in rows:
        cells = []
        for i in kept:
            text = r[i]
            if i == name and name_width is not None:
                text = cell(shorten_middle(plain(text), name_width))
            cells.append(text)
        table.add_row(*cells)
    note = None
    if dropped:
        note = f"not shown at {width} columns: {', '.join(dropped)} (--wide shows every column; --format csv or json has them)"
    return table, note


def table_console(wide=False):
    """A console as wide as :func:`table_width` (prose wraps there; fitted tables fit it), or
    unlimited with ``wide`` or when the output is not a terminal and COLUMNS is unset."""
    from rich.console import Console

    width = None if wide else table_width()
    return Console(soft_wrap=False, width=width or 100000, highlight=False)
