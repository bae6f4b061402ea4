"""``cond.expand``: a ``cond-lowrank/2`` file back to a dense safetensors checkpoint.

Names, shapes, dtypes and the source's own metadata are restored; dense
tensors are copied byte for byte, factored ones are multiplied out in float64
and rounded once to their original dtype. Past ``max_shard_size`` the output
is sharded with Hugging Face names (``model-00001-of-0000N.safetensors``) and
``model.safetensors.index.json`` (``metadata.total_size``, ``weight_map``).
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass

from cond.errors import UsageError
from cond.formats.atomic import atomic_output, check_output
from cond.formats.lowrank_format import CompressedCheckpoint
from cond.formats.safetensors_file import _DTYPES
from cond.formats.safetensors_writer import SafetensorsWriter

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def byte_size(text, flag="--max-shard-size") -> int:
    """``"5GB"`` -> 5 * 10**9, ``"500MiB"`` -> 500 * 2**20, an int stays as it is."""
    if isinstance(text, int):
        value = text
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?I?B?)\s*", str(text).upper())
        if not match or match.group(2) not in _UNITS:
            raise UsageError(f"`{flag}` must be a size like 5GB, 500MiB or a byte count; got {text!r}")
        value = int(float(match.group(1)) * _UNITS[match.group(2)])
    if value <= 0:
        raise UsageError(f"`{flag}` must be positive; got {text!r}")
    return value


SCHEMA = "cond.expand/1"


@dataclass(frozen=True)
class ExpandResult:
    """What ``cond expand`` wrote; schema ``cond.expand/1``."""

    input: str
    files: tuple
    total_size: int
    tensors: int
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """The ``cond.expand/1`` JSON object: schema, cond_version, input, files, total_size (bytes of
        tensor data), tensors (count), seconds."""
        from cond._version import __version__

        return dict(schema=SCHEMA, cond_version=__version__, input=self.input, files=list(self.files),
                    total_size=self.total_size, tensors=self.tensors, seconds=self.seconds)


def expand(source, output, *, max_shard_size="5GB", force=False, progress=None) -> ExpandResult:
    """Write the dense checkpoint of a compressed file.

    Parameters
    ----------
    source : str
        A ``cond-lowrank/2`` file.
    output : str
        A directory (created if needed; ``model.safetensors`` or shards and an
        index inside) or a ``.safetensors`` file path (then no sharding).
    max_shard_size : str or int
    force : bool
        Replace existing output files.
    progress : callable, optional
        ``progress(done, total)`` per tensor.

    Returns
    -------
    ExpandResult
        The files written (shards, then the index), the bytes of tensor data, the tensor count.
    """
    started = time.perf_counter()
    limit = byte_size(max_shard_size)
    single_file = str(output).endswith(".safetensors")
    check_output(output, inputs=[source], force=force, directory=not single_file)
    earlier = [] if single_file else _earlier_expansion(output, source)
    if earlier and not force:
        raise UsageError(f"holds an earlier expansion ({', '.join(sorted(earlier)[:3])}"
                         f"{' ...' if len(earlier) > 3 else ''}); pass --force to replace it", path=str(output))
    ckpt = CompressedCheckpoint(source)
    plan = [(t["name"], _nbytes(t)) for t in ckpt.manifest["tensors"]]
    total = sum(size for _, size in plan)
    shards = _shard(plan, limit)
    if single_file and len(shards) > 1:
        raise UsageError(f"{total} bytes exceed --max-shard-size {limit}; give a directory to shard "
                         "into, or a larger --max-shard-size", path=str(output))
    if single_file:
        files = [str(output)]
    else:
        os.makedirs(output, exist_ok=True)  # its parent exists (checked above)
        names = (["model.safetensors"] if len(shards) == 1 else
                 [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))])
        files = [os.path.join(output, n) for n in names]
    metadata = ckpt.manifest.get("source_metadata") or {"format": "pt"}
    done = 0
    for path, shard in zip(files, shards):
        with SafetensorsWriter(path, metadata=metadata, inputs=[source], force=force) as writer:
            for name in shard:
                array = ckpt[name]
                writer.add_bytes(name, ckpt.manifest_entry(name)["dtype"], array.shape,
                                 array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes())
                done += 1
                if progress:
                    progress(done, len(plan))
    if len(files) > 1:
        weight_map = {name: os.path.basename(path) for path, shard in zip(files, shards) for name in shard}
        index = os.path.join(output, "model.safetensors.index.json")
        with atomic_output(index, inputs=[source], force=force) as tmp, open(tmp, "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
        files.append(index)
    for name in earlier:  # what the earlier expansion wrote and this one did not replace
        path = os.path.join(output, name)
        if path not in files:
            os.unlink(path)
    return ExpandResult(str(source), tuple(files), total, len(plan), time.perf_counter() - started)


_EXPANSION_FILE = re.compile(r"model(-\d{5}-of-\d{5})?\.safetensors|model\.safetensors\.index\.json")


def _earlier_expansion(folder, source):
    """Names of the files an earlier ``cond expand`` into ``folder`` wrote (never the source)."""
    if not os.path.isdir(folder):
        return []
    source = os.path.realpath(source)
    return [f for f in os.listdir(folder) if _EXPANSION_FILE.fullmatch(f)
            and os.path.realpath(os.path.join(folder, f)) != source]


def _nbytes(t):
    bits = _DTYPES[t["dtype"]][0]
    return math.ceil(math.prod(t["shape"]) * bits / 8)


def _shard(plan, limit):
    """Consecutive tensors per shard, each shard at most ``limit`` bytes (a larger tensor alone)."""
    shards, current, size = [], [], 0
    for name, nbytes in plan:
        if current and size + nbytes > limit:
            shards.append(current)
            current, size = [], 0
        current.append(name)
        size += nbytes
    if current or not shards:
        shards.append(current)
    return shards
