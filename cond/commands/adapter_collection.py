"""``cond compress A1 A2 ... AN --max-error E -o COLLECTION``: many LoRA adapters of one base in
shared bases, every adapter within E of its own product.

Per module, adapters are grouped greedily (largest delta first): an adapter joins a group when
the group's shared bases with it cost fewer bytes than the group's without it plus the
adapter resized alone; else it starts a group of its own (cond's error-constrained
clustering: the bound is every member's, never a group's). A group stores U (m x k) and
V (n x k) once and a k x k core per member (a group of one stores its own resized factors
and no core, so a collection never costs more than resizing each adapter alone) (:mod:`cond.linalg.shared_basis`); each
member's error is measured on the stored, rounded values, from the factors, and k grows
until every member meets the bound.

The file is a safetensors file (``cond.format`` = ``cond-lora-collection/1``) with the
manifest in its metadata: the adapters (name, source, format, PEFT config), and per module
its groups (members, rank, the keys of U and V) and per member its core's key, error and
norm. Whole tensors an adapter saves (``modules_to_save``) are kept under
``<adapter>::saved::<key>``. The "alone" baseline of the report is each adapter resized on
its own at the same bound, verified on its rounded factors as a resize is. ``cond expand COLLECTION -o DIR`` writes every adapter back in its
own format (:mod:`cond.formats.lora_collection`). Schema of the report:
``cond.compress-collection/1``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

import numpy as np

from cond.commands.result import Result
from cond.errors import InputError, UsageError

FORMAT = "cond-lora-collection/1"
SCHEMA = "cond.compress-collection/1"


@dataclass(frozen=True)
class CollectionReport(Result):
    """What a collection run wrote: per module its groups and ranks, per adapter its worst error,
    and bytes against the inputs and against resizing each adapter alone at the same bound."""

    SCHEMA = SCHEMA
    input: tuple
    output: str
    adapters: tuple
    modules: tuple  # dicts: name, shape, groups (rank, members), worst_error
    bytes_inputs: int
    bytes_alone: int
    bytes_collection: int
    options: dict = field(default_factory=dict)
    seconds: float = 0.0
    zero: tuple = ()  # modules whose delta is zero in every adapter (untrained): left out

    def to_dict(self) -> dict:
        return self.document(
            output=self.output,
            adapters=list(self.adapters),
            modules=[dict(m) for m in self.modules],
            zero=list(self.zero),
            totals=dict(
                bytes_inputs=self.bytes_inputs,
                bytes_alone=self.bytes_alone,
                bytes_collection=self.bytes_collection,
                against_inputs=self.bytes_collection / max(self.bytes_inputs, 1),
                against_alone=self.bytes_collection / max(self.bytes_alone, 1),
            ),
        )


def adapter_names(sources):
    """One name per adapter: its folder's or file's name, made unique with -2, -3 ..."""
    names, taken = [], set()
    for source in sources:
        stem = os.path.basename(os.path.normpath(os.fspath(source)))
        stem = stem[: -len(".safetensors")] if stem.endswith(".safetensors") else stem
        name, k = stem or "adapter", 2
        while name in taken:
            name, k = f"{stem}-{k}", k + 1
        taken.add(name)
        names.append(name)
    return names


def compress_collection(sources, output, *, max_error, dtype=None, force=False, progress=None) -> CollectionReport:
    """Shared bases for the modules of several adapters of one base (see the module's docstring)."""
    from cond.commands.adapter_compress import adapter_options
    from cond.formats.lora import open_adapter
    from cond.formats.outputs import OutputPlan

    storage_dtype = adapter_options(max_error, None, dtype)
    if max_error is None:
        raise UsageError("a collection takes `--max-error` (every adapter within it of its own product)")
    sources = [os.fspath(s) for s in sources]
    started = time.perf_counter()
    with OutputPlan(sources, force=force) as plan:
        plan.file(output, "--output")
        adapters = [open_adapter(s) for s in sources]
        names = adapter_names(sources)
        by_module = _modules(adapters, names)
        tensors, manifest_modules, rows, alone_bytes, zero = {}, [], [], 0, []
        for done, (module_name, members) in enumerate(sorted(by_module.items()), 1):
            record, arrays, alone = _module(module_name, members, storage_dtype, max_error)
            if record is None:  # untrained in every adapter (B = 0): nothing to store
                zero.append(module_name)
                continue
            tensors.update(arrays)
            manifest_modules.append(record)
            rows.append(
                dict(
                    name=module_name,
                    shape=record["shape"],
                    groups=[dict(rank=g["rank"], members=g["members"]) for g in record["groups"]],
                    worst_error=max(m["error"] for m in record["members"].values()),
                )
            )
            alone_bytes += alone
            if progress:
                progress(done, len(by_module), module_name)
        tensors.update(_whole(adapters, names))
        manifest = dict(
            format=FORMAT,
            adapters=[dict(name=n, source=a.path, format=a.format, config=a.config) for n, a in zip(names, adapters)],
            modules=manifest_modules,
            max_error=max_error,
        )
        _write(plan, output, tensors, manifest)
    inputs = sum(_adapter_bytes(a) for a in adapters)
    collection = sum(np.asarray(v).nbytes for k, v in tensors.items() if "::saved::" not in k)
    return CollectionReport(
        tuple(sources),
        str(output),
        tuple(names),
        tuple(rows),
        inputs,
        alone_bytes,
        collection,
        dict(max_error=max_error, dtype=storage_dtype),
        time.perf_counter() - started,
        tuple(zero),
    )


def _modules(adapters, names):
    """``{module: [(adapter name, LoraModule)]}``, shapes checked to agree."""
    out = {}
    for name, adapter in zip(names, adapters):
        for module in adapter.modules:
            members = out.setdefault(module.name, [])
            if members and (tuple(members[0][1].shape) != tuple(module.shape) or members[0][1].kind != module.kind):
                raise InputError(
                    f"module '{module.name}' is {'x'.join(map(str, module.shape))} here but "
                    f"{'x'.join(map(str, members[0][1].shape))} in {members[0][0]}: adapters of "
                    "different bases cannot share a collection",
                    path=adapter.path,
                )
            members.append((name, module))
    return out


def _module(module_name, members, storage_dtype, bound):
    """Group the members of one module and store each group: (manifest record, arrays, bytes alone)."""
    from cond.commands.adapter_compress import _storage
    from cond.linalg.factored import factored_svd

    storage = _storage(storage_dtype, members[0][1].dtype)
    item = np.dtype(_np_dtype(storage.dtype)).itemsize
    m, n = members[0][1].shape
    prepared = []
    for name, module in members:
        left, right = module.factors()
        svd = factored_svd(left, right, module.scale)
        norm = float(np.sqrt(np.sum(svd.s**2)))
        if norm > 0:
            prepared.append((name, module, left, right, svd, norm))
    if not prepared:
        return None, None, 0
    prepared.sort(key=lambda p: -p[5])
    alone = {p[0]: _alone_rank(p, storage, bound) for p in prepared}
    groups = _group(prepared, alone, bound, m, n)
    record = dict(name=module_name, shape=[m, n], kind=members[0][1].kind, groups=[], members={})
    arrays, alone_bytes = {}, sum((m + n) * r * item for r in alone.values())
    for gid, (group, k) in enumerate(groups):
        if len(group) == 1:
            _store_alone(module_name, gid, group[0], storage, bound, record, arrays)
        else:
            _store_group(module_name, gid, group, k, storage, bound, record, arrays)
    return record, arrays, alone_bytes


def _alone_rank(member, storage, bound):
    """The rank resizing this adapter alone would write (verified on the rounded factors, as
    ``cond compress ADAPTER`` does): the baseline a collection is measured against."""
    from cond.commands.adapter_compress import truncate
    from cond.linalg.factored import factored_distance
    from cond.linalg.truncated import rank_for_error

    _, module, left, right, svd, norm = member
    found = truncate(
        svd,
        norm,
        storage,
        bound,
        None,
        lambda sl, sr: factored_distance(left, right, module.scale, storage.value(sl), storage.value(sr)),
    )
    return found[0] if found is not None else max(1, rank_for_error(svd.s, bound))


def _group(prepared, alone, bound, m, n):
    """Greedy groups: [(members, shared rank)], each member added where it saves bytes."""
    from cond.linalg.shared_basis import shared_bases, smallest_shared_rank

    def rank_of(group):
        u, v = shared_bases([p[4] for p in group], [p[5] for p in group])
        return smallest_shared_rank([p[4] for p in group], [p[5] for p in group], u, v, bound)

    def cost(group, k):
        return k * (m + n) + len(group) * k * k

    groups = []
    for p in prepared:
        placed = False
        for i, (group, k) in enumerate(groups):
            k2 = rank_of(group + [p])
            if k2 is not None and cost(group + [p], k2) <= cost(group, k) + alone[p[0]] * (m + n):
                groups[i] = (group + [p], k2)
                placed = True
                break
        if not placed:
            groups.append(([p], alone[p[0]]))
    return groups


def _store_group(module_name, gid, group, k, storage, bound, record, arrays):
    """U, V and every member's core rounded to the storage dtype; k grows until every member's
    error, measured on the rounded values from the factors, meets the bound."""
    from cond.linalg.factored import factored_distance
    from cond.linalg.shared_basis import best_core, shared_bases

    u_all, v_all = shared_bases([p[4] for p in group], [p[5] for p in group])
    for k in range(k, u_all.shape[1] + 1):  # noqa: B020 - the search resumes from the rank it was given
        u = storage.value(storage.store(u_all[:, :k])[0])
        v = storage.value(storage.store(v_all[:, :k])[0])
        cores, errors = {}, {}
        for name, module, left, right, _, norm in group:
            core = storage.store(best_core(left, right, module.scale, u, v))[0]
            cores[name] = core
            errors[name] = factored_distance(left, right, module.scale, u @ storage.value(core), v.T) / norm
        if max(errors.values()) <= bound:
            break
    else:
        raise InputError(
            f"module '{module_name}': no shared rank meets `--max-error {bound}` once rounded to "
            f"{storage.dtype}; store it wider with `--dtype f32`"
        )
    prefix = f"cond.collection.{module_name}.{gid}"
    arrays[f"{prefix}.U"] = storage.store(u_all[:, :k])[0]
    arrays[f"{prefix}.V"] = storage.store(v_all[:, :k])[0]
    record["groups"].append(dict(id=gid, rank=k, members=[p[0] for p in group], U=f"{prefix}.U", V=f"{prefix}.V"))
    for name, module, _left, _right, _, norm in group:
        key = f"{name}::{module_name}.core"
        arrays[key] = cores[name]
        record["members"][name] = dict(group=gid, core=key, error=errors[name], norm=norm, rank=module.rank)


def _store_alone(module_name, gid, member, storage, bound, record, arrays):
    """A group of one: its own resized factors as U (L) and V (R^T) and no core (the identity), so a
    collection never costs more than resizing that adapter alone."""
    from cond.commands.adapter_compress import truncate
    from cond.linalg.factored import factored_distance

    name, module, left, right, svd, norm = member
    found = truncate(
        svd,
        norm,
        storage,
        bound,
        None,
        lambda sl, sr: factored_distance(left, right, module.scale, storage.value(sl), storage.value(sr)),
    )
    if found is None:
        raise InputError(
            f"module '{module_name}' of {name}: no rank meets `--max-error {bound}` once rounded to "
            f"{storage.dtype}; store it wider with `--dtype f32`"
        )
    k, stored_l, stored_r, error = found
    prefix = f"cond.collection.{module_name}.{gid}"
    arrays[f"{prefix}.U"] = stored_l
    arrays[f"{prefix}.V"] = np.ascontiguousarray(stored_r.T)
    record["groups"].append(dict(id=gid, rank=k, members=[name], U=f"{prefix}.U", V=f"{prefix}.V"))
    record["members"][name] = dict(group=gid, core=None, error=error, norm=norm, rank=module.rank)


def _whole(adapters, names):
    from cond.commands.adapter_compress import _saved_tensors

    out = {}
    for name, adapter in zip(names, adapters):
        for key, value in _saved_tensors(adapter).items():
            out[f"{name}::saved::{key}"] = value
    return out


def _adapter_bytes(adapter):
    from cond.formats.lora import PEFT_WEIGHTS

    path = adapter.path if adapter.format == "kohya" else os.path.join(adapter.path, PEFT_WEIGHTS)
    return os.path.getsize(path)


def _np_dtype(name):
    from cond.formats.safetensors_file import numpy_dtype

    return numpy_dtype(name)


def _write(plan, output, tensors, manifest):
    from safetensors.numpy import save_file

    with plan.writing(output) as tmp:
        save_file(
            {k: np.ascontiguousarray(v) for k, v in tensors.items()},
            tmp,
            metadata={"cond.format": FORMAT, "cond.manifest": json.dumps(manifest, separators=(",", ":"))},
        )
