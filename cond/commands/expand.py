"""``cond.expand``: a ``cond-lowrank/3`` file (``/1`` and ``/2`` too) back to a dense safetensors checkpoint.

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
from dataclasses import dataclass, field

from cond.commands.result import Result
from cond.errors import UsageError
from cond.formats.lowrank_format import CompressedCheckpoint
from cond.formats.outputs import OutputPlan
from cond.formats.safetensors_file import _DTYPES
from cond.formats.safetensors_writer import SafetensorsWriter

_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}


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
class ExpandResult(Result):
    """What ``cond expand`` wrote; schema ``cond.expand/1``."""

    SCHEMA = SCHEMA
    input: str
    files: tuple
    total_size: int
    tensors: int
    seconds: float = 0.0
    options: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The ``cond.expand/1`` JSON object: the shared fields (:mod:`cond.commands.result`), files,
        total_size (bytes of tensor data), tensors (count)."""
        return self.document(files=list(self.files), total_size=self.total_size, tensors=self.tensors)


def expand(source, output, *, max_shard_size="5GB", force=False, progress=None, adapter=None) -> ExpandResult:
    """Write the dense checkpoint of a compressed file.

    Parameters
    ----------
    source : str
        A ``cond-lowrank/1``, ``/2`` or ``/3`` file.
    output : str
        A directory (created if needed; ``model.safetensors`` or shards and an
        index inside) or a ``.safetensors`` file path (then no sharding).
    max_shard_size : str or int
    force : bool
        Replace existing output files.
    adapter : str, optional
        For a LoRA collection (``cond-lora-collection/1``): write only this adapter.
    progress : callable, optional
        ``progress(done, total)`` per tensor.

    Returns
    -------
    ExpandResult
        The files written (shards, then the index), the bytes of tensor data, the tensor count.
    """
    from cond.formats.sources import source_kind

    started = time.perf_counter()
    source_kind(source, "expand")
    from cond.formats.lora_collection import is_collection

    if is_collection(source):
        return _expand_collection(source, output, adapter, force, started)
    if adapter is not None:
        raise UsageError("`--adapter` picks one adapter of a LoRA collection; this is not one", path=str(source))
    source, output = os.fspath(source), os.fspath(output) if isinstance(output, (str, os.PathLike)) else output
    limit = byte_size(max_shard_size)
    single_file = isinstance(output, str) and output.endswith(".safetensors")
    with OutputPlan([source], force=force) as plan:
        if single_file:
            plan.file(output, "--output")
        else:
            plan.folder(output, "--output")
        ckpt = CompressedCheckpoint(source)
        plan_tensors = [(t["name"], _nbytes(t)) for t in ckpt.manifest["tensors"]]
        total = sum(size for _, size in plan_tensors)
        shards = _shard(plan_tensors, limit)
        if single_file and len(shards) > 1:
            raise UsageError(
                f"{total} bytes exceed --max-shard-size {limit}; give a directory to shard "
                "into, or a larger --max-shard-size",
                path=output,
            )
        files, earlier = ([output], []) if single_file else _plan_folder(plan, output, len(shards))
        _write(plan, ckpt, files, shards, progress, len(plan_tensors))
        if len(files) > 1:
            weight_map = {name: os.path.basename(path) for path, shard in zip(files, shards) for name in shard}
            index = files[-1]
            with plan.writing(index) as tmp, open(tmp, "w") as f:
                json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
        if not single_file:
            _finish_folder(plan, output, files, earlier)
    return ExpandResult(
        source,
        tuple(files),
        total,
        len(plan_tensors),
        time.perf_counter() - started,
        dict(max_shard_size=limit, force=bool(force)),
    )


def _expand_collection(source, output, adapter, force, started):
    """Every adapter of a LoRA collection (or ``adapter``) into the folder ``output``."""
    from cond.formats.lora_collection import write_adapters

    if not isinstance(output, (str, os.PathLike)) or os.fspath(output).endswith(".safetensors"):
        raise UsageError(
            "a LoRA collection expands into a folder (one adapter per name); give a folder",
            path=os.fspath(output) if isinstance(output, (str, os.PathLike)) else None,
        )
    with OutputPlan([source], force=force) as plan:
        plan.folder(output, "--output")
        files, count = write_adapters(plan, source, output, adapter)
    return ExpandResult(
        os.fspath(source),
        tuple(files),
        sum(os.path.getsize(f) for f in files),
        count,
        time.perf_counter() - started,
        dict(adapter=adapter, force=bool(force)),
    )


MARKER = ".cond-expand.json"  # the files an expansion wrote into its folder, so --force removes only those
_EXPANSION_FILE = re.compile(r"model(-\d{5}-of-\d{5})?\.safetensors|model\.safetensors\.index\.json")


def _plan_folder(plan, folder, n_shards):
    """The files of a folder output (shards, then the index; the marker is planned too), checked
    against what the folder holds: files of an earlier expansion (named by its marker) are
    replaced with ``force``; a checkpoint file cond did not write is never touched."""
    earlier = _marked(folder)
    foreign = sorted(f for f in _listing(folder) if _EXPANSION_FILE.fullmatch(f) and f not in earlier)
    if foreign:
        raise UsageError(
            f"holds a checkpoint that cond expand did not write ({', '.join(foreign[:3])}"
            f"{' ...' if len(foreign) > 3 else ''}); expand into another folder",
            path=folder,
        )
    if earlier and not plan.force:
        raise UsageError(
            f"holds an earlier expansion ({', '.join(sorted(earlier)[:3])}"
            f"{' ...' if len(earlier) > 3 else ''}); pass --force to replace it",
            path=folder,
        )
    names = (
        ["model.safetensors"]
        if n_shards == 1
        else [f"model-{i + 1:05d}-of-{n_shards:05d}.safetensors" for i in range(n_shards)]
        + ["model.safetensors.index.json"]
    )
    files = [plan.member(folder, n) for n in names]
    plan.member(folder, MARKER)
    return files, earlier


def _listing(folder):
    return os.listdir(folder) if os.path.isdir(folder) else []


def _marked(folder):
    """The names an earlier ``cond expand`` wrote into ``folder``, by its marker ([] without one)."""
    path = os.path.join(folder, MARKER)
    try:
        with open(path, "rb") as f:
            names = json.load(f).get("files", [])
    except (OSError, ValueError, AttributeError, RecursionError):
        return []
    return [
        n
        for n in names
        if isinstance(n, str) and _EXPANSION_FILE.fullmatch(n) and os.path.lexists(os.path.join(folder, n))
    ]


def _write(plan, ckpt, files, shards, progress, total):
    metadata = ckpt.manifest.get("source_metadata") or {"format": "pt"}
    done = 0
    for path, shard in zip(files, shards):
        with SafetensorsWriter(plan, path, metadata=metadata) as writer:
            for name in shard:
                array = ckpt[name]
                writer.add_bytes(
                    name,
                    ckpt.manifest_entry(name)["dtype"],
                    array.shape,
                    array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes(),
                )
                done += 1
                if progress:
                    progress(done, total)


def _finish_folder(plan, folder, files, earlier):
    """The marker naming this expansion's files, and the earlier expansion's files it did not replace removed."""
    names = [os.path.basename(f) for f in files]
    with plan.writing(os.path.join(folder, MARKER), replace=True) as tmp, open(tmp, "w") as f:
        json.dump({"tool": "cond expand", "files": names}, f, indent=2)
    for name in earlier:
        if name not in names:
            plan.remove(os.path.join(folder, name))


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
