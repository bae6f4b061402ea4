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
    """(manifest, {key: array}) of a collection file, the manifest checked against its tensors
    (every field a reader uses, every key present with the shape its group's rank needs)."""
    import ml_dtypes  # noqa: F401 - bf16 arrays
    from safetensors.numpy import load_file

    from cond.formats.safetensors_file import parse_json, read_header

    header = read_header(path)
    manifest = parse_json(header.metadata.get("cond.manifest", ""), path, "cond.manifest")
    if (
        not isinstance(manifest, dict)
        or not isinstance(manifest.get("adapters"), list)
        or not isinstance(manifest.get("modules"), list)
    ):
        raise InputError("cond.manifest is not a collection manifest (adapters, modules)", path=path)
    arrays = load_file(path)
    names = _check_adapters(manifest["adapters"], path)
    for module in manifest["modules"]:
        _check_module(module, names, arrays, path)
    return manifest, arrays


def _bad(path, what):
    return InputError(f"cond.manifest: {what}", path=path)


def _check_adapters(adapters, path):
    names = []
    for entry in adapters:
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("name"), str)
            or not entry["name"]
            or entry.get("format") not in ("peft", "kohya")
            or not isinstance(entry.get("config") or {}, dict)
        ):
            raise _bad(path, "an adapter record needs a name, a format (peft or kohya) and a config object")
        if entry["name"] in names or "/" in entry["name"] or entry["name"] in (".", ".."):
            raise _bad(path, f"adapter name {entry['name']!r} is repeated or not a plain name")
        names.append(entry["name"])
    return names


def _check_module(module, names, arrays, path):
    def whole(x):
        return isinstance(x, int) and not isinstance(x, bool) and x > 0

    if (
        not isinstance(module, dict)
        or not isinstance(module.get("name"), str)
        or not (
            isinstance(module.get("shape"), list)
            and len(module["shape"]) == 2
            and all(whole(v) for v in module["shape"])
        )
        or not isinstance(module.get("groups"), list)
        or not isinstance(module.get("members"), dict)
    ):
        raise _bad(path, "a module record needs a name, a shape [m, n], groups and members")
    m, n = module["shape"]
    ranks = {}
    for group in module["groups"]:
        if not isinstance(group, dict) or not isinstance(group.get("id"), int) or not whole(group.get("rank")):
            raise _bad(path, f"module '{module['name']}': a group needs an integer id and a positive rank")
        k = group["rank"]
        for side, rows in (("U", m), ("V", n)):
            key = group.get(side)
            if not isinstance(key, str) or key not in arrays or arrays[key].shape != (rows, k):
                raise _bad(
                    path,
                    f"module '{module['name']}': group {group['id']}'s {side} must be a {rows} x {k} "
                    f"tensor of the file; got {key!r}",
                )
        ranks[group["id"]] = k
    for name, member in module["members"].items():
        if name not in names or not isinstance(member, dict) or member.get("group") not in ranks:
            raise _bad(path, f"module '{module['name']}': member {name!r} names no adapter or no group")
        core, k = member.get("core"), ranks[member["group"]]
        if core is not None and (not isinstance(core, str) or core not in arrays or arrays[core].shape != (k, k)):
            raise _bad(
                path,
                f"module '{module['name']}': the core of {name!r} must be a {k} x {k} tensor of the file; got {core!r}",
            )


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
            config = {
                k: v
                for k, v in (entry.get("config") or {}).items()
                if k in ("base_model_name_or_path", "modules_to_save", "task_type", "bias", "fan_in_fan_out")
            }
            kinds = [
                (n, l_, r, "transposed" if config.get("fan_in_fan_out") and k == "linear" else k)
                for n, l_, r, k in modules
            ]
            files += write_peft(plan, folder, kinds, whole, config)
    return files, count
