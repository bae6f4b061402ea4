"""Calibration files (``cond calibrate``'s Grams and Fisher): float32 safetensors keyed by the
checkpoint's tensor names, with ``cond.kind`` (``gram`` or ``fisher``), token, sequence and step
counts, and for Grams the rows each layer saw (``cond.rows``, JSON), in the metadata."""

from __future__ import annotations

import numpy as np


def write_calibration(plan, path, accumulated: dict, metadata: dict):
    """``{name: array}`` as float32 through the run's output ``plan`` (None: a plan of its own
    that replaces ``path``), metadata keys prefixed ``cond.``."""
    from safetensors.numpy import save_file

    from cond.formats.outputs import OutputPlan

    tensors = {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in accumulated.items()}
    own = plan is None
    plan = OutputPlan(force=True) if own else plan
    try:
        if own:
            plan.file(path, "--output")
        with plan.writing(path) as tmp:
            save_file(tensors, tmp, metadata={f"cond.{k}": str(v) for k, v in metadata.items()})
    finally:
        if own:
            plan.close()
