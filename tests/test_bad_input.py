"""Bad input beyond the corpus (tests/bad_inputs.py): empty files of every kind, zero-size tensors,
non-finite matrices reported beside good ones, COND_DEBUG, and the console entry point."""

import json
import os

import numpy as np
import pytest
from invariants import assert_one_line_error
from safetensors.numpy import save_file
from typer.testing import CliRunner

from cond.cli.main import app
from cond.errors import InputError

runner = CliRunner()


def run_bad(args, expect, input=None):
    return assert_one_line_error(runner.invoke(app, ["inspect", *args], input=input), expect)


@pytest.mark.parametrize("name", ["e.safetensors", "e.npy", "e.csv", "e.bin"])
def test_empty_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    run_bad([str(tmp_path / name)], [name])


def test_zero_size_dimension(tmp_path):
    np.save(tmp_path / "z.npy", np.zeros((0, 3)))
    run_bad([str(tmp_path / "z.npy")], ["z.npy", "zero-size"])
    save_file({"w": np.zeros((4, 0), np.float32)}, str(tmp_path / "z.safetensors"))
    run_bad([str(tmp_path / "z.safetensors")], ["z.safetensors", "tensor 'w'", "zero-size"])


def test_nonfinite_matrix_reported_while_others_are_analysed(tmp_path):
    bad = np.ones((3, 3), np.float32)
    bad[1, 1] = np.nan
    save_file({"bad": bad, "good": np.diag([1.0, 2.0, 4.0]).astype(np.float32)}, str(tmp_path / "nan.safetensors"))
    result = runner.invoke(app, ["inspect", str(tmp_path / "nan.safetensors"), "-f", "json"])
    assert result.exit_code == 0
    rows = {m["name"]: m for m in json.loads(result.stdout)["matrices"]}
    assert rows["bad"]["status"] == "non-finite" and rows["bad"]["nonfinite_count"] == 1
    assert rows["good"]["status"] == "ok" and rows["good"]["kappa"] == pytest.approx(4.0, rel=1e-15)


def test_debug_shows_the_exception(tmp_path, monkeypatch):
    monkeypatch.setenv("COND_DEBUG", "1")
    result = runner.invoke(app, ["inspect", str(tmp_path / "missing.npy")])
    assert isinstance(result.exception, InputError)


def test_main_entry_maps_errors_without_traceback(tmp_path):
    import subprocess
    import sys

    p = tmp_path / "bad.safetensors"
    p.write_bytes(b"\x05\x00")
    out = subprocess.run(
        [sys.executable, "-m", "cond.cli", "inspect", str(p)],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "COND_DEBUG"},
    )
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "bad.safetensors" in out.stderr


def test_a_linalg_value_error_becomes_an_input_error_naming_the_tensor():
    # the boundary each command keeps between cond.linalg and the user
    from cond.errors import input_errors

    with pytest.raises(InputError) as caught:
        with input_errors(path="m.safetensors", tensor="w", shape=(3, 4)):
            raise ValueError("`max_error` must be in (0, 1); got 2")
    assert caught.value.one_line() == "m.safetensors: tensor 'w' (shape 3x4): `max_error` must be in (0, 1); got 2"
    with pytest.raises(TypeError):  # only ValueErrors cross it: a bug stays a bug
        with input_errors(path="m.safetensors"):
            raise TypeError("not an input problem")
