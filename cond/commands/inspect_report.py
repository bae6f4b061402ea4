"""The result of ``cond.inspect`` and its versioned, machine-readable form.

Schema ``cond.inspect/1`` (documented in README.md): a JSON object with
``schema``, ``cond_version``, ``input``, ``options``, ``summary``, ``matrices``
(one flat object per analysed matrix, the same fields as a CSV row) and
``skipped`` (name, source, shape, dtype, reason). Infinite or undefined numbers
are ``null``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

from cond.commands.result import Result, json_safe
from cond.linalg.spectrum import MatrixDiagnostics

SCHEMA = "cond.inspect/1"

# Column order of a matrix row in JSON, JSONL and CSV.
ROW_FIELDS = (
    "name",
    "source",
    "shape",
    "matrix_shape",
    "reshaped",
    "dtype",
    "status",
    "kappa",
    "kappa_lower_bound",
    "sigma_max",
    "sigma_min",
    "storage_limited",
    "numerical_rank",
    "rank_tolerance",
    "stable_rank",
    "effective_rank",
    "energy_rank_90",
    "energy_rank_99",
    "frobenius_norm",
    "zero_fraction",
    "nonfinite_count",
    "alpha",
    "alpha_sigma",
    "alpha_xmin",
    "alpha_ks_distance",
    "alpha_n_tail",
    "henrici",
    "seconds",
    "route",
    "sigma_error",
)


@dataclass(frozen=True)
class MatrixReport:
    """One analysed tensor: where it came from and its diagnostics."""

    name: str
    source: str
    shape: tuple
    dtype: str
    diagnostics: MatrixDiagnostics
    seconds: float

    @property
    def reshaped(self) -> bool:
        return len(self.shape) > 2

    def row(self) -> dict:
        """Flat dict with the keys of :data:`ROW_FIELDS`; inf and NaN become None."""
        d = {f.name: getattr(self.diagnostics, f.name) for f in dataclasses.fields(self.diagnostics)}
        d["matrix_shape"] = list(d.pop("shape"))
        d.update(
            name=self.name,
            source=self.source,
            shape=list(self.shape),
            reshaped=self.reshaped,
            dtype=self.dtype,
            seconds=self.seconds,
        )
        return {k: _finite_or_none(d[k]) for k in ROW_FIELDS}


@dataclass(frozen=True)
class SkippedTensor:
    """A tensor that was not analysed, and why."""

    name: str
    source: str
    shape: tuple
    dtype: str
    reason: str

    def row(self) -> dict:
        return dict(name=self.name, source=self.source, shape=list(self.shape), dtype=self.dtype, reason=self.reason)


@dataclass(frozen=True)
class Summary:
    """Totals over the analysed matrices."""

    matrices: int
    skipped: int
    worst_kappa: Optional[float]
    worst_kappa_name: Optional[str]
    unresolved: int
    storage_limited: int
    nonfinite: int
    log10_spectral_norm_product: Optional[float]
    seconds: float

    @classmethod
    def of(cls, matrices, skipped, seconds) -> "Summary":
        rated = [m for m in matrices if m.diagnostics.kappa is not None]
        worst = max(rated, key=lambda m: m.diagnostics.kappa, default=None)
        norms = [m.diagnostics.sigma_max for m in matrices if m.diagnostics.sigma_max is not None]
        return cls(
            matrices=len(matrices),
            skipped=len(skipped),
            worst_kappa=None if worst is None else worst.diagnostics.kappa,
            worst_kappa_name=None if worst is None else worst.name,
            unresolved=sum(m.diagnostics.status == "unresolved" for m in matrices),
            storage_limited=sum(m.diagnostics.storage_limited for m in matrices),
            nonfinite=sum(m.diagnostics.status == "non-finite" for m in matrices),
            log10_spectral_norm_product=(
                sum(math.log10(s) for s in norms) if norms and all(s > 0 for s in norms) else None
            ),
            seconds=seconds,
        )


@dataclass(frozen=True)
class InspectReport(Result):
    """Everything ``cond inspect`` found in one input."""

    SCHEMA = SCHEMA

    input: str
    matrices: tuple
    skipped: tuple
    summary: Summary
    options: dict
    compressed: Optional[dict] = None  # the manifest, when the input is a cond-lowrank file
    exceeded: Optional[tuple] = None  # with fail_above: the names of the matrices above it
    pictures: tuple = ()  # the files --plot wrote

    @property
    def gate_failed(self) -> bool:
        """Whether ``fail_above`` was given and some matrix exceeds it."""
        return bool(self.exceeded)

    @property
    def seconds(self) -> float:
        return self.summary.seconds

    def to_dict(self) -> dict:
        """The ``cond.inspect/1`` JSON object."""
        doc = self.document(
            summary=dataclasses.asdict(self.summary),
            matrices=[m.row() for m in self.matrices],
            skipped=[s.row() for s in self.skipped],
        )
        if self.compressed is not None:
            doc["compressed"] = json_safe(self.compressed)
        if self.exceeded is not None:
            doc["gate"] = dict(fail_above=self.options.get("fail_above"), exceeded=list(self.exceeded))
        return doc

    def ordered(self, sort="file", top=None) -> list:
        """The matrices in the order ``sort`` gives (file, name, or a number largest first), the
        first ``top`` of them (see :func:`check_sort`)."""
        rows = list(self.matrices)
        if sort == "name":
            rows.sort(key=lambda m: m.name)
        elif sort != "file":

            def value(m):
                v = m.seconds if sort == "seconds" else getattr(m.diagnostics, sort)
                return -math.inf if v is None else v

            rows.sort(key=value, reverse=True)
        return rows[:top] if top else rows

    def above(self, threshold: float) -> list:
        """Matrices whose kappa exceeds ``threshold``; non-finite and all-zero ones always do
        (their kappa is undefined or infinite, so nothing certifies them)."""
        return [m for m in self.matrices if m.diagnostics.kappa is None or m.diagnostics.kappa > threshold]


def _finite_or_none(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def check_sort(sort, top, alpha):
    """``--sort`` is a known key (alpha only when computed) and ``--top`` a positive count."""
    from cond.commands.choices import SORT_KEYS
    from cond.commands.validate import check_choice
    from cond.errors import UsageError

    check_choice("--sort", sort, SORT_KEYS)
    if sort == "alpha" and not alpha:
        raise UsageError("`--sort alpha` needs `--alpha` (alpha is only computed when asked for)")
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
        raise UsageError(f"`--top` must be a positive integer; got {top!r}")
