"""One mapping from failures to a line on stderr and an exit code.

Exit codes: 0 ok, 1 a gate failed (``--fail-above``), 2 bad input or usage,
70 internal error. Tracebacks only with ``COND_DEBUG=1``.
"""

from __future__ import annotations

import contextlib
import os
import sys

import typer

EXIT_GATE = 1
EXIT_INPUT = 2
EXIT_INTERNAL = 70


def debug() -> bool:
    return os.environ.get("COND_DEBUG", "") not in ("", "0")


def say_error(line: str) -> None:
    from cond.cli.output import printable

    print(f"cond: error: {printable(line)}", file=sys.stderr)


@contextlib.contextmanager
def mapped_errors():
    """Turn cond's errors into one line and exit 2, anything unexpected into exit 70."""
    from cond.errors import CondError

    try:
        yield
    except (typer.Exit, typer.Abort, SystemExit):
        raise
    except CondError as exc:
        if debug():
            raise
        say_error(exc.one_line())
        raise typer.Exit(EXIT_INPUT) from None
    except KeyboardInterrupt:
        say_error("interrupted")
        raise typer.Exit(130) from None
    except MemoryError:
        if debug():
            raise
        say_error("out of memory; inspect fewer tensors at once with --workers 1 or --include")
        raise typer.Exit(EXIT_INTERNAL) from None
    except BrokenPipeError:
        # the reader of stdout went away (| head): not an error of ours
        sys.stderr.close()
        raise typer.Exit(0) from None
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        if debug():
            raise
        say_error(f"internal error: {type(exc).__name__}: {exc}. "
                  "Rerun with COND_DEBUG=1 for a traceback and report it")
        raise typer.Exit(EXIT_INTERNAL) from None
