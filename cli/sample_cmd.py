"""``cond sample``: leverage, Lewis-weight and l_p sensitivity row sampling for shell pipelines."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from cond.cli.errors import mapped_errors
from cond.cli.options import (
    ColumnsOpt,
    Device,
    DeviceOpt,
    HeaderOpt,
    InputFormatOpt,
    InputPath,
    QuietOpt,
    SchedulerOpt,
    choices,
)
from cond.cli.output import notice_printer
from cond.commands.choices import EMITS, SAMPLE_FORMATS, SAMPLE_METHODS, SCORE_MODES

Method = choices("Method", SAMPLE_METHODS)
ScoreMode = choices("ScoreMode", SCORE_MODES)
SampleFormat = choices("SampleFormat", SAMPLE_FORMATS)
Emit = choices("Emit", EMITS)


EPILOG = """Examples:

  cond sample X.npy --method leverage --size 2000 --seed 7 > sample.tsv

  cond sample data.parquet --columns 'x*' --method lewis -p 1 --size 5000 -o sample.tsv

  cond sample features.zarr/X --method leverage --size 1% > sample.tsv

  zcat big.csv.gz | cond sample - --input-format csv --method root-leverage --size 1%

  cond sample X.npy --method leverage --size 2000 --emit rows --verify > rows.tsv

  cond sample /shared/X.npy --method leverage --size 1% --scheduler tcp://scheduler:8786 > sample.tsv

  cond sample X.npy --scores sketch --device cuda --size 2000 > sample.tsv

Output: '#' header lines (method, p, n, d, rank, expected and actual size, seed), then
'index weight scale prob' per kept row: 0-based index, loss weight 1/q, row multiplier
q^(-1/p), probability q (with --replacement: also count, and prob is pi). --format json
prints one cond.sample/1 object (schema in README.md).
"""


def sample_command(
    path: InputPath,
    size: Annotated[
        str, typer.Option("--size", help="Expected sample size: a count or a percentage (1%).", show_default=False)
    ],
    method: Annotated[Method, typer.Option("--method", help="How rows are scored.")] = Method["leverage"],
    p: Annotated[
        Optional[float],
        typer.Option(
            "-p",
            help="The l_p norm (default 2 for leverage and uniform, 1 otherwise; < 4 for lewis, "
            "sensitivity, augmented).",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed; the sample is a function of (seed, row).")] = 0,
    replacement: Annotated[bool, typer.Option("--replacement", help="Sample with replacement.")] = False,
    scores: Annotated[
        ScoreMode,
        typer.Option(
            "--scores",
            help="exact (streaming QR), sketch (sparse embedding + JL) or sketch-srht (also "
            "an SRHT before the QR); sketches apply to leverage and root-leverage.",
        ),
    ] = ScoreMode["exact"],
    scores_out: Annotated[
        Optional[str],
        typer.Option(
            "--scores-out", help="Also write every row's score (.npy, or text one per line).", show_default=False
        ),
    ] = None,
    rcond: Annotated[
        Optional[float],
        typer.Option(
            "--rcond", help="Relative cut-off of the numerical rank (default max(n, d) * eps).", show_default=False
        ),
    ] = None,
    target: Annotated[
        Optional[str],
        typer.Option(
            "--target", help="Target column (excluded from the scores; emitted with --emit rows).", show_default=False
        ),
    ] = None,
    columns: ColumnsOpt = None,
    header: HeaderOpt = None,
    input_format: InputFormatOpt = None,
    chunk_rows: Annotated[
        Optional[int],
        typer.Option(
            "--chunk-rows",
            help="Rows read at a time (default: 16 MiB of rows, a multiple of 4096).",
            show_default=False,
        ),
    ] = None,
    output_format: Annotated[SampleFormat, typer.Option("--format", "-f", help="Output format.")] = SampleFormat["tsv"],
    emit: Annotated[
        Emit, typer.Option("--emit", help="indices: index weight scale prob; rows: the scaled rows (and target).")
    ] = Emit["indices"],
    output: Annotated[
        Optional[str],
        typer.Option("--output", "-o", help="Write here instead of stdout (- is stdout).", show_default=False),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --output or --scores-out.")] = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Print the l2 subspace-embedding distortion eps_hat (and, with --target, the "
            "residual ratio) to stderr; p = 2 only.",
        ),
    ] = False,
    scheduler: SchedulerOpt = None,
    device: DeviceOpt = Device.cpu,
    quiet: QuietOpt = False,
):
    """Draw a weighted row sample whose weighted problem behaves like the whole."""
    with mapped_errors("sample"):
        from cond.commands.sample import sample
        from cond.commands.sample.emit import write_sample

        notice = notice_printer(quiet)

        def tick(stage):
            if not quiet and sys.stderr.isatty():
                print(f"cond sample: {stage} pass", file=sys.stderr)

        result = sample(
            path,
            size=size,
            method=method.value,
            p=p,
            seed=seed,
            replacement=replacement,
            scores=scores.value,
            rcond=rcond,
            columns=columns,
            target=target,
            input_format=None if input_format is None else input_format.value,
            chunk_rows=chunk_rows,
            verify=verify,
            scheduler=scheduler,
            device=device.value,
            progress=tick,
            header=header,
            notice=notice,
            output=output,
            output_format=output_format.value,
            emit=emit.value,
            scores_out=scores_out,
            force=force,
        )
        if result.output is None:
            write_sample(result, output_format.value, emit.value, sys.stdout)
        if verify:
            v = result.verify
            line = f"cond sample --verify: eps_hat = {v['eps_hat']:.4f} (max |sigma_j(S A R^-1) - 1|)"
            if "residual_ratio" in v:
                line += (
                    f"; residual of the sample's least-squares solution / optimal residual = {v['residual_ratio']:.4f}"
                )
            print(line + ". No per-coefficient guarantee is implied.", file=sys.stderr)
