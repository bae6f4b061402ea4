"""Pass 1 of ``cond compress``: every tensor once, in file order, each selected matrix in its
own best form (the smallest rank whose error, measured on what ``cond expand`` gives back,
meets the bound; dense when no rank saves parameters). Untouched tensors are copied byte
for byte. Runs in this process or as one Dask task per matrix."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from cond.commands.compress.groupwise_form import groupwise_forms
from cond.commands.compress.report import TensorRecord
from cond.commands.compress.storage import Storage, dtype_bytes
from cond.errors import InputError, input_errors
from cond.formats.safetensors_file import numpy_dtype
from cond.linalg.truncated import lowrank_params, rank_for_error, rank_for_ratio, relative_error
from cond.linalg.weighted import FISHER_FLOOR, Weighting, weighted_factors

FLOAT_DTYPES = ("F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2")
FACTOR_SUFFIXES = (
    "U",
    "V",
    "q",
    "U.scale",
    "V.scale",
    "q.scale",
    "codes",
    "scales",
    "zeros",
    "L",
    "R",
    "L.scale",
    "R.scale",
)  # what a compressed matrix may write beside its name
RANK_STEPS = 16  # ranks tried above the Eckart-Young rank before rounding makes a matrix dense
SMALL_MATRIX = 2**21  # entries below which one BLAS thread is faster


@dataclass(frozen=True)
class Candidate:
    """A matrix pass 1 compressed on its own, which pass 2 may put into a cluster."""

    name: str
    shape: tuple
    dtype: str
    storage_dtype: str
    m: int
    n: int
    own: TensorRecord
    entry: object = field(repr=False)
    group: Optional[str] = ""
    weights: Weighting = field(default_factory=Weighting, repr=False)  # pass 1's, reused by pass 2
    weight_note: Optional[str] = None
    rank_needed: Optional[int] = None  # the Eckart-Young rank at the bound: no shared basis can do with less

    @property
    def weighting(self) -> str:
        """The kind of weights (``none``, ``fisher``, ``whiten``)."""
        return self.weights.kind

    @property
    def weight_sides(self) -> tuple:
        """(row weights A, column weights B): which shared basis the weights allow."""
        return self.weights.has_left, self.weights.has_right


def rounder(storage_dtype):
    """``x`` rounded once to the dtype ``cond expand`` writes, back in float64 (an overflow is
    inf, which the caller refuses as a form: no warning for it)."""
    np_dtype = numpy_dtype(storage_dtype)

    def expanded(x):
        with np.errstate(over="ignore", invalid="ignore"):
            return np.asarray(x).astype(np_dtype).astype(np.float64)

    return expanded


def weighting_of(calibration, name, shape):
    """The entry's weighting, or none (with the reason) when the file has no entry for it."""
    if calibration is None:
        return Weighting(), None
    if name not in calibration:
        what = "Fisher" if calibration.kind == "fisher" else "Gram"
        return Weighting(), f"no {what} entry: plain SVD"
    weighting = calibration.weighting(name, shape)
    notes = []
    if weighting.clamped:
        notes.append(f"{weighting.clamped} importances raised to {FISHER_FLOOR:g} of the mean")
    if weighting.jitter:
        notes.append(f"jitter {weighting.jitter:.0e} of the mean diagonal added to the Gram")
    return weighting, "; ".join(notes) or None


def select_reason(entry, opts):
    if entry.skip_reason is not None:
        return entry.skip_reason
    if entry.dtype not in FLOAT_DTYPES:
        return f"dtype {entry.dtype} is not compressed"
    inc, exc = opts.include_re, opts.exclude_re
    if inc is not None and not inc.search(entry.name):
        return "not matched by --include"
    if exc is not None and exc.search(entry.name):
        return "matched by --exclude"
    if math.prod(entry.shape) < opts.min_size:
        return f"fewer than --min-size {opts.min_size} entries"
    return None


def first_pass(entries, names, writer, opts, calibration, progress, client=None, plans=None, grams=None):
    records, candidates = {}, []
    plans = plans or {}
    reasons = [select_reason(entry, opts) for entry in entries]
    for entry, reason in zip(entries, reasons):
        if reason is None and 0 in entry.shape:
            raise InputError(
                "matrix has a zero-size dimension", path=entry.source, tensor=entry.name, shape=entry.shape
            )
        if reason is None:
            for key in (f"{entry.name}.{k}" for k in FACTOR_SUFFIXES):
                if key in names:
                    raise InputError(
                        f"tensor '{key}' would collide with a factor of '{entry.name}'; "
                        "rename it or --exclude one of them",
                        path=entry.source,
                    )
    own_forms = None
    if client is not None:  # one task per matrix, consumed in file order as the writer needs them
        from cond.distributed import ordered_map

        chosen = [e for e, r in zip(entries, reasons) if r is None]
        own_forms = ordered_map(
            client,
            _planned_form,
            [(e, plans.get(e.name)) for e in chosen],
            opts=opts,
            calibration=calibration,
            grams=grams,
        )
    total, done = sum(r is None for r in reasons), 0
    for entry, reason in zip(entries, reasons):
        if reason is not None:
            size = math.prod(entry.shape)
            raw = entry.read_raw()
            writer.add_bytes(entry.name, entry.dtype, entry.shape, raw)
            records[entry.name] = TensorRecord(
                name=entry.name,
                shape=tuple(entry.shape),
                dtype=entry.dtype,
                storage="dense",
                keys=(entry.name,),
                rank=None,
                error=None,
                bound=None,
                cluster=None,
                params_before=size,
                params_after=size,
                note=reason,
                bytes_before=len(raw),
                bytes_after=len(raw),
            )
        else:
            if progress:  # before the work: the bar names the matrix being compressed
                progress("matrices", done, total, entry.name)
            candidate, arrays = (
                next(own_forms)
                if own_forms is not None
                else _own_form(entry, opts, calibration, plans.get(entry.name), grams)
            )
            if arrays is None:
                writer.add_bytes(entry.name, entry.dtype, entry.shape, entry.read_raw())
            else:
                for key, array in arrays.items():
                    writer.add_array(key, array)
            records[entry.name] = candidate.own
            candidates.append(candidate)
            done += 1
    if progress and total:
        progress("matrices", total, total, "")
    return records, candidates


def _own_form(entry, opts, calibration, plan=None, grams=None):
    """The matrix's best form on its own: (candidate, the arrays to write as {key: array}, or None:
    untouched). Runs in this process or as a Dask task (the worker reads the tensor).

    The forms are: untouched (the original bytes), quantized (the whole matrix at the storage
    dtype, when that differs from its own), low rank, and with ``--dtype int2`` .. ``int7`` (or a
    group size) group-wise codes with an optional low-rank correction. With a bound the cheapest
    in bytes that meets it is taken; a compressed form must save ``opts.min_saving`` of the
    untouched bytes. ``plan`` (from the budget) fixes the form: ("untouched",),
    ("quantized", dtype), ("lowrank", rank, dtype) or ("groupwise", bits, group, rank).
    """
    w = finite_matrix(entry)
    m, n = w.shape
    name = entry.name
    where = dict(path=entry.source, tensor=name, shape=entry.shape)
    weighting, weight_note = weighting_of(calibration, name, entry.shape)
    kind = plan[0] if plan is not None else None
    storage = Storage(plan[-1] if kind in ("quantized", "lowrank") else opts.dtype or entry.dtype)
    bound = opts.max_error
    expanded = rounder(entry.dtype)  # what `cond expand` writes: the product in the original dtype
    untouched = dtype_bytes(entry.dtype, m * n)
    limit = untouched * (1 - opts.min_saving)  # a compressed form must cost at most this
    notes = [weight_note] if weight_note else []
    forms = []  # (bytes, storage, rank, arrays, error, plain error, the approximation[, how: dict])
    if kind == "groupwise" or (plan is None and opts.bits is not None):
        forms += groupwise_forms(w, opts, weighting, grams, entry, expanded, limit, plan, notes)
    if storage.dtype != entry.dtype and kind in (None, "quantized") and opts.bits is None:
        forms += _quantized_form(w, storage, expanded, weighting, bound, limit, name, where)
    s = None
    if kind == "lowrank" or (kind is None and opts.bits is None):
        ceiling = min([limit] + [f[0] for f in forms])
        lowrank, s, overflow = _lowrank_form(w, opts, storage, expanded, weighting, ceiling, plan, name, where)
        forms += lowrank
        if overflow:
            notes.append(f"dense: the rank-{overflow} product overflows {entry.dtype} when expanded")
    chosen = min(forms, key=lambda f: f[0]) if forms else None
    group = ""
    if opts.group_re is not None:
        match = opts.group_re.search(name)
        group = None if match is None else (match.group(1) if match.groups() else match.group(0))
    rank_needed = None
    if bound is not None and opts.cluster:
        s = _spectrum(w, weighting) if s is None else s
        rank_needed = max(1, rank_for_error(s, bound))
    common = dict(
        name=name,
        shape=tuple(entry.shape),
        dtype=entry.dtype,
        bound=bound,
        cluster=None,
        params_before=m * n,
        weighting=weighting.kind,
        bytes_before=untouched,
        macs_before=m * n,
    )
    if chosen is None:
        if not any(n.startswith("dense:") for n in notes):
            notes.insert(0, _why_untouched(bound, kind, opts))
        own = TensorRecord(
            storage="dense",
            keys=(name,),
            rank=None,
            error=0.0,
            params_after=m * n,
            note="; ".join(notes),
            plain_error=0.0,
            bytes_after=untouched,
            macs_after=m * n,
            output_error=0.0 if grams is not None and name in grams else None,
            **common,
        )
        arrays = None
    else:
        size, form, r, arrays, err, plain, approx, *how = chosen
        how = (
            how[0]
            if how
            else dict(
                keys=tuple(k for k in arrays if not k.endswith(".scale")),
                scales=_scale_keys(arrays),
                storage_dtype=storage.dtype,
                params=m * n if r is None else lowrank_params(m, n, r),
            )
        )
        own = TensorRecord(
            storage=form,
            keys=how["keys"],
            rank=r,
            error=err,
            params_after=how["params"],
            note="; ".join(notes) or None,
            plain_error=plain,
            storage_dtype=how["storage_dtype"],
            scales=how["scales"],
            bytes_after=size,
            quant=how.get("quant"),
            macs_after=how["params"],
            output_error=output_error(grams, name, entry.shape, w, approx, weighting, err),
            **common,
        )
    return Candidate(
        name=name,
        shape=tuple(entry.shape),
        dtype=entry.dtype,
        storage_dtype=storage.dtype,
        m=m,
        n=n,
        own=own,
        entry=entry,
        group=group,
        weights=weighting,
        weight_note=weight_note,
        rank_needed=rank_needed,
    ), arrays


def finite_matrix(entry):
    """The entry as a float64 (out, prod(rest)) matrix; NaN or Inf is an InputError naming it."""
    w = entry.load()
    w = w.reshape(w.shape[0], -1)
    if not np.all(np.isfinite(w)):
        raise InputError(
            "holds NaN or Inf; cannot bound a relative error", path=entry.source, tensor=entry.name, shape=entry.shape
        )
    return w


def _planned_form(item, opts, calibration, grams):
    entry, plan = item
    return _own_form(entry, opts, calibration, plan, grams)


def _spectrum(w, weighting):
    return np.linalg.svd(weighting.apply(w), compute_uv=False)


def _why_untouched(bound, kind, opts):
    if kind == "untouched":
        return "untouched: the budget is better spent elsewhere"
    if kind == "groupwise":
        return "dense: the planned group-wise form measured above the bound (kept dense)"
    if opts.bits is not None and bound is not None:
        return (
            f"dense: no {opts.bits}-bit form with a correction saves {opts.min_saving:.0%} of its bytes within "
            "the bound"
        )
    if bound is not None:
        return f"dense: no form saves {opts.min_saving:.0%} of its bytes within the bound"
    return f"dense: the rank saves less than {opts.min_saving:.0%} of its bytes"


def _scale_keys(arrays):
    keys = [k for k in arrays if not k.endswith(".scale")]
    return tuple(f"{k}.scale" if f"{k}.scale" in arrays else None for k in keys)


def _stored(storage, x, what, where):
    try:
        return storage.store(x)
    except ValueError as exc:
        raise InputError(f"{what} {exc}; store them with `--dtype f32` or bf16", **where) from None


def _arrays(key, stored, scale, into):
    into[key] = stored
    if scale is not None:
        into[f"{key}.scale"] = scale
    return into


def _quantized_form(w, storage, expanded, weighting, bound, limit, name, where):
    """The whole matrix at the storage dtype, when it meets the bound and saves enough."""
    size = storage.nbytes(*w.shape)
    if size > limit:
        return []
    try:
        stored, scale = storage.store(w)
    except ValueError:
        return []  # out of the storage dtype's range: low rank may still fit
    approx = expanded(storage.value(stored, scale))
    err = relative_error(w, approx, weighting)
    if not math.isfinite(err) or bound is not None and err > bound:
        return []  # never an error of inf written with exit 0
    plain = err if weighting.kind == "none" else relative_error(w, approx)
    return [(size, "quantized", None, _arrays(f"{name}.q", stored, scale, {}), err, plain, approx)]


def _lowrank_form(w, opts, storage, expanded, weighting, ceiling, plan, name, where):
    """The smallest rank meeting the bound (or the rank asked for), measured on what is written:
    (forms, spectrum, the rank whose expanded product overflowed the original dtype, or None)."""
    m, n = w.shape
    bound = opts.max_error
    # small SVDs run faster on one BLAS thread (and suffer less from a busy machine)
    with _blas_threads(1 if w.size < SMALL_MATRIX else None), input_errors(**where):  # linalg's ValueErrors
        left, right, s = weighted_factors(w, weighting, min(m, n))
    if plan is not None:
        first = plan[1]
    elif bound is not None:
        first = max(1, rank_for_error(s, bound))
    else:
        first = min(opts.rank if opts.rank is not None else rank_for_ratio(m, n, opts.ratio), min(m, n))
    last = min(min(m, n), first + RANK_STEPS) if bound is not None else first
    for r in range(first, last + 1):
        size = storage.lowrank_bytes(m, n, r)
        if size > ceiling:
            break
        lo, lo_scale = _stored(storage, left[:, :r], f"the rank-{r} factors", where)
        ro, ro_scale = _stored(storage, right[:r], f"the rank-{r} factors", where)
        approx = expanded(storage.value(lo, lo_scale) @ storage.value(ro, ro_scale))
        err = relative_error(w, approx, weighting)
        if not math.isfinite(err):  # the product overflows the dtype `cond expand` writes: keep it dense
            return [], s, r
        if bound is None or err <= bound:
            plain = err if weighting.kind == "none" else relative_error(w, approx)
            arrays = _arrays(f"{name}.V", ro, ro_scale, _arrays(f"{name}.U", lo, lo_scale, {}))
            return [(size, "lowrank", r, arrays, err, plain, approx)], s, None
    return [], s, None


def output_error(grams, name, shape, w, approx, weighting, err):
    """The relative output error ||(W - W_hat) X^T||_F / ||W X^T||_F on the calibration inputs, or None."""
    if grams is None or name not in grams:
        return None
    if weighting.kind == "whiten":
        return err
    return relative_error(w, approx, grams.weighting(name, shape))


def _blas_threads(limit):
    """A context limiting BLAS threads to ``limit`` (None: the run's own setting)."""
    if limit is None:
        import contextlib

        return contextlib.nullcontext()
    from cond.threads import blas_limit

    return blas_limit(limit)
