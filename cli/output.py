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
