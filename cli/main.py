"""cond: the table of contents. One module per subcommand; nothing heavy imported here.

cond inspect model.safetensors          per-matrix condition numbers and spectra
cond compress model.safetensors ...     low-rank checkpoint with a verified error bound
cond expand small.safetensors -o dense/ back to a dense checkpoint
cond calibrate MODEL_DIR --text t.txt   input Grams (and Fisher) of a Hugging Face model
cond sample X.npy --size 2000           weighted row sample (leverage, Lewis, sensitivity)
cond dedup X.csv -o X.dedup.csv         drop near-duplicate columns, kappa before and after
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

from cond._version import __version__
from cond.cli import calibrate_cmd, compress_cmd, dedup_cmd, expand_cmd, inspect_cmd, sample_cmd


class OneLineErrors(TyperGroup):
    """Usage errors (a missing option, a bad value, an unknown command) as one line on stderr
    with exit 2, like every other error cond reports, instead of click's framed box."""

    def main(self, *args, standalone_mode=True, **kwargs):
        import sys

        from cond.cli.errors import EXIT_INPUT, say_error

        try:
            from typer._click import exceptions as clicks  # typer >= 0.24 vendors click
        except ImportError:  # pragma: no cover - older typer on the real click
            from click import exceptions as clicks
        try:
            rc = super().main(*args, standalone_mode=False, **kwargs)
        except clicks.NoArgsIsHelpError as exc:  # `cond` or `cond inspect` alone: the help, as before
            print(exc.format_message())
            rc = EXIT_INPUT
        except clicks.UsageError as exc:
            command = exc.ctx.command_path if exc.ctx is not None else "cond"
            say_error(f"{exc.format_message()} (see `{command} --help`)")
            rc = EXIT_INPUT
        except clicks.ClickException as exc:
            say_error(exc.format_message())
            rc = exc.exit_code
        except typer.Abort:
            say_error("interrupted")
            rc = 130
        if not standalone_mode:
            return rc
        sys.exit(rc if isinstance(rc, int) else 0)


app = typer.Typer(
    name="cond",
    help="Condition numbers, spectra and compression of matrices you can trust.\n\n"
    "Examples:\n\n"
    "  cond inspect model.safetensors --sort kappa --top 10\n\n"
    "  cond inspect X.npy --format json\n\n"
    "  cond compress model.safetensors --max-error 0.05 -o small.safetensors\n\n"
    "  cond expand small.safetensors -o dense/\n\n"
    "  cond sample X.npy --method leverage --size 2000 > sample.tsv\n\n"
    "  cond dedup stack.csv --max-corr 0.95 -o stack.dedup.csv",
    no_args_is_help=True,
    add_completion=False,
    cls=OneLineErrors,
    rich_markup_mode=None,  # help text is literal: 'cond[dask]' is an extra, not markup
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

app.command("inspect", no_args_is_help=True, epilog=inspect_cmd.EPILOG)(inspect_cmd.inspect_command)
app.command("compress", no_args_is_help=True, epilog=compress_cmd.COMPRESS_EPILOG)(compress_cmd.compress_command)
app.command("expand", no_args_is_help=True, epilog=expand_cmd.EPILOG)(expand_cmd.expand_command)
app.command("calibrate", no_args_is_help=True, epilog=calibrate_cmd.EPILOG)(calibrate_cmd.calibrate_command)
app.command("sample", no_args_is_help=True, epilog=sample_cmd.EPILOG)(sample_cmd.sample_command)
app.command("dedup", no_args_is_help=True, epilog=dedup_cmd.EPILOG)(dedup_cmd.dedup_command)


def _version(value: bool):
    if value:
        print(f"cond {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = None,
):
    """Condition numbers, spectra and compression of matrices you can trust."""


def main():
    """Console-script entry point. SIGTERM unwinds like Ctrl-C, so temporary files are removed."""
    import signal
    import sys

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    app()


if __name__ == "__main__":
    main()
