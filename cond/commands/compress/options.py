"""``cond compress`` options: validated once (SciPy's ``_iv`` habit) into a frozen record.

The allowed values live in :mod:`cond.commands.choices`, which ``cond --help`` can read
without importing numpy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

from cond.commands.choices import (
    AXES,
    ERROR_SCOPES,
    ESTIMATORS,
    FISHER_AXES,
    METHODS,
    ROUNDINGS,
    STORAGE_DTYPES,
    regex_option,
)
from cond.commands.compress.groupwise_form import QuantSettings
from cond.commands.validate import check_budgets, check_seed, refuse_unused
from cond.errors import UsageError


@dataclass(frozen=True)
class CompressOptions:
    """Everything a compress run was asked for, checked. ``record()`` is what the manifest keeps."""

    max_error: Optional[float]
    rank: Optional[int]
    ratio: Optional[float]
    include: Optional[str]
    exclude: Optional[str]
    seed: int
    min_size: int
    cluster: bool
    estimator: str
    patience: int
    axis: str
    group: Optional[str]
    error_scope: str
    dtype: Optional[str]  # the storage dtype of the factors (a safetensors name), None: each tensor's own
    max_pool_bytes: int
    method: str
    fisher_axis: Optional[str]
    budget: Optional[float] = None  # share of the selected matrices' parameters (or bytes) kept
    budget_unit: str = "params"  # "params" or "bytes"
    min_saving: float = 0.05
    allow_slower: bool = False
    bits: Optional[int] = None  # group-wise codes at this width for every matrix (--dtype int2 .. int7)
    group_size: Optional[int] = None
    correction_rank: Optional[int] = None
    all_forms: bool = False  # --budget-bytes without --dtype: every form competes
    quant: QuantSettings = field(default_factory=QuantSettings)
    include_re: Optional[re.Pattern] = field(default=None, compare=False, repr=False)
    exclude_re: Optional[re.Pattern] = field(default=None, compare=False, repr=False)
    group_re: Optional[re.Pattern] = field(default=None, compare=False, repr=False)

    def record(self) -> dict:
        """The options as the manifest and the report record them (no compiled patterns)."""
        return dict(
            max_error=self.max_error,
            rank=self.rank,
            ratio=self.ratio,
            include=self.include,
            exclude=self.exclude,
            seed=self.seed,
            min_size=self.min_size,
            cluster=self.cluster,
            estimator=self.estimator,
            patience=self.patience,
            axis=self.axis,
            group=self.group,
            error_scope=self.error_scope,
            dtype=self.dtype,
            max_pool_bytes=self.max_pool_bytes,
            method=self.method,
            fisher_axis=self.fisher_axis,
            budget=self.budget,
            budget_unit=self.budget_unit,
            min_saving=self.min_saving,
            allow_slower=self.allow_slower,
            bits=self.bits,
            group_size=self.group_size,
            correction_rank=self.correction_rank,
            all_forms=self.all_forms,
            rounding=self.quant.rounding if self.grouped else None,
            act_order=self.quant.act_order,
            damp=self.quant.damp,
            symmetric=self.quant.symmetric,
            correction_dtype=self.quant.correction_dtype,
            preserve=self.quant.preserve,
            rotate=self.quant.rotate,
        )

    @property
    def grouped(self) -> bool:
        """Whether group-wise forms are made (uniform bits, or every form under a byte budget)."""
        return self.bits is not None or self.all_forms


def compress_options(
    *,
    max_error=None,
    rank=None,
    ratio=None,
    include=None,
    exclude=None,
    min_size=4096,
    cluster=None,
    estimator="incremental",
    patience=8,
    axis="auto",
    group=None,
    error_scope="matrix",
    dtype=None,
    seed=0,
    max_pool_bytes=2**30,
    method="svd",
    fisher=None,
    fisher_axis="in",
    activations=None,
    budget=None,
    budget_bytes=None,
    min_saving=0.05,
    allow_slower=False,
    group_size=None,
    rounding="auto",
    act_order=None,
    damp=0.01,
    symmetric=False,
    correction_rank=None,
    correction_dtype=None,
    preserve=False,
    rotate=True,
) -> CompressOptions:
    """Check every argument of :func:`cond.compress` against its rule (one-line UsageErrors).

    ``cluster``: None clusters when ``max_error`` is given (the default), True insists (and
    needs ``max_error``), False never clusters. The clustering options are refused when no
    clustering runs, as is every option that would do nothing.
    """
    bits = _bits(dtype, group_size)
    sizes = [
        n
        for n, v in (("--rank", rank), ("--ratio", ratio), ("--budget", budget), ("--budget-bytes", budget_bytes))
        if v is not None
    ]
    if bits is not None and sizes and sizes[0] != "--budget-bytes":
        raise UsageError(
            f"`--dtype int{bits}` stores every matrix as {bits}-bit groups; `{sizes[0]}` does not "
            "apply (give `--max-error`, `--correction-rank` or `--budget-bytes`)"
        )
    if len(sizes) > 1 or (not sizes and max_error is None and bits is None):
        raise UsageError(
            f"give one of `--max-error`, `--rank`, `--ratio`, `--budget`, `--budget-bytes` "
            f"(`--max-error` may join a budget); got {', '.join(sizes) or 'none'}"
        )
    if max_error is not None and sizes and sizes[0] in ("--rank", "--ratio"):
        raise UsageError(
            f"`--max-error` and `{sizes[0]}` both fix each matrix's rank; give exactly one "
            "of them (a budget may be combined with `--max-error`)"
        )
    check_budgets(budget, budget_bytes)
    if not 0 <= min_saving < 1:
        raise UsageError(f"`--min-saving` must be in [0, 1); got {min_saving}")
    if max_error is not None and not 0 < max_error < 1:
        raise UsageError(f"`--max-error` must be in (0, 1); got {max_error}. Use `--rank` for a fixed rank")
    if rank is not None and (not isinstance(rank, int) or rank < 1):
        raise UsageError(f"`--rank` must be a positive integer; got {rank}")
    if ratio is not None and not 0 < ratio <= 1:
        raise UsageError(f"`--ratio` must be in (0, 1]; got {ratio}")
    for flag, value, allowed in (
        ("--estimator", estimator, ESTIMATORS),
        ("--axis", axis, AXES),
        ("--error-scope", error_scope, ERROR_SCOPES),
        ("--method", method, METHODS),
        ("--fisher-axis", fisher_axis, FISHER_AXES),
    ):
        if value not in allowed:
            raise UsageError(f"`{flag}` must be one of {', '.join(allowed)}; got {value!r}")
    if not isinstance(patience, int) or patience < 1:
        raise UsageError(f"`--patience` must be a positive integer; got {patience}")
    if min_size < 0:
        raise UsageError(f"`--min-size` must be >= 0; got {min_size}")
    storage = None
    if dtype is not None and bits is None:
        storage = STORAGE_DTYPES.get(str(dtype).lower())
    all_forms = budget_bytes is not None and dtype is None
    quant = _quant_settings(
        bits is not None or all_forms,
        rounding,
        act_order,
        damp,
        symmetric,
        group_size,
        correction_rank,
        correction_dtype,
        preserve,
        activations,
        bits is not None,
        rotate,
        check_seed(seed),
    )
    _check_method(method, fisher, fisher_axis, activations, budget is not None or budget_bytes is not None)
    seed = check_seed(seed)
    if cluster and max_error is None:
        raise UsageError(f"`--cluster` shares bases within a bound: it needs `--max-error`; got {sizes[0]}")
    if cluster and (bits is not None or all_forms):
        raise UsageError(
            "`--cluster` shares low-rank bases; group-wise forms (`--dtype int2` .. `int7`, or "
            "`--budget-bytes` without `--dtype`) do not cluster: drop `--cluster`"
        )
    clustering = cluster is not False and max_error is not None and bits is None and not all_forms
    if not clustering:
        refuse_unused(
            {
                "--estimator": estimator != "incremental",
                "--patience": patience != 8,
                "--axis": axis != "auto",
                "--group": group is not None,
                "--error-scope": error_scope != "matrix",
                "--allow-slower": bool(allow_slower),
            },
            "to clustering, which runs with `--max-error` and without `--no-cluster`",
        )
    patterns = {
        flag: regex_option(flag, value)
        for flag, value in (("--include", include), ("--exclude", exclude), ("--group", group))
    }
    return CompressOptions(
        max_error=max_error,
        rank=rank,
        ratio=ratio,
        include=include,
        exclude=exclude,
        seed=seed,
        min_size=int(min_size),
        cluster=clustering,
        estimator=estimator,
        patience=patience,
        axis=axis,
        group=group,
        error_scope=error_scope,
        dtype=storage,
        max_pool_bytes=int(max_pool_bytes),
        method=method,
        fisher_axis=fisher_axis if method == "fisher" else None,
        budget=budget if budget is not None else budget_bytes,
        budget_unit="bytes" if budget_bytes is not None else "params",
        min_saving=float(min_saving),
        allow_slower=bool(allow_slower),
        bits=bits,
        group_size=group_size,
        correction_rank=correction_rank,
        all_forms=all_forms,
        quant=quant,
        include_re=patterns["--include"],
        exclude_re=patterns["--exclude"],
        group_re=patterns["--group"],
    )


def _check_method(method, fisher, fisher_axis, activations, budgeted=False):
    if method == "fisher" and fisher is None:
        raise UsageError("`--method fisher` needs `--fisher FILE` (accumulated squared gradients per weight)")
    if method == "whiten" and activations is None:
        raise UsageError("`--method whiten` needs `--activations FILE` (input Gram matrices per weight)")
    if fisher is not None and method == "whiten" and not budgeted:
        raise UsageError(
            "with `--method whiten`, `--fisher` gives the layer sensitivities of a budget; "
            "add `--budget` or `--budget-bytes`"
        )
    if fisher is not None and method not in ("fisher", "whiten"):
        raise UsageError(f"`--fisher` is given but `--method` is {method}; add `--method fisher`")
    if fisher_axis != "in" and method != "fisher":
        raise UsageError(f"`--fisher-axis` applies to `--method fisher`; got `--method {method}`")
    # with svd or fisher, --activations only measures each matrix's output error (the function report)


def _bits(dtype, group_size):
    """The width of group-wise codes asked for: ``int2`` .. ``int7``, or ``int8`` with a group size."""
    if dtype is None:
        return None
    text = str(dtype).lower()
    match = re.fullmatch(r"(?:int|i)([2-8])", text)
    if text not in STORAGE_DTYPES and match is None:
        raise UsageError(
            f"`--dtype` must be one of f64, f32, f16, bf16, int8 (rows), or int2 .. int7 (group-wise); got {dtype!r}"
        )
    if match is None or (match.group(1) == "8" and group_size is None):
        return None
    return int(match.group(1))


def _quant_settings(
    grouped,
    rounding,
    act_order,
    damp,
    symmetric,
    group_size,
    correction_rank,
    correction_dtype,
    preserve,
    activations,
    uniform,
    rotate,
    seed,
):
    """The group-wise options, checked; each refused when no group-wise form is made. ``act_order``
    None: on with GPTQ (it lowered the error on MiniLM), off otherwise."""
    if not grouped:
        refuse_unused(
            {
                "--group-size": group_size is not None,
                "--rounding": rounding != "auto",
                "--act-order": act_order is not None,
                "--damp": damp != 0.01,
                "--symmetric": bool(symmetric),
                "--no-rotate": not rotate,
                "--correction-rank": correction_rank is not None,
                "--correction-dtype": correction_dtype is not None,
                "--preserve": bool(preserve),
            },
            "to group-wise forms: give `--dtype int2` .. `int7`, or `--budget-bytes` without `--dtype`",
        )
        return QuantSettings()
    if rounding not in ROUNDINGS:
        raise UsageError(f"`--rounding` must be one of {', '.join(ROUNDINGS)}; got {rounding!r}")
    if rounding == "gptq" and activations is None:
        raise UsageError(
            "`--rounding gptq` needs the layers' input Grams: add `--activations FILE` (cond calibrate writes one)"
        )
    resolved = "gptq" if rounding == "gptq" or (rounding == "auto" and activations is not None) else "nearest"
    if act_order is not None and resolved != "gptq":
        raise UsageError("`--act-order` orders GPTQ's columns; it needs `--activations` (GPTQ rounding)")
    if not (isinstance(damp, (int, float)) and 0 < damp <= 1):
        raise UsageError(
            f"`--damp` must be in (0, 1] (GPTQ's damping, relative to the mean diagonal of the Gram); got {damp}"
        )
    if damp != 0.01 and resolved != "gptq":
        raise UsageError("`--damp` applies to GPTQ rounding, which needs `--activations`")
    from cond.linalg.groupwise import GROUP_SIZES

    if group_size is not None and group_size not in GROUP_SIZES:
        raise UsageError(f"`--group-size` must be one of {', '.join(map(str, GROUP_SIZES))}; got {group_size}")
    if correction_rank is not None:
        if not uniform:
            raise UsageError(
                "`--correction-rank` fixes the correction of `--dtype int2` .. `int7`; under "
                "`--budget-bytes` the allocator chooses each matrix's rank"
            )
        if not isinstance(correction_rank, int) or isinstance(correction_rank, bool) or correction_rank < 0:
            raise UsageError(f"`--correction-rank` must be a non-negative integer; got {correction_rank}")
    factor_dtype = "F16"
    if correction_dtype is not None:
        factor_dtype = STORAGE_DTYPES.get(str(correction_dtype).lower())
        if factor_dtype is None:
            raise UsageError(f"`--correction-dtype` must be one of f16, bf16, f32, int8; got {correction_dtype!r}")
    if preserve and not uniform:
        raise UsageError(
            "`--preserve` applies at a uniform width (`--dtype int2` .. `int7`); the budget "
            "predicts corrections of the rounding residual"
        )
    if preserve and not correction_rank:
        raise UsageError("`--preserve` keeps the top directions before rounding: give `--correction-rank` > 0")
    act_order = resolved == "gptq" if act_order is None else bool(act_order)
    return QuantSettings(
        rounding=resolved,
        act_order=act_order,
        damp=float(damp),
        symmetric=bool(symmetric),
        correction_dtype=factor_dtype,
        preserve=bool(preserve),
        rotate=bool(rotate),
        seed=seed,
    )
