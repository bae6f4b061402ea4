"""What ``cond compress`` did, per tensor, per cluster and in total; schema ``cond.compress/1``."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

SCHEMA = "cond.compress/1"

TENSOR_FIELDS = ("name", "shape", "dtype", "storage", "rank", "error", "plain_error", "bound", "weighting",
                 "cluster", "params_before", "params_after", "note")


@dataclass(frozen=True)
class TensorRecord:
    """One original tensor. ``params_after`` counts the tensor's own factors; a cluster's
    shared basis is counted in its :class:`ClusterRecord`.

    ``error`` is the quantity the bound applies to: the relative Frobenius error,
    or with Fisher weights or whitening the weighted one (||A (W - W_hat) B||_F /
    ||A W B||_F; for whitening the relative output error on the calibration
    inputs). ``plain_error`` is ||W - W_hat||_F / ||W||_F either way, and
    ``weighting`` says which weights were used (``none`` for plain SVD).
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

    def row(self) -> dict:
        d = {k: getattr(self, k) for k in TENSOR_FIELDS}
        d["shape"] = list(self.shape)
        return d

    def manifest_entry(self) -> dict:
        return dict(name=self.name, shape=list(self.shape), dtype=self.dtype, storage=self.storage,
                    keys=list(self.keys), rank=self.rank, bound=self.bound, error=self.error,
                    plain_error=self.plain_error, weighting=self.weighting, cluster=self.cluster)


@dataclass(frozen=True)
class ClusterRecord:
    id: int
    axis: str
    members: tuple
    rank: int
    key: str
    params: int

    def row(self) -> dict:
        d = dataclasses.asdict(self)
        d["members"] = list(self.members)
        return d


@dataclass(frozen=True)
class CompressReport:
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

    def to_dict(self) -> dict:
        from cond._version import __version__

        counts = {s: sum(t.storage == s for t in self.tensors) for s in ("dense", "lowrank", "cluster")}
        return dict(
            schema=SCHEMA,
            cond_version=__version__,
            input=self.input,
            output=self.output,
            options=dict(self.options),
            method=self.method,
            unweighted=list(self.unweighted),
            totals=dict(params_before=self.params_before, params_after=self.params_after,
                        bytes_before=self.bytes_before, bytes_after=self.bytes_after,
                        compression_ratio=self.compression_ratio,
                        param_ratio=self.params_before / max(self.params_after, 1),
                        worst_error=self.worst_error, seconds=self.seconds, **counts,
                        clusters=len(self.clusters), nothing_compressed=self.nothing_compressed),
            tensors=[t.row() for t in self.tensors],
            clusters=[c.row() for c in self.clusters],
        )
