"""Choosing table columns, the same way for every table format (CSV, TSV, Parquet) and command."""

from __future__ import annotations

import fnmatch
import os
import re

from cond.errors import InputError, UsageError


def check_unique(names, label):
    """Refuse duplicate column names (``--columns a`` must select one column)."""
    seen = set()
    for name in names:
        if name in seen:
            raise InputError(f"column name '{name}' appears more than once; column names must be unique", path=label)
        seen.add(name)


def select_columns(names, spec, display):
    """0-based indices of the columns that ``spec`` names, in the order given.

    Raises
    ------
    UsageError
        When an item of ``spec`` matches no column.
    """
    check_unique(names, display)
    if spec is None:
        return list(range(len(names)))
    chosen = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if re.fullmatch(r"\d+", item):
            hits = [int(item)] if int(item) < len(names) else []
        elif re.fullmatch(r"\d*:\d*", item):
            lo, hi = item.split(":")
            hits = list(range(len(names)))[int(lo or 0) : int(hi) if hi else None]
        else:
            hits = [i for i, n in enumerate(names) if fnmatch.fnmatchcase(n, item)]
        if not hits:
            raise UsageError(
                f"`--columns` item {item!r} matches no column; the columns are "
                f"{', '.join(names[:12])}{' ...' if len(names) > 12 else ''}",
                path=display,
            )
        chosen.extend(h for h in hits if h not in chosen)
    return chosen


def table_stem(display):
    """The name a table's one matrix gets: the file name without .csv/.tsv/.gz/.parquet."""
    base = os.path.basename(display)
    for ext in (".gz", ".csv", ".tsv", ".txt", ".parquet"):
        if base.lower().endswith(ext):
            base = base[: -len(ext)]
    return base or "table"
