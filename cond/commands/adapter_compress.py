"""``cond compress`` where low rank pays: resize a LoRA adapter, or extract one from a fine-tune.

- **Resize** (``cond compress ADAPTER --max-error E -o OUT``): each module's dW = s L R is
  cut in factor space (:func:`cond.linalg.factored.factored_svd`), never formed, to the
  smallest rank whose *written* factors (rounded to the storage dtype) are within E of
  ``||dW||_F``; the error is computed from the factors too
  (:func:`~cond.linalg.factored.factored_distance`). The output keeps the input's format:
  a PEFT folder stays one, a kohya file stays one.
- **Extract** (``cond compress FINETUNED --base BASE --max-error E -o OUT/``): every 2-D
  weight of a Linear layer that the fine-tune changed becomes a LoRA module of the
  smallest rank whose written factors reproduce dW = W_ft - W_base (float64, from the
  stored values) within E; deltas whose smaller side is at least
  :data:`RANDOMIZED_MIN_SIDE` get a randomized range finder first, whose basis is
  widened until its exact projection error (``||dW||^2 - ||Q^T dW||^2``) meets the bound,
  else the full SVD; the error of what is written is then measured on dW itself, so the
  bound is verified, not estimated. Other differences (biases, norms, embeddings) are
  stored whole (``modules_to_save``, or a factored module's ``base_layer.bias``) or listed
  with the reason they are left out: nothing is dropped silently. Writes a PEFT folder.

Schema ``cond.compress-adapter/1``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from cond.commands.result import Result
from cond.errors import InputError, UsageError

SCHEMA = "cond.compress-adapter/1"
RANDOMIZED_MIN_SIDE = 1024  # deltas with min(m, n) from here on start from a randomized basis
ADAPTER_DTYPES = {
    "f32": "F32",
    "float32": "F32",
    "f16": "F16",
    "float16": "F16",
    "bf16": "BF16",
    "bfloat16": "BF16",
    "f64": "F64",
    "float64": "F64",
}


@dataclass(frozen=True)
class ModuleRecord:
    """One written module: its shape, the rank before (None for a fine-tune's delta) and after,
    the error measured on what is written, the bound, bytes before and after, the route."""

    name: str
    shape: tuple
    rank_before: Optional[int]
    rank: int
    error: float
    bound: Optional[float]
    bytes_before: int
    bytes_after: int
    route: str

    def row(self) -> dict:
        return dict(
            name=self.name,
            shape=list(self.shape),
            rank_before=self.rank_before,
            rank=self.rank,
            error=self.error,
            bound=self.bound,
            bytes_before=self.bytes_before,
            bytes_after=self.bytes_after,
            route=self.route,
        )


@dataclass(frozen=True)
class AdapterCompressReport(Result):
    """What ``cond compress`` wrote for an adapter or a fine-tune (``cond.compress-adapter/1``)."""

    SCHEMA = SCHEMA
    input: str
    output: str
    mode: str  # "resize" or "extract"
    format: str  # what was written: "peft" or "kohya"
    base: Optional[str]
    modules: tuple
    whole: tuple = ()  # (key, why it is stored whole)
    left_out: tuple = ()  # (name, why it is not in the adapter)
    options: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def worst_error(self):
        return max((m.error for m in self.modules), default=None)

    def to_dict(self) -> dict:
        return self.document(
            output=self.output,
            mode=self.mode,
            format=self.format,
            base=self.base,
            modules=[m.row() for m in self.modules],
            whole=[dict(key=k, reason=r) for k, r in self.whole],
            left_out=[dict(name=n, reason=r) for n, r in self.left_out],
            totals=dict(
                modules=len(self.modules),
                bytes_before=sum(m.bytes_before for m in self.modules),
                bytes_after=sum(m.bytes_after for m in self.modules),
                worst_error=self.worst_error,
            ),
        )


def adapter_options(
    max_error, rank, dtype, budget=None, method="svd", budget_bytes=None, activations=None, extract=False
):
    """The checked size request of an adapter run: ``max_error``, ``rank``, or a budget (``budget``: a
    share of the parameters, ``budget_bytes``: of the bytes), which ``max_error`` may join;
    ``method="whiten"`` with ``activations`` (an extraction only, without a budget) bounds the
    output error instead."""
    if method == "whiten":
        if not extract or activations is None:
            raise UsageError(
                "`--method whiten` applies to extracting an adapter from a fine-tune (`--base`) and "
                "needs `--activations GRAMS` (cond calibrate on the base)"
            )
        if budget is not None or budget_bytes is not None:
            raise UsageError(
                "`--method whiten` with a budget does not apply to fine-tune deltas yet: give `--max-error` or `--rank`"
            )
    elif method != "svd":
        raise UsageError(
            f"fine-tune deltas and adapters are cut by plain or whitened SVD; `--method {method}` "
            "does not apply to them"
        )
    budgets = [b for b in (budget, budget_bytes) if b is not None]
    if (
        len(budgets) > 1
        or rank is not None
        and (budgets or max_error is not None)
        or rank is None
        and max_error is None
        and not budgets
    ):
        raise UsageError(
            "give `--max-error`, `--rank`, `--budget` or `--budget-bytes` for an adapter or a fine-tune "
            "delta (`--max-error` may join a budget)"
        )
    from cond.commands.validate import check_budgets

    check_budgets(budget, budget_bytes)
    if max_error is not None and not 0 < max_error < 1:
        raise UsageError(f"`--max-error` must be in (0, 1); got {max_error}")
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 1):
        raise UsageError(f"`--rank` must be a positive integer; got {rank!r}")
    storage = None
    if dtype is not None:
        storage = ADAPTER_DTYPES.get(str(dtype).lower())
        if storage is None:
            raise UsageError(f"`--dtype` for adapter factors must be one of f32, f16, bf16, f64; got {dtype!r}")
    return storage


def truncate(svd, norm, storage, bound, rank, measure, start=None):
    """The smallest rank whose stored factors are within ``bound`` of ``norm`` (or the rank
    asked for; ``start``: the smallest rank to try, a budget's, raised only if the bound needs
    it): (rank, stored left, stored right, relative error measured by ``measure``)."""
    from cond.linalg.factored import balanced_factors
    from cond.linalg.truncated import rank_for_error

    if norm == 0:
        raise ValueError("the delta is zero")
    available = len(svd.s)
    if start is not None:
        first, last = min(start, available), (available if bound is not None else min(start, available))
        rank = None if bound is not None else first
    elif rank is not None:
        first = last = min(rank, available)
    else:
        first, last = max(1, rank_for_error(svd.s, bound)), available
    for k in range(min(first, available), last + 1):
        left, right = balanced_factors(svd, k)
        stored_l, stored_r = storage.store(left)[0], storage.store(right)[0]
        error = measure(stored_l, stored_r) / norm
        if rank is not None or error <= bound:
            return k, stored_l, stored_r, error
    return None


def resize(
    source,
    output,
    *,
    max_error=None,
    rank=None,
    dtype=None,
    include=None,
    force=False,
    progress=None,
    budget=None,
    budget_bytes=None,
) -> AdapterCompressReport:
    """Cut every module of a LoRA adapter to the smallest rank within ``max_error`` (or to ``rank``,
    or to the ranks a budget allocates: ``budget`` a share of the adapter's factor parameters,
    ``budget_bytes`` of its bytes), in factor space; the output has the input's format."""
    from cond.commands.choices import regex_option
    from cond.formats.lora import open_adapter
    from cond.formats.outputs import OutputPlan

    storage_dtype = adapter_options(max_error, rank, dtype, budget_bytes=budget_bytes, budget=budget)
    pattern = regex_option("--include", include)
    started = time.perf_counter()
    with OutputPlan([source], force=force) as plan:
        adapter = open_adapter(source)
        planned = _planned_resize(adapter, pattern, storage_dtype, max_error, budget, budget_bytes)
        kohya = adapter.format == "kohya"
        (plan.file if kohya else plan.folder)(output, "--output")
        written, records, conv, dropped = [], [], {}, []
        transposed = bool(adapter.config.get("fan_in_fan_out"))
        for done, module in enumerate(adapter.modules, 1):
            kind = "embedding" if module.kind == "embedding" else "transposed" if transposed else "linear"
            if pattern is not None and not pattern.search(module.name):
                left, right = module.factors()
                written.append((module.name, *_fold(module, left, right), kind))
                continue
            start = planned.get(module.name)
            if start == 0:
                dropped.append((module.name, "rank 0: the budget is better spent elsewhere"))
                continue
            record, factors = _resize_module(module, storage_dtype, max_error, rank, adapter.path, start)
            if record is None:  # an untrained module (B = 0): its product is zero, so it is left out
                dropped.append((module.name, "a zero delta (an untrained module): left out, the product is the same"))
                continue
            records.append(record)
            written.append((module.name, *factors, kind))
            if module.kind == "conv":
                conv[module.name] = _conv_tail(adapter.path, module)
            if progress:
                progress(done, len(adapter.modules), module.name)
        whole = _saved_tensors(adapter)
        if kohya:
            from cond.formats.lora_writer import write_kohya

            write_kohya(
                plan,
                output,
                written,
                conv,
                whole,
                without_alpha={n.split(":")[0] for n in adapter.notices if "no .alpha" in n},
            )
        else:
            from cond.formats.lora_writer import write_peft

            keep = {
                k: v
                for k, v in adapter.config.items()
                if k in ("base_model_name_or_path", "modules_to_save", "task_type", "bias", "fan_in_fan_out")
            }
            write_peft(plan, output, written, whole, keep)
    return AdapterCompressReport(
        str(source),
        str(output),
        "resize",
        adapter.format,
        None,
        tuple(records),
        tuple((k, "stored whole in the input") for k in whole),
        tuple(dropped),
        options=dict(
            max_error=max_error,
            rank=rank,
            dtype=storage_dtype,
            include=include,
            budget=budget,
            budget_bytes=budget_bytes,
        ),
        seconds=time.perf_counter() - started,
    )


def _planned_resize(adapter, pattern, storage_dtype, max_error, budget, budget_bytes):
    """``{module: rank}`` from the budget (empty without one), over the selected modules."""
    if budget is None and budget_bytes is None:
        return {}
    from cond.formats.safetensors_file import numpy_dtype
    from cond.linalg.factored import factored_svd, frobenius

    chosen = [m for m in adapter.modules if pattern is None or pattern.search(m.name)]
    unit = "bytes" if budget_bytes is not None else "params"
    items = []
    for module in chosen:
        left, right = module.factors()
        s = factored_svd(left, right, module.scale, compute_uv=False)
        size = np.dtype(numpy_dtype(_storage(storage_dtype, module.dtype).dtype)).itemsize
        own = np.dtype(numpy_dtype(module.dtype)).itemsize if unit == "bytes" else 1
        items.append((s, frobenius(s), *module.shape, size, module.rank * sum(module.shape) * own))
    ranks = budget_ranks(items, budget if budget is not None else budget_bytes, unit, max_error)
    return {m.name: r for m, r in zip(chosen, ranks)}


def _storage(dtype, own):
    from cond.commands.compress.storage import Storage

    return Storage(dtype or (own if own in ("F32", "F16", "BF16", "F64") else "F32"))


def _resize_module(module, storage_dtype, max_error, rank, path, start=None):
    from cond.formats.safetensors_file import numpy_dtype
    from cond.linalg.factored import factored_distance, factored_svd, frobenius

    left, right = module.factors()
    svd = factored_svd(left, right, module.scale)
    norm = frobenius(svd.s)
    storage = _storage(storage_dtype, module.dtype)
    found = (
        None
        if norm == 0
        else truncate(
            svd,
            norm,
            storage,
            max_error,
            rank,
            lambda sl, sr: factored_distance(left, right, module.scale, storage.value(sl), storage.value(sr)),
            start=start,
        )
    )
    if norm == 0:
        return None, None
    if found is None:
        raise InputError(
            f"module '{module.name}': no rank meets `--max-error {max_error}` once its factors are "
            f"rounded to {storage.dtype}; store them wider with `--dtype f32`",
            path=path,
        )
    k, sl, sr, error = found
    m, n = module.shape
    size = np.dtype(numpy_dtype(storage.dtype)).itemsize
    before = (m + n) * module.rank * np.dtype(numpy_dtype(module.dtype)).itemsize
    return ModuleRecord(
        module.name, module.shape, module.rank, k, error, max_error, before, (m + n) * k * size, "factored"
    ), (sl, sr)


def _fold(module, left, right):
    """A module kept as it is, with its scale folded into the factors (the writers write scale 1)."""
    from cond.linalg.factored import balanced_factors, factored_svd

    svd = factored_svd(left, right, module.scale)
    sl, sr = balanced_factors(svd, len(svd.s))
    storage = _storage(None, module.dtype)
    return storage.store(sl)[0], storage.store(sr)[0]


def _conv_tail(path, module):
    from cond.formats.safetensors_file import read_header

    down = next(t for t in read_header(path).tensors if t.name == module.keys[0])
    return tuple(int(s) for s in down.shape[1:])


def _saved_tensors(adapter):
    """The adapter's whole tensors, as they are (their bytes and dtype)."""
    if not adapter.saved:
        return {}
    from cond.formats.lora import PEFT_WEIGHTS
    from cond.formats.safetensors_file import entries_of_file, numpy_dtype

    weights = adapter.path if adapter.format == "kohya" else os.path.join(adapter.path, PEFT_WEIGHTS)
    return {
        e.name: np.frombuffer(e.read_raw(), dtype=np.dtype(numpy_dtype(e.dtype)).newbyteorder("<")).reshape(e.shape)
        for e in entries_of_file(weights)
        if e.name in adapter.saved
    }


def relative_error_of(dw, norm):
    """``measure`` for :func:`truncate` on a dense delta: ||dW - L R||_F, in float64."""

    def measure(stored_l, stored_r):
        return float(np.linalg.norm(dw - np.asarray(stored_l, np.float64) @ np.asarray(stored_r, np.float64)))

    return measure


def delta_svd(dw, max_error, rank, seed):
    """The SVD to truncate a dense delta from: randomized where its smaller side is at least
    :data:`RANDOMIZED_MIN_SIDE` and a basis of at most half that side certifies the bound
    (its projection error is exact), else the full SVD. Returns (svd, route)."""
    from cond.linalg.factored import FactoredSVD, randomized_svd

    m, n = dw.shape
    if min(m, n) >= RANDOMIZED_MIN_SIDE:
        norm2 = float(np.sum(dw * dw))
        k = 64 if rank is None else rank
        while k <= min(m, n) // 2:
            svd = randomized_svd(dw, k, seed=seed)
            captured = float(np.sum(svd.s**2))
            if rank is not None or norm2 - captured <= (0.5 * max_error) ** 2 * norm2:
                return svd, "randomized"
            k *= 2
    u, s, vt = np.linalg.svd(dw, full_matrices=False)
    return FactoredSVD(u, s, vt), "svd"


def budget_ranks(items, share, unit, bound=None):
    """The rank of every module under one budget (:func:`cond.linalg.allocation.allocate`):
    ``items`` are (singular values, ||dW||, m, n, bytes per value, cost of the input form);
    options are every rank 0..len(s) (0 leaves the module out) whose predicted relative error
    meets ``bound`` (all ranks without one), cost k (m + n) values or bytes, loss the predicted
    squared relative error (each module's error counts alike). The budget is ``share`` of the
    summed input cost. Returns the ranks."""
    from cond.linalg.allocation import allocate
    from cond.linalg.truncated import tail_errors

    options = []
    for s, norm, m, n, itemsize, _ in items:
        tails = tail_errors(s) if norm > 0 else np.zeros(1)
        per_value = itemsize if unit == "bytes" else 1
        opts = [
            (k * (m + n) * per_value, float(tails[k]) ** 2)
            for k in range(len(tails))
            if bound is None or tails[k] <= bound
        ]
        options.append(opts)
    total = share * sum(item[5] for item in items)
    try:
        allocation = allocate(options, total)
    except ValueError as exc:
        raise UsageError(f"the budget cannot hold every module within `--max-error` ({exc})") from None
    return [_rank_of(choice, bound, item[0]) for choice, item in zip(allocation.choice, items)]


def _rank_of(choice, bound, s):
    """The rank an option index stands for (options skip the ranks the bound rules out)."""
    from cond.linalg.truncated import tail_errors

    if bound is None:
        return choice
    allowed = [k for k, e in enumerate(tail_errors(s)) if e <= bound]
    return allowed[choice]
