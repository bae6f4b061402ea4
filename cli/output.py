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
