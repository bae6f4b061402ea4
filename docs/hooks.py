"""MkDocs hook: the CLI reference is generated from the commands themselves.

A line ``<!-- cli: NAME -->`` in a page becomes the ``--help`` text of ``cond NAME``
(``<!-- cli: -->`` for ``cond --help``), rendered by the installed package at build time,
so the reference cannot drift from the code.
"""

import os
import re

MARKER = re.compile(r"<!-- cli: ?([a-z-]*) -->")


def _help(name):
    os.environ.update(COLUMNS="100", NO_COLOR="1", TERM="dumb")
    from typer.testing import CliRunner

    from cond.cli.main import app

    args = ([name] if name else []) + ["--help"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"})
    if result.exit_code != 0:
        raise RuntimeError(f"`cond {' '.join(args)}` exited {result.exit_code}: {result.output}")
    return result.output.rstrip()


def on_page_markdown(markdown, page, config, files):
    return MARKER.sub(lambda m: "```text\n" + _help(m.group(1)) + "\n```", markdown)
