"""Option types shared by the subcommands (``Annotated`` aliases)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer

from cond.commands.choices import DEVICES, INPUT_FORMATS, OUTPUT_FORMATS


def choices(name, values) -> type:
    """A str Enum of the allowed ``values`` (from :mod:`cond.commands.choices`) for typer."""
    return Enum(name, [(v, v) for v in values], type=str)


OutputFormat = choices("OutputFormat", OUTPUT_FORMATS)
InputFormat = choices("InputFormat", INPUT_FORMATS)


InputPath = Annotated[
    str,
    typer.Argument(
        help="Input: .safetensors, *.safetensors.index.json, a checkpoint directory, "
        ".npy, .npz, .csv, .tsv (gzip ok), .mtx, .parquet, a zarr store, or - for standard input.",
        show_default=False,
    ),
]
FormatOpt = Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format (JSON schema in README.md).")]
InputFormatOpt = Annotated[
    Optional[InputFormat],
    typer.Option(
        "--input-format",
        help="Format of the input when the name does not tell (needed for - with text).",
        show_default=False,
    ),
]
ColumnsOpt = Annotated[
    Optional[str],
    typer.Option(
        "--columns",
        help='Table columns to use: names, globs, 0-based indices or ranges, comma-separated ("x*,7,10:12").',
        show_default=False,
    ),
]
WorkersOpt = Annotated[
    Optional[int],
    typer.Option(
        "--workers",
        help="Matrices analysed at once, in forked processes with BLAS on one thread each "
        "(default: CPUs, at most 8); each holds one tensor in memory. 1: in this "
        "process, BLAS on the idle cores ($COND_BLAS_THREADS overrides).",
        show_default=False,
    ),
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace an existing output (never the input).")]
WideOpt = Annotated[
    bool,
    typer.Option("--wide", help="Show every column of the table at full width (default: fit the terminal or COLUMNS)."),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no notices on stderr.")]
HeaderOpt = Annotated[
    Optional[bool],
    typer.Option(
        "--header/--no-header",
        help="CSV / TSV: the first line is (or is not) a header. Default: a header "
        "when a field of the first line is neither a number nor a missing value "
        "(NA, empty); cond says so on stderr.",
        show_default=False,
    ),
]
SchedulerOpt = Annotated[
    Optional[str],
    typer.Option(
        "--scheduler",
        help="Run on a Dask cluster: a scheduler address (tcp://host:8786) or local:N "
        "(a local cluster of N worker processes). Default: $COND_SCHEDULER, else "
        "in this process. Needs pip install 'cond[dask]'.",
        show_default=False,
    ),
]


Device = choices("Device", DEVICES)


DeviceOpt = Annotated[
    Device,
    typer.Option(
        "--device", help="Where the linear algebra runs: cpu, or cuda (needs CuPy and a GPU: pip install 'cond[gpu]')."
    ),
]
