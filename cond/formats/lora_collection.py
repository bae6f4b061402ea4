"""LoRA collections (``cond-lora-collection/1``, written by :mod:`cond.commands.adapter_collection`)
read back: the manifest checked against the file, and every adapter (or one, ``adapter``) written
in its own format (a PEFT folder ``DIR/<name>/`` or a kohya file ``DIR/<name>.safetensors``), as
``cond expand COLLECTION -o DIR`` and :func:`cond.torch.load_adapter` do. Each module becomes rank-k factors L = U C_i (rounded once to the
stored dtype) and R = V^T, so each adapter's error is the one the collection measured plus
that one rounding (about the dtype's unit roundoff, relative)."""

from __future__ import annotations

import os

import numpy as np

from cond.errors import InputError, UsageError


def is_collection(path) -> bool:
    from cond.formats.safetensors_file import read_header

    path = os.fspath(path)
    if not (os.path.isfile(path) and path.endswith(".safetensors")):
        return False
    try:
        return read_header(path).metadata.get("cond.format") == "cond-lora-collection/1"
    except InputError:
        return False


def read_collection(path):
    """(manifest, {key: array}) of a collection file, the manifest checked against its tensors."""
    from safetensors.numpy import load_file

    import ml_dtypes  # noqa: F401 - bf16 arrays

    from cond.formats.safetensors_file import parse_json, read_header

    header = read_header(path)
    manifest = parse_json(header.metadata.get("cond.manifest", ""), path, "cond.manifest")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("adapters"), list) \
            or not isinstance(manifest.get("modules"), list):
        raise InputError("cond.manifest is not a collection manifest (adapters, modules)", path=path)
    arrays = load_file(path)
    for module in manifest["modules"]:
        for key in [g.get("U") for g in module.get("groups", [])] + [g.get("V") for g in module.get("groups", [])] \
                + [m.get("core") for m in module.get("members", {}).values() if m.get("core") is not None]:
            if key not in arrays:
                raise InputError(f"the manifest names '{key}', which the file does not hold", path=path)
    return manifest, arrays


def adapter_modules(manifest, arrays, name):
    """The modules of adapter ``name``: [(module, left, right, kind)] with left = U C, right = V^T."""
    out = []
    for module in manifest["modules"]:
        member = module["members"].get(name)
        if member is None:
            continue
        group = next(g for g in module["groups"] if g["id"] == member["group"])
        u, v = arrays[group["U"]], arrays[group["V"]]
        if member["core"] is None:  # a group of one: U and V are the adapter's own factors
            left = u
        else:
            core = arrays[member["core"]]
            left = (u.astype(np.float64) @ core.astype(np.float64)).astype(u.dtype)
        out.append((module["name"], left, np.ascontiguousarray(v.T), module.get("kind", "linear")))
    return out


def write_adapters(plan, source, output, adapter=None):
    """Write the adapters of collection ``source`` into the planned folder ``output`` through
    ``plan``; returns (files written, modules written)."""
    from cond.formats.lora_writer import write_kohya, write_peft

    manifest, arrays = read_collection(source)
    names = [a["name"] for a in manifest["adapters"]]
    if adapter is not None and adapter not in names:
        raise UsageError(f"`--adapter` must be one of {', '.join(names)}; got {adapter!r}", path=os.fspath(source))
    files, count = [], 0
    for entry in manifest["adapters"]:
        name = entry["name"]
        if adapter is not None and name != adapter:
            continue
        modules = adapter_modules(manifest, arrays, name)
        whole = {k.split("::saved::", 1)[1]: v for k, v in arrays.items() if k.startswith(f"{name}::saved::")}
        count += len(modules)
        if entry.get("format") == "kohya":
            path = plan.member(output, f"{name}.safetensors")
            files += write_kohya(plan, path, [(n, l_, r) for n, l_, r, _ in modules], whole=whole)
        else:
            folder = plan.member(output, name)
            config = {k: v for k, v in (entry.get("config") or {}).items()
                      if k in ("base_model_name_or_path", "modules_to_save", "task_type", "bias", "fan_in_fan_out")}
            kinds = [(n, l_, r, "transposed" if config.get("fan_in_fan_out") and k == "linear" else k)
                     for n, l_, r, k in modules]
            files += write_peft(plan, folder, kinds, whole, config)
    return files, count
