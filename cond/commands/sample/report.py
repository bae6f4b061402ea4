"""What ``cond sample`` drew, as a frozen result; schema ``cond.sample/1``.

``to_dict()`` is the JSON object: ``schema``, ``cond_version``, ``input``, ``header``
(method, p, n, d, rank, expected and actual size, seed, ... as in the text output's
``#`` line), ``design_names``, ``target_name``, ``rows`` (one object per kept row:
``index``, ``weight``, ``scale``, ``prob`` and with replacement ``count``) and
``verify`` when asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from cond.commands.result import Result

SCHEMA = "cond.sample/1"


@dataclass(frozen=True)
class SampleResult(Result):
    """The sample: row indices (0-based), loss weights, row multipliers, probabilities.

    ``scores`` (every row's), ``rows`` and ``target`` (the kept rows scaled, with
    ``keep_rows``) are arrays; ``verify`` holds the checks of ``verify=True``.
    """

    header: dict
    indices: np.ndarray
    weights: np.ndarray
    scales: np.ndarray
    probs: np.ndarray
    counts: Optional[np.ndarray] = None
    scores: Optional[np.ndarray] = field(default=None, repr=False, compare=False)
    rows: Optional[np.ndarray] = field(default=None, repr=False, compare=False)
    target: Optional[np.ndarray] = field(default=None, repr=False, compare=False)
    design_names: tuple = ()
    target_name: Optional[str] = None
    verify: Optional[dict] = None
    seconds: float = 0.0
    input: str = ""
    output: Optional[str] = None
    options: dict = field(default_factory=dict)

    SCHEMA = SCHEMA

    def to_dict(self) -> dict:
        """The ``cond.sample/1`` JSON object."""
        rows = [
            dict(index=int(i), weight=float(w), scale=float(s), prob=float(q))
            for i, w, s, q in zip(self.indices, self.weights, self.scales, self.probs)
        ]
        if self.counts is not None:
            for row, c in zip(rows, self.counts):
                row["count"] = int(c)
        extra = {} if self.verify is None else dict(verify=dict(self.verify))
        return self.document(
            output=self.output,
            header=dict(self.header),
            design_names=list(self.design_names),
            target_name=self.target_name,
            rows=rows,
            **extra,
        )
