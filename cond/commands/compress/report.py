"""What ``cond compress`` did, per tensor, per cluster and in total; schema ``cond.compress/3`` (``/2`` plus the group-wise
storage ``groupwise``, its ``bits`` and ``group`` per tensor and their count in the totals)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

from cond.commands.result import Result

SCHEMA = "cond.compress/3"

TENSOR_FIELDS = (
    "name",
    "shape",
    "dtype",
    "storage",
    "storage_dtype",
    "bits",
    "group",
    "rank",
    "error",
    "plain_error",
    "output_error",
    "bound",
    "weighting",
    "cluster",
    "params_before",
    "params_after",
    "bytes_before",
    "bytes_after",
    "macs_before",
    "macs_after",
    "note",
)


@dataclass(frozen=True)
class TensorRecord:
    """One original tensor. ``params_after`` counts the tensor's own factors; a cluster's
    shared basis is counted in its :class:`ClusterRecord`.

    ``error`` is the quantity the bound applies to: the relative Frobenius error,
    or with Fisher weights or whitening the weighted one (||A (W - W_hat) B||_F /
    ||A W B||_F; for whitening the relative output error on the calibration
    inputs). ``plain_error`` is ||W - W_hat||_F / ||W||_F either way, and
    ``weighting`` says which weights were used (``none`` for plain SVD).
    ``output_error`` is ||(W - W_hat) X^T||_F / ||W X^T||_F on the calibration inputs
    of ``--activations`` (None without them). ``storage`` is ``dense`` (the original
    bytes), ``quantized`` (the whole matrix at the storage dtype), ``lowrank`` or
    ``cluster``; ``scales`` names each key's int8 row scales (or None).
    ``bytes_*`` count what the file holds for the tensor (a cluster's shared basis
    is in its ClusterRecord), ``macs_*`` the multiply-adds of W x for one input
    vector: m n dense, r (m + n) factored (None for tensors that are not matrices
    cond compresses).
    """

    name: str
    shape: tuple
    dtype: str
    storage: str
    keys: tuple
    rank: Optional[int]
    error: Optional[float]
    bound: Optional[float]
    cluster: Optional[int]
    params_before: int
    params_after: int
    note: Optional[str] = None
    plain_error: Optional[float] = None
    weighting: str = "none"
    storage_dtype: Optional[str] = None
    scales: tuple = ()
    bytes_before: int = 0
    bytes_after: int = 0
    macs_before: Optional[int] = None
    macs_after: Optional[int] = None
    output_error: Optional[float] = None
    quant: Optional[dict] = None  # group-wise codes: bits, group, symmetric, rounding, scales and zeros keys

    def row(self) -> dict:
        d = {k: getattr(self, k) for k in TENSOR_FIELDS if k not in ("bits", "group")}
        d["bits"] = self.quant["bits"] if self.quant else None
        d["group"] = self.quant["group"] if self.quant else None
        d["shape"] = list(self.shape)
        return d

    def manifest_entry(self) -> dict:
        return dict(
            name=self.name,
            shape=list(self.shape),
            dtype=self.dtype,
            storage=self.storage,
            keys=list(self.keys),
            scales=list(self.scales) or [None] * len(self.keys),
            storage_dtype=self.storage_dtype,
            rank=self.rank,
            bound=self.bound,
            error=self.error,
            plain_error=self.plain_error,
            output_error=self.output_error,
            weighting=self.weighting,
            cluster=self.cluster,
            bytes=self.bytes_after,
            macs=self.macs_after,
            **({"quant": self.quant} if self.quant else {}),
        )


@dataclass(frozen=True)
class ClusterRecord:
    id: int
    axis: str
    members: tuple
    rank: int
    key: str
    params: int
    bytes: int = 0
    scale: Optional[str] = None

    def row(self) -> dict:
        d = dataclasses.asdict(self)
        d["members"] = list(self.members)
        return d


@dataclass(frozen=True)
class CompressReport(Result):
    SCHEMA = SCHEMA
    input: str
    output: str
    options: dict
    tensors: tuple
    clusters: tuple
    params_before: int
    params_after: int
    bytes_before: int
    bytes_after: int
    seconds: float
    method: str = "svd"
    unweighted: tuple = ()
    budget: Optional[dict] = None  # asked, spent (measured), unit
    cluster_summary: Optional[dict] = None  # seconds, pools, proven (pools skipped by the provable test)

    @property
    def compression_ratio(self) -> float:
        return self.bytes_before / self.bytes_after if self.bytes_after else math.inf

    @property
    def worst_error(self) -> Optional[float]:
        errors = [t.error for t in self.tensors if t.error is not None]
        return max(errors) if errors else None

    @property
    def nothing_compressed(self) -> Optional[str]:
        """Why no matrix was factored (the reasons and how many each), or None when one was."""
        if any(t.storage != "dense" for t in self.tensors):
            return None
        if not self.tensors:
            return "the checkpoint holds no tensors"
        reasons = {}
        for t in self.tensors:
            reason = (t.note or "kept dense").split(";")[0]
            reasons[reason] = reasons.get(reason, 0) + 1
        return "; ".join(f"{count} {reason}" for reason, count in reasons.items())

    def matrix_totals(self) -> dict:
        """Bytes and multiply-adds of the compressed matrices (the selected ones), before and after;
        a cluster's shared basis counts once in bytes and with every member in multiply-adds."""
        chosen = [t for t in self.tensors if t.macs_before is not None]
        shared = sum(c.bytes for c in self.clusters)
        errors = [t.output_error for t in chosen if t.output_error is not None]
        return dict(
            matrices=len(chosen),
            matrix_bytes_before=sum(t.bytes_before for t in chosen),
            matrix_bytes_after=sum(t.bytes_after for t in chosen) + shared,
            macs_before=sum(t.macs_before for t in chosen),
            macs_after=sum(t.macs_after for t in chosen),
            mean_output_error=sum(errors) / len(errors) if errors else None,
            worst_output_error=max(errors) if errors else None,
        )

    def to_dict(self) -> dict:
        counts = {
            s: sum(t.storage == s for t in self.tensors)
            for s in ("dense", "quantized", "groupwise", "lowrank", "cluster")
        }
        return self.document(
            output=self.output,
            method=self.method,
            unweighted=list(self.unweighted),
            totals=dict(
                params_before=self.params_before,
                params_after=self.params_after,
                bytes_before=self.bytes_before,
                bytes_after=self.bytes_after,
                compression_ratio=self.compression_ratio,
                param_ratio=self.params_before / max(self.params_after, 1),
                worst_error=self.worst_error,
                seconds=self.seconds,
                **counts,
                clusters=len(self.clusters),
                nothing_compressed=self.nothing_compressed,
                **self.matrix_totals(),
                budget=self.budget,
                clustering=self.cluster_summary,
            ),
            tensors=[t.row() for t in self.tensors],
            clusters=[c.row() for c in self.clusters],
        )
