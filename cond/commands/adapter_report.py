"""``cond inspect`` of a LoRA adapter: per module, the delta it makes, in factor space.

For each module dW = s L R (:mod:`cond.formats.lora`) the singular values come from the
r x r core (:func:`cond.linalg.factored.factored_svd`): O((m + n) r^2) per module, the
product is never formed. Reported per module: the nominal rank r beside the numerical rank
(values above ``max(m, n) eps |s| ||L||_F ||R||_F``, the factored route's error bound), the
rank the adapter wastes (r less the numerical rank), sigma_max, ||dW||_F (and, with
``base``, relative to the base weight's), the stable and effective ranks and the energy
ranks (90 / 99 % of sum sigma^2). Schema ``cond.adapter/1``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from cond.commands.result import Result, json_safe
from cond.errors import InputError, input_errors

SCHEMA = "cond.adapter/1"
EPS64 = float(np.finfo(np.float64).eps)

ROW_FIELDS = (
    "name",
    "kind",
    "shape",
    "dtype",
    "rank",
    "numerical_rank",
    "wasted_rank",
    "alpha",
    "scale",
    "sigma_max",
    "frobenius_norm",
    "relative_norm",
    "stable_rank",
    "effective_rank",
    "energy_rank_90",
    "energy_rank_99",
    "rank_tolerance",
)


@dataclass(frozen=True)
class ModuleReport:
    """One module's delta; ``row()`` has the keys of :data:`ROW_FIELDS`."""

    name: str
    kind: str
    shape: tuple
    dtype: str
    rank: int
    numerical_rank: int
    alpha: float
    scale: float
    sigma_max: float
    frobenius_norm: float
    relative_norm: Optional[float]
    stable_rank: Optional[float]
    effective_rank: Optional[float]
    energy_rank_90: Optional[int]
    energy_rank_99: Optional[int]
    rank_tolerance: float
    spectrum: Optional[np.ndarray] = field(default=None, repr=False, compare=False)

    @property
    def wasted_rank(self) -> int:
        return self.rank - self.numerical_rank

    def row(self) -> dict:
        """JSON-safe: non-finite numbers are None (as every row cond prints)."""
        return json_safe({k: (list(self.shape) if k == "shape" else getattr(self, k)) for k in ROW_FIELDS})


@dataclass(frozen=True)
class AdapterReport(Result):
    """Every module of one adapter; ``to_dict()`` is the ``cond.adapter/1`` object: the shared
    fields, ``format`` (peft or kohya), ``base``, ``modules`` (rows), ``saved`` (tensors stored
    whole), ``notices``, ``summary`` (modules, nominal and numerical rank totals)."""

    SCHEMA = SCHEMA
    input: str
    format: str
    base: Optional[str]
    modules: tuple
    saved: tuple
    notices: tuple
    options: dict
    seconds: float

    def ordered(self, sort="file", top=None) -> list:
        """The modules in file order, by name, or by a number of theirs (largest first)."""
        rows = list(self.modules)
        if sort == "name":
            rows.sort(key=lambda m: m.name)
        elif sort != "file":
            if sort not in ("sigma_max", "stable_rank", "effective_rank", "frobenius_norm"):
                from cond.errors import UsageError

                raise UsageError(
                    f"`--sort {sort}` does not apply to an adapter; use file, name, sigma_max, "
                    "stable_rank, effective_rank or frobenius_norm"
                )
            rows.sort(key=lambda m: -math.inf if getattr(m, sort) is None else getattr(m, sort), reverse=True)
        return rows[:top] if top else rows

    def to_dict(self) -> dict:
        nominal = sum(m.rank for m in self.modules)
        numerical = sum(m.numerical_rank for m in self.modules)
        return self.document(
            format=self.format,
            base=self.base,
            modules=[m.row() for m in self.modules],
            saved=list(self.saved),
            notices=list(self.notices),
            summary=dict(
                modules=len(self.modules),
                nominal_rank=nominal,
                numerical_rank=numerical,
                wasted_rank=nominal - numerical,
            ),
        )


def inspect_adapter(source, *, base=None, include=None, keep_spectra=False, progress=None) -> AdapterReport:
    """Diagnose every module of a LoRA adapter (a PEFT folder or a kohya file) in factor space.

    Parameters
    ----------
    source : str
        The adapter.
    base : str, optional
        The base checkpoint (file, index or folder): each delta's norm is then also given
        relative to its base weight, whose shape must match.
    include : str, optional
        Regular expression on module names (``re.search``).
    keep_spectra : bool
        Keep each module's singular values in ``spectrum``.
    progress : callable, optional
        ``progress(done, total, name)`` per module.

    Returns
    -------
    AdapterReport
    """
    from cond.commands.choices import regex_option
    from cond.formats.lora import open_adapter

    started = time.perf_counter()
    pattern = regex_option("--include", include)
    adapter = open_adapter(source)
    modules = [m for m in adapter.modules if pattern is None or pattern.search(m.name)]
    base_norms = _base_norms(base, modules) if base is not None else {}
    reports = []
    for done, module in enumerate(modules, 1):
        reports.append(_module_report(module, adapter.path, base_norms.get(module.name), keep_spectra))
        if progress is not None:
            progress(done, len(modules), module.name)
    return AdapterReport(
        str(source),
        adapter.format,
        None if base is None else str(base),
        tuple(reports),
        adapter.saved,
        adapter.notices,
        dict(include=include, base=None if base is None else str(base)),
        time.perf_counter() - started,
    )


def _module_report(module, path, base_norm, keep_spectra):
    from cond.linalg.factored import factored_svd, frobenius

    left, right = module.factors()
    m, n = module.shape
    with input_errors(path=path, tensor=module.name, shape=module.shape):
        s = factored_svd(left, right, module.scale, compute_uv=False)
    tolerance = max(m, n) * EPS64 * abs(module.scale) * frobenius(left) * frobenius(right)
    return _spectrum_report(
        module.name,
        module.kind,
        module.shape,
        module.dtype,
        module.rank,
        module.alpha,
        module.scale,
        s,
        tolerance,
        base_norm,
        keep_spectra,
    )


def _spectrum_report(name, kind, shape, dtype, rank, alpha, scale, s, tolerance, base_norm, keep_spectra):
    from cond.linalg.spectrum import rank_measures

    frob = float(math.sqrt(np.sum((s / s[0]) ** 2)) * s[0]) if len(s) and s[0] > 0 else 0.0
    measures = rank_measures(s) if frob > 0 else dict(effective_rank=None, energy_rank_90=None, energy_rank_99=None)
    return ModuleReport(
        name,
        kind,
        tuple(shape),
        dtype,
        rank,
        int(np.count_nonzero(s > tolerance)),
        alpha,
        scale,
        float(s[0]) if len(s) else 0.0,
        frob,
        None if base_norm is None else (frob / base_norm if base_norm > 0 else math.inf),
        (frob / s[0]) ** 2 if frob > 0 else None,
        **measures,
        rank_tolerance=float(tolerance),
        spectrum=s if keep_spectra else None,
    )


def inspect_delta(finetuned, base, *, include=None, keep_spectra=False, progress=None) -> AdapterReport:
    """Diagnose the difference a full fine-tune makes: per changed 2-D weight, dW = W_ft - W_base in
    float64 from the stored values (names aligned across a wrapper's prefix), its singular values
    by LAPACK, the same rows as an adapter's (``rank`` is min(m, n), the rank nothing limits;
    ``relative_norm`` is ||dW|| / ||W_base||). Tensors that are not matrices, or that differ in
    shape, are listed in ``notices``."""
    from cond.commands.adapter_extract import _classify
    from cond.commands.choices import regex_option
    from cond.formats import open_entries
    from cond.torch.names import align, mapper

    started = time.perf_counter()
    pattern = regex_option("--include", include)
    with open_entries(finetuned) as ft_entries, open_entries(base) as base_entries:
        ft = {e.name: e for e in ft_entries}
        theirs = {e.name: e for e in base_entries}
        plan = _classify(ft, theirs, mapper(*align(ft, theirs)), pattern)
        if not plan["factored"] and not plan["whole"] and plan["left_out"]:
            raise InputError(
                f"no tensor matches the base by name and shape ({len(plan['left_out'])} left out): "
                "another architecture, or not its base?",
                path=str(finetuned),
            )
        reports = []
        for done, (name, base_name) in enumerate(plan["factored"], 1):
            w = theirs[base_name].load().astype(np.float64)
            dw = ft[name].load().astype(np.float64) - w
            with input_errors(path=str(finetuned), tensor=name, shape=dw.shape):
                s = np.linalg.svd(dw, compute_uv=False)
            m, n = dw.shape
            tolerance = max(m, n) * EPS64 * (float(s[0]) if len(s) else 0.0)
            reports.append(
                _spectrum_report(
                    base_name[: -len(".weight")],
                    "delta",
                    dw.shape,
                    ft[name].dtype,
                    min(m, n),
                    None,
                    None,
                    s,
                    tolerance,
                    float(np.linalg.norm(w)),
                    keep_spectra,
                )
            )
            if progress is not None:
                progress(done, len(plan["factored"]), base_name)
    notices = tuple(f"{key}: {why}" for key, why in plan["whole_reasons"]) + tuple(
        f"{key}: {why}" for key, why in plan["left_out"]
    )
    return AdapterReport(
        str(finetuned),
        "delta",
        str(base),
        tuple(reports),
        (),
        notices,
        dict(include=include, base=str(base)),
        time.perf_counter() - started,
    )


def _base_norms(base, modules):
    """||W||_F of each module's base weight (names aligned as cond.torch aligns them), shapes checked."""
    from cond.formats import open_entries
    from cond.torch.names import align, mapper

    with open_entries(base) as entries:
        entries = {e.name: e for e in entries}
    wanted = {m.name: f"{m.name}.weight" for m in modules}
    to_theirs = mapper(*align(wanted.values(), entries))
    norms = {}
    for module in modules:
        name = to_theirs(wanted[module.name])
        entry = entries.get(name)
        if entry is None:
            raise InputError(
                f"has no weight for the adapter's module '{module.name}' (looked for '{name}'); "
                "is it the adapter's base model?",
                path=str(base),
            )
        shape = (int(entry.shape[0]), int(np.prod(entry.shape[1:])))
        if shape != tuple(module.shape):
            raise InputError(
                f"weight '{name}' is {'x'.join(map(str, shape))} but the adapter's delta is "
                f"{'x'.join(map(str, module.shape))}: another architecture?",
                path=str(base),
            )
        w = entry.load()
        norms[module.name] = float(np.linalg.norm(w))
    return norms
