"""Pass 1 of ``cond compress``: every tensor once, in file order, each selected matrix in its
own best form (the smallest rank whose error, measured on what ``cond expand`` gives back,
meets the bound; dense when no rank saves parameters). Untouched tensors are copied byte
for byte. Runs in this process or as one Dask task per matrix."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from cond.commands.compress.report import TensorRecord
from cond.errors import InputError, input_errors
from cond.formats.safetensors_file import numpy_dtype
from cond.linalg.truncated import lowrank_params, rank_for_error, rank_for_ratio, relative_error
from cond.linalg.weighted import FISHER_FLOOR, Weighting, weighted_factors

FLOAT_DTYPES = ("F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2")
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

    @property
    def weighting(self) -> str:
        """The kind of weights (``none``, ``fisher``, ``whiten``)."""
        return self.weights.kind

    @property
    def weight_sides(self) -> tuple:
        """(row weights A, column weights B): which shared basis the weights allow."""
        return self.weights.has_left, self.weights.has_right


def rounder(storage_dtype):
    np_dtype = numpy_dtype(storage_dtype)
    return lambda x: np.asarray(x).astype(np_dtype).astype(np.float64)


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


def first_pass(entries, names, writer, opts, calibration, progress, client=None):
    records, candidates = {}, []
    reasons = [select_reason(entry, opts) for entry in entries]
    for entry, reason in zip(entries, reasons):
        if reason is None and 0 in entry.shape:
            raise InputError("matrix has a zero-size dimension", path=entry.source, tensor=entry.name,
                             shape=entry.shape)
        if reason is None:
            for key in (f"{entry.name}.U", f"{entry.name}.V"):
                if key in names:
                    raise InputError(f"tensor '{key}' would collide with a factor of '{entry.name}'; "
                                     "rename it or --exclude one of them", path=entry.source)
    own_forms = None
    if client is not None:  # one task per matrix, consumed in file order as the writer needs them
        from cond.distributed import ordered_map

        own_forms = ordered_map(client, _own_form, [e for e, r in zip(entries, reasons) if r is None],
                                opts=opts, calibration=calibration)
    for done, (entry, reason) in enumerate(zip(entries, reasons), 1):
        if reason is not None:
            size = math.prod(entry.shape)
            writer.add_bytes(entry.name, entry.dtype, entry.shape, entry.read_raw())
            records[entry.name] = TensorRecord(
                name=entry.name, shape=tuple(entry.shape), dtype=entry.dtype, storage="dense", keys=(entry.name,),
                rank=None, error=None, bound=None, cluster=None, params_before=size, params_after=size, note=reason)
        else:
            candidate, factors = next(own_forms) if own_forms is not None else \
                _own_form(entry, opts, calibration)
            if factors is None:
                writer.add_bytes(entry.name, entry.dtype, entry.shape, entry.read_raw())
            else:
                writer.add_array(f"{entry.name}.U", factors[0])
                writer.add_array(f"{entry.name}.V", factors[1])
            records[entry.name] = candidate.own
            candidates.append(candidate)
        if progress:
            progress("matrices", done, len(entries))
    return records, candidates


def _own_form(entry, opts, calibration):
    """The matrix's best form on its own: (candidate, (U, V) in the storage dtype, or None: dense).
    Runs in this process or as a Dask task (the worker reads the tensor)."""
    w = entry.load()
    w = w.reshape(w.shape[0], -1)
    if not np.all(np.isfinite(w)):
        raise InputError("holds NaN or Inf; cannot bound a relative error", path=entry.source,
                         tensor=entry.name, shape=entry.shape)
    m, n = w.shape
    name = entry.name
    weighting, weight_note = weighting_of(calibration, name, entry.shape)
    storage = opts.dtype or entry.dtype
    np_dtype = numpy_dtype(storage)
    bound = opts.max_error
    expanded = rounder(entry.dtype)  # what `cond expand` writes: the product in the original dtype
    # small SVDs run faster on one BLAS thread (and suffer less from a busy machine)
    with _blas_threads(1 if w.size < SMALL_MATRIX else None), \
            input_errors(path=entry.source, tensor=name, shape=entry.shape):  # linalg's ValueErrors
        left, right, s = weighted_factors(w, weighting, min(m, n))
    if bound is not None:
        first = max(1, rank_for_error(s, bound))
        ranks = range(first, min(min(m, n), first + RANK_STEPS) + 1)
    else:
        r = opts.rank if opts.rank is not None else rank_for_ratio(m, n, opts.ratio)
        ranks = [min(r, min(m, n))]
    chosen = None
    for r in ranks:
        if lowrank_params(m, n, r) >= m * n:
            break
        with np.errstate(over="ignore"):
            lo, ro = left[:, :r].astype(np_dtype), right[:r].astype(np_dtype)
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(ro))):
            peak = max(float(np.max(np.abs(left[:, :r]))), float(np.max(np.abs(right[:r]))))
            raise InputError(f"the rank-{r} factors overflow {storage} (largest entry {peak:.3g}, beyond "
                             f"{float(np.finfo(np_dtype).max):.5g}); store them with `--dtype f32` or bf16",
                             path=entry.source, tensor=name, shape=entry.shape)
        approx = expanded(lo.astype(np.float64) @ ro.astype(np.float64))
        err = relative_error(w, approx, weighting)
        if bound is None or err <= bound:
            plain = err if weighting.kind == "none" else relative_error(w, approx)
            chosen = (r, lo, ro, err, plain)
            break
    notes = [weight_note] if weight_note else []
    factors = None
    if chosen is None:
        notes.insert(0, "dense: no rank saves parameters within the bound" if bound is not None else
                     "dense: the rank saves no parameters")
        own = TensorRecord(name=name, shape=tuple(entry.shape), dtype=entry.dtype, storage="dense", keys=(name,),
                           rank=None, error=0.0, bound=bound, cluster=None, params_before=m * n, params_after=m * n,
                           note="; ".join(notes), plain_error=0.0, weighting=weighting.kind)
    else:
        r, lo, ro, err, plain = chosen
        factors = (lo, ro)
        own = TensorRecord(name=name, shape=tuple(entry.shape), dtype=entry.dtype, storage="lowrank",
                           keys=(f"{name}.U", f"{name}.V"), rank=r, error=err, bound=bound, cluster=None,
                           params_before=m * n, params_after=lowrank_params(m, n, r),
                           note="; ".join(notes) or None, plain_error=plain, weighting=weighting.kind)
    group = ""
    if opts.group_re is not None:
        match = opts.group_re.search(name)
        group = None if match is None else (match.group(1) if match.groups() else match.group(0))
    return Candidate(name=name, shape=tuple(entry.shape), dtype=entry.dtype, storage_dtype=storage, m=m, n=n,
                     own=own, entry=entry, group=group, weights=weighting, weight_note=weight_note), factors


_CONTROLLER = []


def _blas_threads(limit):
    """A context limiting BLAS threads (the controller is built once: it scans the libraries)."""
    if limit is None:
        import contextlib

        return contextlib.nullcontext()
    if not _CONTROLLER:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0].limit(limits=limit, user_api="blas")
