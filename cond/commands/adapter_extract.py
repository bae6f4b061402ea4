"""``cond compress FINETUNED --base BASE``: the LoRA adapter of a full fine-tune, within a bound
(see :mod:`cond.commands.adapter_compress` for the rules)."""

from __future__ import annotations

import os
import time

import numpy as np

from cond.commands.adapter_compress import (
    AdapterCompressReport,
    ModuleRecord,
    _storage,
    adapter_options,
    delta_svd,
    relative_error_of,
    truncate,
)
from cond.errors import InputError


def extract(
    finetuned,
    base,
    output,
    *,
    max_error=None,
    rank=None,
    dtype=None,
    include=None,
    seed=0,
    force=False,
    progress=None,
    budget=None,
    budget_bytes=None,
    activations=None,
) -> AdapterCompressReport:
    """Write a PEFT adapter whose every factored module reproduces W_ft - W_base within ``max_error``
    of its norm (measured on what is written), or at ``rank``.

    Parameters
    ----------
    finetuned, base : str
        Checkpoints (file, index or folder); names are aligned as :mod:`cond.torch.names` aligns
        them (a wrapper's prefix), and the adapter uses the base's names.
    output : str
        The PEFT folder to write.
    max_error, rank : float, int
        One of them, or a budget.
    budget, budget_bytes : float, optional
        A share of the changed matrices' dense parameters (or bytes) that the adapter may hold,
        spent across modules by :func:`cond.commands.adapter_compress.budget_ranks` (every delta
        decomposed by the full SVD first); ``max_error`` may join it.
    activations : str, optional
        Input Grams X^T X of the base's layers (``cond calibrate`` on the base): each module is then
        cut by the whitened SVD (SVD-LLM) and the bound, measured on what is written, is on the
        output error ||(dW - L R) X^T||_F / ||dW X^T||_F; modules without a Gram use plain SVD.
    dtype : str, optional
        Storage dtype of the factors (default: each fine-tuned weight's own).
    include : str, optional
        Regular expression: only matching weights are factored (others that differ are stored whole).
    seed : int
        Seeds the randomized range finder of large deltas.
    """
    from cond.commands.choices import regex_option
    from cond.commands.validate import check_seed
    from cond.formats import open_entries
    from cond.formats.outputs import OutputPlan
    from cond.torch.names import align, mapper

    storage_dtype = adapter_options(
        max_error,
        rank,
        dtype,
        budget=budget,
        budget_bytes=budget_bytes,
        method="whiten" if activations is not None else "svd",
        activations=activations,
        extract=True,
    )
    seed = check_seed(seed)
    pattern = regex_option("--include", include)
    started = time.perf_counter()
    with OutputPlan([finetuned, base, activations], force=force) as plan:
        plan.folder(output, "--output")
        with open_entries(finetuned) as ft_entries, open_entries(base) as base_entries:
            ft = {e.name: e for e in ft_entries}
            theirs = {e.name: e for e in base_entries}
            to_base = mapper(*align(ft, theirs))
            plan_ = _classify(ft, theirs, to_base, pattern)
            if not plan_["factored"] and not plan_["whole"]:
                mismatched = len(plan_["left_out"])
                raise InputError(
                    "no tensor differs from the base with a matching name and shape"
                    + (
                        f" ({mismatched} left out: another architecture, or not its base?)"
                        if mismatched
                        else " (the fine-tune equals its base)"
                    ),
                    path=os.fspath(finetuned),
                )
            written, records = [], []
            starts = _planned_extract(ft, theirs, plan_, storage_dtype, max_error, budget, budget_bytes)
            grams = _grams(activations, [b for _, b in plan_["factored"]], theirs)
            for done, (name, base_name) in enumerate(plan_["factored"], 1):
                if starts.get(base_name) == 0:
                    plan_["left_out"].append((base_name, "rank 0: the budget is better spent elsewhere"))
                    continue
                if grams is not None and base_name in grams:
                    record, factors = _extract_whitened(
                        ft[name], theirs[base_name], base_name, storage_dtype, max_error, rank, grams
                    )
                else:
                    record, factors = _extract_one(
                        ft[name],
                        theirs[base_name],
                        base_name,
                        storage_dtype,
                        max_error,
                        rank,
                        seed,
                        starts.get(base_name),
                    )
                records.append(record)
                written.append((base_name[: -len(".weight")], *factors))
                if progress:
                    progress(done, len(plan_["factored"]), base_name)
            whole, kept = _whole(ft, plan_, {n for n, _, _ in written})
        from cond.formats.lora_writer import write_peft

        saved_modules = sorted({k for k, _ in kept})
        write_peft(
            plan,
            output,
            written,
            whole,
            {"base_model_name_or_path": os.fspath(base), "modules_to_save": saved_modules or None},
        )
    return AdapterCompressReport(
        str(finetuned),
        str(output),
        "extract",
        "peft",
        str(base),
        tuple(records),
        tuple((key, why) for key, why in plan_["whole_reasons"]),
        tuple(plan_["left_out"]),
        options=dict(
            max_error=max_error,
            rank=rank,
            dtype=storage_dtype,
            include=include,
            seed=seed,
            budget=budget,
            budget_bytes=budget_bytes,
            activations=activations,
        ),
        seconds=time.perf_counter() - started,
    )


def _classify(ft, theirs, to_base, pattern):
    """Which fine-tuned tensors differ from the base, and what is done with each: factored (2-D
    float Linear weights), stored whole (other float differences), or left out (with the reason)."""
    factored, whole, reasons, left_out = [], [], [], []
    for name, entry in ft.items():
        base_name = to_base(name)
        other = theirs.get(base_name)
        if other is None:
            left_out.append((name, "not in the base checkpoint (PEFT can only change the base's modules)"))
            continue
        if tuple(other.shape) != tuple(entry.shape):
            left_out.append(
                (
                    name,
                    f"shape {'x'.join(map(str, entry.shape))} differs from the base's "
                    f"{'x'.join(map(str, other.shape))} (a resized vocabulary?)",
                )
            )
            continue
        if (
            entry.read_raw is not None
            and other.read_raw is not None
            and entry.dtype == other.dtype
            and entry.read_raw() == other.read_raw()
        ):
            continue  # unchanged, byte for byte
        if entry.unit_roundoff is None:
            left_out.append((name, f"a {entry.dtype} tensor that differs from the base (ids or codes, not weights)"))
            continue
        matrix = len(entry.shape) == 2 and base_name.endswith(".weight") and "embed" not in base_name.lower()
        if matrix and (pattern is None or pattern.search(base_name)):
            factored.append((name, base_name))
        else:
            why = (
                "an embedding (PEFT's Linear LoRA would not load onto it)"
                if "embed" in base_name.lower()
                else "excluded by --include"
                if matrix
                else f"{len(entry.shape)}-D (a bias or a norm)"
            )
            whole.append((name, base_name))
            reasons.append((base_name, f"stored whole: {why}"))
    return dict(factored=factored, whole=whole, whole_reasons=reasons, left_out=left_out)


def _planned_extract(ft, theirs, plan_, storage_dtype, max_error, budget, budget_bytes):
    """``{base name: rank}`` from the budget (empty without one): the full spectrum of every delta."""
    if budget is None and budget_bytes is None:
        return {}
    from cond.commands.adapter_compress import budget_ranks
    from cond.formats.safetensors_file import numpy_dtype

    unit = "bytes" if budget_bytes is not None else "params"
    items = []
    for name, base_name in plan_["factored"]:
        dw = ft[name].load().astype(np.float64) - theirs[base_name].load().astype(np.float64)
        s = np.linalg.svd(dw, compute_uv=False)
        m, n = dw.shape
        size = np.dtype(numpy_dtype(_storage(storage_dtype, ft[name].dtype).dtype)).itemsize
        own = np.dtype(numpy_dtype(ft[name].dtype)).itemsize if unit == "bytes" else 1
        items.append((s, float(np.linalg.norm(s)), m, n, size, m * n * own))
    ranks = budget_ranks(items, budget if budget is not None else budget_bytes, unit, max_error)
    return {base_name: r for (_, base_name), r in zip(plan_["factored"], ranks)}


def _extract_one(entry, base_entry, base_name, storage_dtype, max_error, rank, seed, start=None):
    from cond.formats.safetensors_file import numpy_dtype

    dw = entry.load().astype(np.float64) - base_entry.load().astype(np.float64)
    if not np.all(np.isfinite(dw)):
        raise InputError(
            "the fine-tune or the base holds NaN or Inf", path=entry.source, tensor=entry.name, shape=entry.shape
        )
    norm = float(np.linalg.norm(dw))
    # a budget's rank comes from the full spectrum, so its deltas take the full SVD
    svd, route = _full_svd(dw) if start is not None else delta_svd(dw, max_error, rank, seed)
    storage = _storage(storage_dtype, entry.dtype)
    found = truncate(svd, norm, storage, max_error, rank, relative_error_of(dw, norm), start=start)
    if found is None and route == "randomized":
        u, s, vt = np.linalg.svd(dw, full_matrices=False)
        from cond.linalg.factored import FactoredSVD

        svd, route = FactoredSVD(u, s, vt), "svd"
        found = truncate(svd, norm, storage, max_error, rank, relative_error_of(dw, norm))
    if found is None:
        raise InputError(
            f"no rank meets `--max-error {max_error}` once the factors are rounded to {storage.dtype}; "
            "store them wider with `--dtype f32`",
            path=entry.source,
            tensor=entry.name,
            shape=entry.shape,
        )
    k, sl, sr, error = found
    m, n = dw.shape
    size = np.dtype(numpy_dtype(storage.dtype)).itemsize
    return ModuleRecord(
        base_name[: -len(".weight")],
        (m, n),
        None,
        k,
        error,
        max_error,
        m * n * np.dtype(numpy_dtype(entry.dtype)).itemsize,
        (m + n) * k * size,
        route,
    ), (sl, sr)


def _whole(ft, plan_, factored_modules):
    """The tensors stored whole, keyed as PEFT saves them: a factored module's bias as
    ``<module>.base_layer.bias``; any other module whole (every tensor of it, fine-tuned values)
    under ``modules_to_save``. Returns (tensors, [(module, key)])."""
    from cond.formats.lora import PEFT_PREFIX

    tensors, kept = {}, []
    modules = {base_name.rsplit(".", 1)[0] for _, base_name in plan_["whole"]}
    base_of = {base_name: name for name, base_name in plan_["whole"]}
    for base_name, name in base_of.items():
        module, leaf = base_name.rsplit(".", 1)
        if module in factored_modules and leaf == "bias":
            tensors[f"{PEFT_PREFIX}{module}.base_layer.bias"] = ft[name].load().astype(_own(ft[name]))
            modules.discard(module)
    for module in sorted(modules):
        for name, entry in ft.items():
            if name.rsplit(".", 1)[0] == module or name.rsplit(".", 1)[0].endswith("." + module):
                leaf = name.rsplit(".", 1)[1]
                tensors[f"{PEFT_PREFIX}{module}.{leaf}"] = entry.load().astype(_own(entry))
                kept.append((module, leaf))
    return tensors, kept


def _own(entry):
    from cond.formats.safetensors_file import numpy_dtype

    return numpy_dtype(entry.dtype)


def _full_svd(dw):
    from cond.linalg.factored import FactoredSVD

    u, s, vt = np.linalg.svd(dw, full_matrices=False)
    return FactoredSVD(u, s, vt), "svd"


def _grams(activations, names, theirs):
    """The Gram file of ``--activations``, checked against the factored weights (names and rows)."""
    if activations is None:
        return None
    from cond.formats.calibration_file import CalibrationFile

    grams = CalibrationFile(activations, "gram")
    grams.check_names(names)
    grams.check_rows([theirs[n] for n in names])
    return grams


def _extract_whitened(entry, base_entry, base_name, storage_dtype, bound, rank, grams):
    """One module by the whitened SVD: the smallest rank whose written factors keep the output error
    ||(dW - L R) X^T|| / ||dW X^T|| within ``bound`` (or the rank asked for)."""
    from cond.formats.safetensors_file import numpy_dtype
    from cond.linalg.truncated import rank_for_error, relative_error
    from cond.linalg.weighted import weighted_factors

    dw = entry.load().astype(np.float64) - base_entry.load().astype(np.float64)
    weighting = grams.weighting(base_name, dw.shape)
    m, n = dw.shape
    left, right, s = weighted_factors(dw, weighting, min(m, n))
    storage = _storage(storage_dtype, entry.dtype)
    first = min(rank, len(s)) if rank is not None else max(1, rank_for_error(s, bound))
    for k in range(first, (len(s) if rank is None else first) + 1):
        sl, sr = storage.store(left[:, :k])[0], storage.store(right[:k])[0]
        error = relative_error(dw, storage.value(sl) @ storage.value(sr), weighting)
        if rank is not None or error <= bound:
            size = np.dtype(numpy_dtype(storage.dtype)).itemsize
            return ModuleRecord(
                base_name[: -len(".weight")],
                (m, n),
                None,
                k,
                error,
                bound,
                m * n * np.dtype(numpy_dtype(entry.dtype)).itemsize,
                (m + n) * k * size,
                "whiten",
            ), (sl, sr)
    raise InputError(
        f"no rank meets `--max-error {bound}` on the output error once the factors are rounded to "
        f"{storage.dtype}; store them wider with `--dtype f32`",
        path=entry.source,
        tensor=entry.name,
    )
