"""``cond calibrate``: Grams (and Fisher) of a Hugging Face model's Linear layers from text."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from cond.cli.errors import mapped_errors
from cond.cli.options import ForceOpt, FormatOpt, OutputFormat, QuietOpt
from cond.cli.output import printable, write_json

EPILOG = """Examples:

  cond calibrate ./all-MiniLM-L6-v2 --text corpus.txt -o grams.safetensors

  cond calibrate ./model --text corpus.txt -o grams.safetensors --fisher fisher.safetensors

  cond compress ./model/model.safetensors --method whiten --activations grams.safetensors --budget 0.7 -o small.safetensors

Needs the extra: pip install 'cond[torch]'. Nothing is downloaded: MODEL_DIR must hold
config.json, the weights and the tokenizer files.
"""


def calibrate_command(
    model_dir: Annotated[
        str, typer.Argument(help="A Hugging Face model folder (config, weights, tokenizer).", show_default=False)
    ],
    text: Annotated[
        str,
        typer.Option("--text", help="UTF-8 text, one passage per non-empty line (- for stdin).", show_default=False),
    ],
    output: Annotated[
        str, typer.Option("--output", "-o", help="The Gram file to write (.safetensors).", show_default=False)
    ],
    fisher: Annotated[
        Optional[str],
        typer.Option("--fisher", help="Also write a label-free Fisher file here (see README).", show_default=False),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Passages per forward pass.")] = 16,
    max_length: Annotated[int, typer.Option("--max-length", help="Tokens per passage (truncated).")] = 128,
    include: Annotated[
        Optional[str],
        typer.Option(
            "--include", help="Calibrate only Linear modules whose name matches this regex.", show_default=False
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the Fisher's sampled labels.")] = 0,
    force: ForceOpt = False,
    output_format: FormatOpt = OutputFormat.table,
    quiet: QuietOpt = False,
):
    """Run the model on the text and write each Linear layer's input Gram X^T X (padding masked),
    keyed by the checkpoint's own tensor names, with row and token counts in the metadata."""
    with mapped_errors("calibrate", quiet):
        from cond.cli.progress import progress_bar
        from cond.commands.calibrate import calibrate

        with progress_bar("calibrate", enabled=not quiet) as tick:
            result = calibrate(
                model_dir,
                text,
                output,
                fisher=fisher,
                batch_size=batch_size,
                max_length=max_length,
                include=include,
                seed=seed,
                force=force,
                progress=(lambda done, total: tick(done, total, "batches")) if tick else None,
            )
        if output_format is OutputFormat.json:
            write_json(result.to_dict())
        else:
            written = result.output + (f" and {result.fisher}" if result.fisher else "")
            print(
                f"{result.layers} layers, {result.sequences} passages, {result.tokens} tokens "
                f"({result.seconds:.1f} s): wrote {printable(written)}",
                file=sys.stderr,
            )
        if result.skipped:
            print(
                f"cond: {len(result.skipped)} Linear modules of the loaded model have no weight in the "
                f"checkpoint and were left out: {printable(', '.join(result.skipped))}",
                file=sys.stderr,
            )
        if result.short:
            layer, rows, inputs, unit = result.short[0]
            more = f" and {len(result.short) - 1} more layers" if len(result.short) > 1 else ""
            print(
                f"cond: warning: {printable(layer)}{more}: {rows} rows for {inputs} inputs (one row per "
                f"{unit[:-1]}); cond compress refuses a Gram with fewer rows than inputs: add at least "
                f"{inputs - rows} {unit}",
                file=sys.stderr,
            )
