"""``cond sample`` options: validated once into a frozen record (SciPy's ``_iv`` habit)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

from cond.commands.choices import EMITS, SAMPLE_FORMATS, SAMPLE_METHODS, SCORE_MODES
from cond.commands.validate import check_choice, check_seed
from cond.errors import UsageError

DEFAULT_P = {"leverage": 2.0, "root-leverage": 1.0, "lewis": 1.0, "sensitivity": 1.0, "augmented": 1.0, "uniform": 2.0}


@dataclass(frozen=True)
class SampleOptions:
    """A checked sample request. ``scheduler`` is the resolved Dask spec (None: in process)."""

    size: object
    method: str
    p: float
    seed: int
    replacement: bool
    scores: str
    rcond: Optional[float]
    verify: bool
    keep_rows: bool
    scheduler: Optional[str]
    device: str
    output_format: str = "tsv"
    emit: str = "indices"

    def record(self) -> dict:
        """The ``options`` object of ``cond.sample/1``."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "keep_rows"}


def sample_options(
    *,
    size,
    method="leverage",
    p=None,
    seed=0,
    replacement=False,
    scores="exact",
    rcond=None,
    verify=False,
    keep_rows=False,
    scheduler=None,
    device="cpu",
    output_format="tsv",
    emit="indices",
) -> SampleOptions:
    """Check every argument of :func:`cond.sample` against its rule (one-line UsageErrors)."""
    from cond.backends import check_device
    from cond.distributed import scheduler_from

    check_choice("--method", method, SAMPLE_METHODS)
    check_choice("--format", output_format, SAMPLE_FORMATS)
    check_choice("--emit", emit, EMITS)
    seed = check_seed(seed)
    p = DEFAULT_P[method] if p is None else float(p)
    if not p > 0:
        raise UsageError(f"`-p` must be positive; got {p}")
    if method in ("lewis", "sensitivity", "augmented") and p >= 4:
        raise UsageError(
            f"`-p` must be below 4 for {method} (the Lewis-weight iteration does not contract for p >= 4); got {p}"
        )
    if method == "root-leverage" and p > 2:
        raise UsageError(f"root-leverage scores tau^(p/2) bound sensitivities only for p <= 2; got {p}")
    if scores not in SCORE_MODES:
        raise UsageError(f"`--scores` must be one of {', '.join(SCORE_MODES)}; got {scores!r}")
    if scores != "exact" and method not in ("leverage", "root-leverage"):
        raise UsageError(f"`--scores sketch` applies to leverage and root-leverage; {method} needs exact")
    if rcond is not None and not (isinstance(rcond, (int, float)) and 0 <= rcond < 1):
        raise UsageError(
            f"`--rcond` must be in [0, 1): singular values below rcond * sigma_max count as zero; got {rcond}"
        )
    if verify and p != 2:
        raise UsageError(f"`--verify` checks the l2 subspace embedding, so it needs p = 2; got p = {p}")
    if device == "cuda" and scores != "sketch":
        raise UsageError(
            "`--device cuda` computes sketched scores: add `--scores sketch` (exact scores "
            f"and sketch-srht run on the CPU); got `--scores {scores}`"
        )
    device = check_device(device)
    spec = scheduler_from(scheduler)
    if spec is not None and method in ("lewis", "sensitivity", "augmented") and p != 2:
        raise UsageError(
            f"`--scheduler` runs leverage scores (exact or sketched), and {method} only at p = 2 "
            f"(the Lewis iteration at p = {p:g} runs in one process); run it without `--scheduler`"
        )
    if spec is not None and device == "cuda":
        raise UsageError("`--scheduler` and `--device cuda` are either-or: the workers compute on their CPUs")
    return SampleOptions(
        size=size,
        method=method,
        p=p,
        seed=seed,
        replacement=bool(replacement),
        scores=scores,
        rcond=rcond,
        verify=bool(verify),
        keep_rows=bool(keep_rows),
        scheduler=spec,
        device=device,
        output_format=output_format,
        emit=emit,
    )
