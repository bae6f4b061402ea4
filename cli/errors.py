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


# what to do when a command runs out of memory, said by the command that did
_MEMORY_ADVICE = {
    "inspect": "inspect fewer tensors at once with --workers 1, or fewer tensors with --include",
    "compress": "compress fewer matrices at once with --include, or lower --max-pool-bytes",
    "expand": "expand on a machine with more memory (one tensor is held at a time)",
    "sample": "sample fewer columns with --columns, or read fewer rows at once with --chunk-rows",
    "dedup": "deduplicate fewer columns with --columns",
    "calibrate": "calibrate with a smaller --batch-size or --max-length",
}


@contextlib.contextmanager
def one_line_warnings(quiet):
    """Warnings (a RuntimeWarning from NumPy, a library's DeprecationWarning) as one line
    ``cond: warning: ...`` on stderr, and none at all under ``--quiet``."""
    import warnings

    def show(message, category, filename, lineno, file=None, line=None):
        from cond.cli.output import printable

        print(f"cond: warning: {printable(message)}", file=sys.stderr)

    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore")
        else:
            warnings.showwarning = show
        yield


@contextlib.contextmanager
def mapped_errors(command=None, quiet=False):
    """Turn cond's errors into one line and exit 2, anything unexpected into exit 70.

    OS errors that reach this far (a read-only folder, a full disk, a folder where a file
    should be) are the user's environment, not a bug: one line naming the file, exit 2.
    """
    from cond.errors import CondError

    try:
        with one_line_warnings(quiet):
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
        advice = _MEMORY_ADVICE.get(command, "give it a smaller input")
        say_error(f"out of memory; {advice}")
        raise typer.Exit(EXIT_INPUT) from None
    except BrokenPipeError:
        # the reader of stdout went away (| head): not an error of ours
        sys.stderr.close()
        raise typer.Exit(0) from None
    except OSError as exc:
        if debug() or exc.errno is None:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        say_error(f"{where}{exc.strerror or exc}")
        raise typer.Exit(EXIT_INPUT) from None
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        if debug():
            raise
        say_error(f"internal error: {type(exc).__name__}: {exc}. Rerun with COND_DEBUG=1 for a traceback and report it")
        raise typer.Exit(EXIT_INTERNAL) from None
