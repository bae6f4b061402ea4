"""Readers: exact widening of every float dtype, sharded checkpoints, tables, stdin, bounded memory."""

import gzip
import json
import os
import tracemalloc

import ml_dtypes
import numpy as np
import pytest
import scipy.linalg
from safetensors.numpy import save_file
from typer.testing import CliRunner

import cond
from cond.cli.main import app
from cond.formats import open_entries

runner = CliRunner()


def load_all(path, **kw):
    with open_entries(path, **kw) as entries:
        return {e.name: (e, e.load() if e.skip_reason is None else None) for e in entries}


# Values exactly representable in every dtype below, fp8 e4m3 / e5m2 included.
EXACT = np.array([[0.0, 0.5, -1.0, 1.5], [2.0, -3.0, 4.0, -0.25], [0.75, 6.0, -8.0, 1.0]])


@pytest.mark.parametrize(
    "dtype, name",
    [
        (np.float64, "F64"),
        (np.float32, "F32"),
        (np.float16, "F16"),
        (ml_dtypes.bfloat16, "BF16"),
        (ml_dtypes.float8_e4m3fn, "F8_E4M3"),
        (ml_dtypes.float8_e5m2, "F8_E5M2"),
    ],
)
def test_float_dtypes_widen_exactly(tmp_path, dtype, name):
    path = tmp_path / "w.safetensors"
    save_file({"w": EXACT.astype(dtype)}, str(path))
    entry, values = load_all(str(path))["w"]
    assert entry.dtype == name
    assert values.dtype == np.float64
    np.testing.assert_array_equal(values, EXACT)
    assert entry.unit_roundoff == float(ml_dtypes.finfo(dtype).eps) / 2


def test_bf16_values_that_need_all_bits(tmp_path):
    # every bf16 bit pattern of one binade: widening must reproduce them bit for bit
    bits = np.arange(0x3F80, 0x4000, dtype=np.uint16)  # [1, 2) in bf16
    stored = bits.view(ml_dtypes.bfloat16).reshape(8, 16)
    save_file({"w": stored}, str(tmp_path / "b.safetensors"))
    _, values = load_all(str(tmp_path / "b.safetensors"))["w"]
    expected = (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float64).reshape(8, 16)
    np.testing.assert_array_equal(values, expected)


def test_integer_bool_and_vectors_are_skipped_with_reason(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file(
        {
            "ids": np.arange(6, dtype=np.int64).reshape(2, 3),
            "mask": np.ones((2, 2), bool),
            "bias": np.ones(3, np.float32),
            "w": np.eye(3, dtype=np.float32),
        },
        str(path),
    )
    report = cond.inspect(str(path))
    reasons = {s.name: s.reason for s in report.skipped}
    assert "integer" in reasons["ids"] and "bool" in reasons["mask"] and "1-D" in reasons["bias"]
    assert [m.name for m in report.matrices] == ["w"]


def test_nd_tensor_reshaped_as_out_by_rest(fixtures_dir):
    path = os.path.join(fixtures_dir, "conv.safetensors")
    report = cond.inspect(path)
    conv = next(m for m in report.matrices if m.name == "conv.weight")
    assert conv.shape == (8, 3, 3, 3) and conv.reshaped and conv.diagnostics.shape == (8, 27)
    from safetensors.numpy import load_file

    w = load_file(path)["conv.weight"].astype(np.float64).reshape(8, 27)
    s = scipy.linalg.svd(w, compute_uv=False)
    assert conv.diagnostics.sigma_max == pytest.approx(s[0], rel=1e-13)
    assert conv.diagnostics.kappa == pytest.approx(s[0] / s[-1], rel=1e-12)


def test_sharded_index_and_directory_match_single_file(fixtures_dir):
    single = cond.inspect(os.path.join(fixtures_dir, "digits_mlp.safetensors"))
    via_index = cond.inspect(os.path.join(fixtures_dir, "digits_mlp_sharded", "model.safetensors.index.json"))
    via_dir = cond.inspect(os.path.join(fixtures_dir, "digits_mlp_sharded"))
    for other in (via_index, via_dir):
        assert [m.name for m in other.matrices] == [m.name for m in single.matrices]
        for a, b in zip(single.matrices, other.matrices):
            assert a.diagnostics.kappa == b.diagnostics.kappa
        assert other.summary.skipped == single.summary.skipped


def test_npy_npz_and_tables_agree_with_numpy(fixtures_dir, tmp_path):
    design = np.loadtxt(os.path.join(fixtures_dir, "design.csv"), delimiter=",", skiprows=1)
    s = scipy.linalg.svd(design, compute_uv=False)
    for name in ("design.csv", "design.tsv.gz", "design.parquet", "design.mtx"):
        (m,) = cond.inspect(os.path.join(fixtures_dir, name)).matrices
        assert m.shape == design.shape, name
        assert m.diagnostics.sigma_max == pytest.approx(s[0], rel=1e-13), name
        assert m.diagnostics.kappa == pytest.approx(s[0] / s[-1], rel=1e-12), name
    np.save(tmp_path / "X.npy", design)
    np.savez(tmp_path / "both.npz", a=design, b=design[:, 1:].astype(np.float32))
    (m,) = cond.inspect(str(tmp_path / "X.npy")).matrices
    assert m.name == "X" and m.diagnostics.kappa == pytest.approx(s[0] / s[-1], rel=1e-12)
    report = cond.inspect(str(tmp_path / "both.npz"))
    assert [m.name for m in report.matrices] == ["a", "b"]
    assert report.matrices[1].dtype == "float32"


def test_csv_header_detection_and_column_selection(tmp_path):
    data = np.arange(1.0, 25.0).reshape(6, 4) ** 1.5
    plain = tmp_path / "plain.csv"
    np.savetxt(plain, data, delimiter=",")
    (m,) = cond.inspect(str(plain)).matrices
    assert m.shape == (6, 4)  # first line is data, not a header
    named = tmp_path / "named.csv"
    np.savetxt(named, data, delimiter=",", header="a,x1,x2,y", comments="")
    cases = {"x*": [1, 2], "0,3": [0, 3], "1:3": [1, 2], "y,a": [3, 0]}
    for spec, cols in cases.items():
        (m,) = cond.inspect(str(named), columns=spec).matrices
        s = scipy.linalg.svd(data[:, cols], compute_uv=False)
        assert m.shape == (6, len(cols))
        assert m.diagnostics.sigma_min == pytest.approx(s[-1], rel=1e-12), spec


def test_stdin_csv_and_npy(fixtures_dir, tmp_path):
    with open(os.path.join(fixtures_dir, "design.csv"), "rb") as f:
        csv_bytes = f.read()
    result = runner.invoke(app, ["inspect", "-", "--input-format", "csv", "--format", "json"], input=csv_bytes)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    design = np.loadtxt(os.path.join(fixtures_dir, "design.csv"), delimiter=",", skiprows=1)
    s = scipy.linalg.svd(design, compute_uv=False)
    assert doc["matrices"][0]["kappa"] == pytest.approx(s[0] / s[-1], rel=1e-12)
    np.save(tmp_path / "h.npy", design[:50])
    result = runner.invoke(app, ["inspect", "-", "--format", "json"], input=(tmp_path / "h.npy").read_bytes())
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["matrices"][0]["shape"] == [50, 4]


def _peak_bytes(path, workers):
    tracemalloc.start()
    report = cond.inspect(path, workers=workers)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return report, peak


def test_memory_holds_a_bounded_number_of_tensors(tmp_path):
    # 256 x 512 fp32 tensors (1 MB each as float64). Analysing one takes a few copies
    # (float64 widening, LAPACK's copy, CholeskyQR factors), so the peak is a few tensors
    # per worker; what must hold is that it does not grow with the number of tensors.
    rng = np.random.default_rng(0)
    one = 256 * 512 * 8
    peaks = {}
    for count in (12, 48):
        tensors = {f"t{i:02d}": rng.standard_normal((256, 512)).astype(np.float32) for i in range(count)}
        path = str(tmp_path / f"many{count}.safetensors")
        save_file(tensors, path)
        report, peaks[count] = _peak_bytes(path, workers=2)
        assert report.summary.matrices == count
    assert peaks[48] < 12 * one, f"peak {peaks[48] / one:.1f} tensors of 48"
    # 36 more tensors add their small reports (about 2 KB each), not their data: less than one
    # tensor in all. (A ratio of peaks failed by test order: the first BLAS-thread controller
    # built in the process is a constant that a later run does not pay.)
    assert peaks[48] - peaks[12] < one, (peaks[12] / one, peaks[48] / one)


def test_gzip_tsv_written_here(tmp_path):
    data = np.array([[1.0, 2.0], [3.0, 5.0], [7.0, 11.0]])
    with gzip.open(tmp_path / "d.tsv.gz", "wt") as f:
        f.write("p\tq\n" + "\n".join("\t".join(map(str, r)) for r in data) + "\n")
    (m,) = cond.inspect(str(tmp_path / "d.tsv.gz")).matrices
    s = scipy.linalg.svd(data, compute_uv=False)
    assert m.diagnostics.kappa == pytest.approx(s[0] / s[-1], rel=1e-13)
