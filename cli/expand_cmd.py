"""``cond expand``: a cond-lowrank file back to a dense checkpoint."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from cond.cli.errors import mapped_errors
from cond.cli.options import ForceOpt, FormatOpt, OutputFormat, QuietOpt
from cond.cli.output import printable, write_csv, write_json, write_jsonl
from cond.cli.progress import progress_bar

EPILOG = """Examples:

  cond expand model.lowrank.safetensors -o dense/

  cond expand model.lowrank.safetensors -o dense/ --max-shard-size 2GB

  cond expand model.lowrank.safetensors -o model.dense.safetensors

  cond expand model.lowrank.safetensors -o dense/ --format json
"""


def expand_command(
    path: Annotated[str, typer.Argument(help="A cond-lowrank file (/1, /2 or /3).", show_default=False)],
    output: Annotated[
        str,
        typer.Option(
            "--output",
            "-o",
            help="A directory (model.safetensors or shards and an index inside) or a .safetensors file.",
            show_default=False,
        ),
    ],
    max_shard_size: Annotated[
        str,
        typer.Option(
            "--max-shard-size", help="Largest shard (5GB, 500MiB, bytes); larger output is sharded with an index."
        ),
    ] = "5GB",
    adapter: Annotated[
        Optional[str],
        typer.Option("--adapter", help="For a LoRA collection: write only this adapter.", show_default=False),
    ] = None,
    force: ForceOpt = False,
    output_format: FormatOpt = OutputFormat.table,
    quiet: QuietOpt = False,
):
    """Write the dense checkpoint of a compressed file: original names, shapes and dtypes."""
    with mapped_errors("expand", quiet):
        from cond.commands.expand import expand

        with progress_bar("expand", enabled=not quiet) as tick:
            result = expand(
                path,
                output,
                max_shard_size=max_shard_size,
                force=force,
                adapter=adapter,
                progress=(lambda done, total: tick(done, total, "")) if tick else None,
            )
        if output_format is OutputFormat.table:
            print(
                f"wrote {result.tensors} tensors ({result.total_size} bytes) to {printable(', '.join(result.files))}",
                file=sys.stderr,
            )
        elif output_format is OutputFormat.json:
            write_json(result.to_dict())
        elif output_format is OutputFormat.jsonl:
            doc = result.to_dict()
            write_jsonl(
                [
                    *(("file", {"file": f}) for f in result.files),
                    ("summary", {k: doc[k] for k in ("schema", "input", "total_size", "tensors", "seconds")}),
                ]
            )
        else:
            write_csv(("file",), ({"file": f} for f in result.files))
