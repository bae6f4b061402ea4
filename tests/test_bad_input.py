"""Every kind of bad input: exit code 2, one line on stderr naming the file and the problem."""

import json
import os
import pickle
import struct

import numpy as np
import pytest
from safetensors.numpy import save_file
from typer.testing import CliRunner

from cli_checks import assert_one_line_error
from cond.cli.main import app
from cond.errors import InputError

runner = CliRunner()


def run_bad(args, expect, input=None):
    return assert_one_line_error(runner.invoke(app, ["inspect", *args], input=input), expect)


def header_file(path, header: dict, data: bytes = b"", raw_len=None):
    blob = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob) if raw_len is None else raw_len))
        f.write(blob)
        f.write(data)
    return str(path)


def test_missing_file(tmp_path):
    run_bad([str(tmp_path / "nope.safetensors")], ["nope.safetensors", "no such file"])


@pytest.mark.parametrize("name", ["e.safetensors", "e.npy", "e.csv", "e.bin"])
def test_empty_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    run_bad([str(tmp_path / name)], [name])


def test_header_length_beyond_file(tmp_path):
    p = header_file(tmp_path / "h.safetensors", {}, raw_len=5000)
    run_bad([p], ["h.safetensors", "exceeds the file size"])


def test_header_length_beyond_100mb(tmp_path):
    p = header_file(tmp_path / "h.safetensors", {}, raw_len=200 * 2**20)
    run_bad([p], ["h.safetensors", "100 MB"])


def test_invalid_json(tmp_path):
    p = tmp_path / "j.safetensors"
    p.write_bytes(struct.pack("<Q", 10) + b"{not json}")
    run_bad([str(p)], ["j.safetensors", "not valid JSON"])


def test_offsets_outside_data(tmp_path):
    p = header_file(tmp_path / "o.safetensors",
                    {"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
                     "b": {"dtype": "F32", "shape": [2, 2], "data_offsets": [400, 416]}}, b"\0" * 32)
    run_bad([p], ["o.safetensors", "tensor 'b'", "outside the data section"])


def test_overlapping_offsets(tmp_path):
    p = header_file(tmp_path / "v.safetensors",
                    {"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
                     "b": {"dtype": "F32", "shape": [2, 2], "data_offsets": [8, 24]}}, b"\0" * 24)
    run_bad([p], ["v.safetensors", "overlap"])


def test_offsets_disagree_with_dtype_and_shape(tmp_path):
    p = header_file(tmp_path / "d.safetensors",
                    {"a": {"dtype": "BF16", "shape": [3, 4], "data_offsets": [0, 48]}}, b"\0" * 48)
    run_bad([p], ["d.safetensors", "tensor 'a'", "48 bytes", "needs 24"])


def test_truncated_data_section(tmp_path):
    full = tmp_path / "full.safetensors"
    save_file({"a": np.ones((8, 8), np.float32), "b": np.ones((8, 8), np.float32)}, str(full))
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(full.read_bytes()[:-100])
    run_bad([str(cut)], ["cut.safetensors", "truncated"])


def test_pickled_npy(tmp_path):
    p = tmp_path / "obj.npy"
    np.save(p, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    run_bad([str(p)], ["obj.npy", "pickle"])


def test_raw_pickle_never_loaded(tmp_path):
    p = tmp_path / "model.pkl"
    marker = tmp_path / "pwned"

    class Boom:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    p.write_bytes(pickle.dumps(Boom()))
    run_bad([str(p)], ["model.pkl", "pickle"])
    assert not marker.exists()


def test_ragged_csv(tmp_path):
    p = tmp_path / "r.csv"
    p.write_text("a,b,c\n1,2,3\n4,5\n")
    run_bad([str(p)], ["r.csv", "ragged", "line 3"])


def test_non_numeric_csv(tmp_path):
    p = tmp_path / "n.csv"
    p.write_text("a,b\n1,2\n3,oops\n")
    run_bad([str(p)], ["n.csv", "non-numeric", "'oops'", "line 3", "column 'b'"])


def test_zero_size_dimension(tmp_path):
    np.save(tmp_path / "z.npy", np.zeros((0, 3)))
    run_bad([str(tmp_path / "z.npy")], ["z.npy", "zero-size"])
    save_file({"w": np.zeros((4, 0), np.float32)}, str(tmp_path / "z.safetensors"))
    run_bad([str(tmp_path / "z.safetensors")], ["z.safetensors", "tensor 'w'", "zero-size"])


def test_index_that_disagrees_with_shards(tmp_path):
    save_file({"a": np.eye(2, dtype=np.float32)}, str(tmp_path / "s1.safetensors"))
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"a": "s1.safetensors", "b": "s1.safetensors"}}))
    run_bad([str(index)], ["model.safetensors.index.json", "'b'", "lacks it"])
    index.write_text(json.dumps({"weight_map": {"a": "s2.safetensors"}}))
    run_bad([str(index)], ["s2.safetensors", "no such file"])


def test_unknown_format_and_bad_options(tmp_path):
    p = tmp_path / "blob.xyz"
    p.write_bytes(b"hello world, not a matrix")
    run_bad([str(p)], ["blob.xyz", "--input-format"])
    csv = tmp_path / "c.csv"
    csv.write_text("a,b\n1,2\n3,4\n")
    run_bad([str(csv), "--columns", "zz*"], ["c.csv", "matches no column"])
    run_bad([str(csv), "--filter", "(["], ["--filter", "regular expression"])


def test_nonfinite_matrix_reported_while_others_are_analysed(tmp_path):
    bad = np.ones((3, 3), np.float32)
    bad[1, 1] = np.nan
    save_file({"bad": bad, "good": np.diag([1.0, 2.0, 4.0]).astype(np.float32)},
              str(tmp_path / "nan.safetensors"))
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
    out = subprocess.run([sys.executable, "-m", "cond.cli", "inspect", str(p)], capture_output=True,
                         text=True, env={k: v for k, v in os.environ.items() if k != "COND_DEBUG"})
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "bad.safetensors" in out.stderr
