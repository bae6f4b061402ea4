"""``cond sample``: leverage, Lewis-weight and l_p sensitivity row sampling for shell pipelines."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import typer

from cond.cli.errors import mapped_errors
from cond.cli.options import (ColumnsOpt, choices, Device, DeviceOpt, HeaderOpt, InputFormatOpt, InputPath, QuietOpt,
                              SchedulerOpt)
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
    size: Annotated[str, typer.Option("--size", help="Expected sample size: a count or a percentage (1%).",
                                      show_default=False)],
    method: Annotated[Method, typer.Option("--method", help="How rows are scored.")] = Method['leverage'],
    p: Annotated[Optional[float], typer.Option(
        "-p", help="The l_p norm (default 2 for leverage and uniform, 1 otherwise; < 4 for lewis, "
                   "sensitivity, augmented).", show_default=False)] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed; the sample is a function of (seed, row).")] = 0,
    replacement: Annotated[bool, typer.Option("--replacement", help="Sample with replacement.")] = False,
    scores: Annotated[ScoreMode, typer.Option(
        "--scores", help="exact (streaming QR), sketch (sparse embedding + JL) or sketch-srht (also "
                         "an SRHT before the QR); sketches apply to leverage and root-leverage.")]
        = ScoreMode['exact'],
    scores_out: Annotated[Optional[str], typer.Option(
        "--scores-out", help="Also write every row's score (.npy, or text one per line).",
        show_default=False)] = None,
    rcond: Annotated[Optional[float], typer.Option(
        "--rcond", help="Relative cut-off of the numerical rank (default max(n, d) * eps).",
        show_default=False)] = None,
    target: Annotated[Optional[str], typer.Option(
        "--target", help="Target column (excluded from the scores; emitted with --emit rows).",
        show_default=False)] = None,
    columns: ColumnsOpt = None,
    header: HeaderOpt = None,
    input_format: InputFormatOpt = None,
    chunk_rows: Annotated[Optional[int], typer.Option(
        "--chunk-rows", min=1, help="Rows read at a time (default: 16 MiB of rows, a multiple of 4096).",
        show_default=False)] = None,
    output_format: Annotated[SampleFormat, typer.Option("--format", "-f", help="Output format.")]
        = SampleFormat['tsv'],
    emit: Annotated[Emit, typer.Option(
        "--emit", help="indices: index weight scale prob; rows: the scaled rows (and target).")]
        = Emit['indices'],
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Write here instead of stdout "
                                                  "(- is stdout).", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --output or --scores-out.")]
        = False,
    verify: Annotated[bool, typer.Option(
        "--verify", help="Print the l2 subspace-embedding distortion eps_hat (and, with --target, the "
                         "residual ratio) to stderr; p = 2 only.")] = False,
    scheduler: SchedulerOpt = None,
    device: DeviceOpt = Device.cpu,
    quiet: QuietOpt = False,
):
    """Draw a weighted row sample whose weighted problem behaves like the whole."""
    with mapped_errors():
        from cond.formats.atomic import check_output
        from cond.commands.sample import sample

        output = None if output == "-" else output
        for target_path in (output, scores_out):  # before the passes, not after them
            if target_path is not None:
                check_output(target_path, inputs=[path], force=force)

        notice = notice_printer(quiet)

        def tick(stage):
            if not quiet and sys.stderr.isatty():
                print(f"cond sample: {stage} pass", file=sys.stderr)

        result = sample(path, size=size, method=method.value, p=p, seed=seed, replacement=replacement,
                        scores=scores.value, rcond=rcond, columns=columns, target=target,
                        input_format=None if input_format is None else input_format.value,
                        chunk_rows=chunk_rows, verify=verify, keep_rows=emit is Emit['rows'],
                        scheduler=scheduler, device=device.value, progress=tick, header=header,
                        notice=notice)
        if scores_out is not None:
            _write_scores(scores_out, result.scores, path, force)
        _write(result, output_format, emit, output, path, force)
        if verify:
            v = result.verify
            line = f"cond sample --verify: eps_hat = {v['eps_hat']:.4f} (max |sigma_j(S A R^-1) - 1|)"
            if "residual_ratio" in v:
                line += (f"; residual of the sample's least-squares solution / optimal residual = "
                         f"{v['residual_ratio']:.4f}")
            print(line + ". No per-coefficient guarantee is implied.", file=sys.stderr)


def _write_scores(path, scores, source, force):
    import numpy as np

    from cond.formats.atomic import atomic_output

    with atomic_output(path, inputs=[source], force=force) as tmp:
        if path.endswith(".npy"):
            with open(tmp, "wb") as f:
                np.save(f, scores)
        else:  # one score a line, the shortest text that reads back to the same float, formatted
            with open(tmp, "w") as f:  # in C by NumPy (4x faster than numpy.savetxt's Python loop)
                np.ascontiguousarray(scores, dtype=np.float64).tofile(f, sep="\n")
                f.write("\n" if len(scores) else "")


def _write(result, fmt, emit, output, source, force):
    if output is None:
        return _emit(result, fmt, emit, sys.stdout)
    from cond.formats.atomic import atomic_output

    with atomic_output(output, inputs=[source], force=force) as tmp:
        with open(tmp, "w" if fmt is not SampleFormat['npy'] else "wb") as f:
            _emit(result, fmt, emit, f)


def _emit(result, fmt, emit, out):
    import numpy as np

    if fmt is SampleFormat["json"]:  # the cond.sample/1 object; --emit rows adds each row's values
        doc = result.to_dict()
        if emit is Emit["rows"]:
            table = result.rows if result.target is None else np.column_stack([result.rows, result.target])
            for row, values in zip(doc["rows"], table):
                row["values"] = [float(v) for v in values]
        json.dump(doc, out, indent=2)
        out.write("\n")
        return

    if emit is Emit['rows']:
        names = list(result.design_names) + ([result.target_name] if result.target is not None else [])
        table = result.rows if result.target is None else np.column_stack([result.rows, result.target])
    else:
        names = ["index", "weight", "scale", "prob"] + (["count"] if result.counts is not None else [])
        cols = [result.indices, result.weights, result.scales, result.probs]
        if result.counts is not None:
            cols.append(result.counts)
        table = np.column_stack(cols) if len(result.indices) else np.zeros((0, len(names)))
    if fmt is SampleFormat['npy']:
        binary = out.buffer if hasattr(out, "buffer") else out
        np.save(binary, np.asarray(table, dtype=np.float64))
        return
    header = {k: v for k, v in result.header.items()}
    if fmt is SampleFormat['jsonl']:
        out.write(json.dumps({"record": "header", **header}) + "\n")
        for row in table:
            out.write(json.dumps(dict(zip(names, _typed(row, names, emit)))) + "\n")
        return
    sep = "\t" if fmt is SampleFormat['tsv'] else ","
    out.write("# cond sample " + " ".join(f"{k}={v}" for k, v in header.items()) + "\n")
    out.write(sep.join(names) + "\n")
    for row in table:
        out.write(sep.join(_fmt(v) for v in _typed(row, names, emit)) + "\n")


def _typed(row, names, emit):
    if emit is Emit['rows']:
        return [float(v) for v in row]
    return [int(v) if k in ("index", "count") else float(v) for k, v in zip(names, row)]


def _fmt(v):
    return str(v) if isinstance(v, int) else repr(v)
