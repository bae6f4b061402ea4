"""Every public function with every kind of source: the kinds it takes give the right answer
(checked against LAPACK on the same values), the others are refused in one line that names
the kind and never prints the values (the table in README.md and cond/formats/sources.py)."""

import io
import os
import sys

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import save_file

import cond
from cond.errors import CondError, UsageError
from cond.formats.sources import TAKES

MARK = 123.456789  # a value that must never appear in an error message
KINDS = ("path", "stdin", "array", "dict", "dataframe")


def _design():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((80, 4))
    x[0, 0] = MARK
    return x


def _source(kind, tmp_path, monkeypatch, command):
    x = _design()
    if kind == "path":
        if command in ("compress", "expand"):
            path = tmp_path / "m.safetensors"
            save_file({"w": x.astype(np.float32)}, str(path))
            if command == "expand":
                out = tmp_path / "c.safetensors"
                cond.compress(str(path), str(out), rank=2, min_size=1)
                return str(out)
            return str(path)
        if command == "calibrate":
            return str(tmp_path)  # a folder without config.json: taken, then refused by the reader
        np.save(tmp_path / "x.npy", x)
        return str(tmp_path / "x.npy")
    if kind == "stdin":
        text = "".join(",".join(repr(float(v)) for v in row) + "\n" for row in x)
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
        return "-"
    if kind == "array":
        return x
    if kind == "dict":
        return {"w": x}
    return pd.DataFrame(x, columns=["a", "b", "c", "d"])


def _call(command, source, tmp_path, kind):
    text = {"input_format": "csv", "header": False} if kind == "stdin" else {}
    if command == "inspect":
        return cond.inspect(source, workers=1, **text)
    if command == "compress":
        return cond.compress(source, str(tmp_path / "out.safetensors"), rank=2, min_size=1)
    if command == "expand":
        return cond.expand(source, str(tmp_path / "dense"))
    if command == "sample":
        return cond.sample(source, size=20, **text)
    if command == "dedup":
        return cond.dedup(source, **text)
    if command == "collinearity":
        return cond.collinearity(source, **text)
    return cond.calibrate(source, str(tmp_path / "t.txt"), str(tmp_path / "g.safetensors"))


def _check(command, result, kind):
    x = _design()
    s = np.linalg.svd(x, compute_uv=False)  # LAPACK on the values every kind holds
    if command == "inspect":
        (m,) = result.matrices
        assert abs(m.diagnostics.sigma_max - s[0]) <= 1e-12 * s[0]
        assert abs(m.diagnostics.kappa - s[0] / s[-1]) <= 1e-9 * s[0] / s[-1]
        if kind == "dataframe":
            assert m.name == "frame"
    elif command == "compress":
        (t,) = result.tensors
        w = x.astype(np.float32).astype(np.float64)
        sw = np.linalg.svd(w, compute_uv=False)
        assert t.rank == 2 and t.error >= np.sqrt(np.sum(sw[2:] ** 2)) / np.linalg.norm(w) * (1 - 1e-6)
    elif command == "expand":
        assert result.tensors == 1 and os.path.exists(result.files[0])
    elif command == "sample":
        assert result.header["n"] == 80 and result.header["d"] == 4 and len(result.indices) > 0
        if kind == "dataframe":
            assert result.design_names == ("a", "b", "c", "d")
    elif command == "dedup":
        assert len(result.kept) == 4 and result.rows == 80
    elif command == "collinearity":
        scaled = x / np.linalg.norm(x, axis=0)
        ss = np.linalg.svd(scaled, compute_uv=False)
        assert abs(result.max_condition_index - ss[0] / ss[-1]) <= 1e-9 * ss[0] / ss[-1]
        if kind == "dataframe":
            assert result.columns == ("a", "b", "c", "d")


CASES = [(c, k) for c in TAKES for k in KINDS]


@pytest.mark.parametrize("command, kind", CASES, ids=[f"{c}-{k}" for c, k in CASES])
def test_each_function_with_each_kind(tmp_path, monkeypatch, command, kind):
    source = _source(kind, tmp_path, monkeypatch, command)
    if kind not in TAKES[command]:
        with pytest.raises(UsageError) as err:
            _call(command, source, tmp_path, kind)
        message = str(err.value)
        assert f"`cond.{command}` takes" in message and "got " in message
        assert "123.45" not in message and "\n" not in message
        return
    if command == "calibrate":  # taken: the reader then says what is wrong with this folder
        with pytest.raises(CondError, match="not a Hugging Face model folder"):
            _call(command, source, tmp_path, kind)
        return
    _check(command, _call(command, source, tmp_path, kind), kind)


@pytest.mark.parametrize("command", ["sample", "dedup", "inspect", "collinearity"])
def test_a_list_is_refused_by_its_kind(command):
    with pytest.raises(UsageError, match=r"got a list"):
        getattr(cond, command)([[1.0, MARK], [2.0, 3.0]], **({"size": 1} if command == "sample" else {}))


def test_dataframe_rules(tmp_path):
    """Missing values are errors naming row and column; duplicate names are refused; bools are 0/1."""
    frame = pd.DataFrame({"a": [1.0, 2.0, None, 4.0] * 5, "b": range(20)})
    with pytest.raises(CondError, match=r"row 2 column 'a' is a missing value"):
        cond.dedup(frame)
    dup = pd.DataFrame(np.eye(3), columns=["a", "a", "b"])
    with pytest.raises(CondError, match=r"'a' appears more than once"):
        cond.collinearity(dup)
    flags = pd.DataFrame({"x": [True, False, True, True, False, True], "y": [1, 2, 3, 4, 5, 7]})
    report = cond.collinearity(flags)
    values = np.column_stack([[1, 0, 1, 1, 0, 1], [1, 2, 3, 4, 5, 7]]).astype(float)
    scaled = values / np.linalg.norm(values, axis=0)
    s = np.linalg.svd(scaled, compute_uv=False)
    assert abs(report.max_condition_index - s[0] / s[-1]) <= 1e-12 * s[0] / s[-1]
