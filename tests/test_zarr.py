"""Zarr stores (format 2 and 3) for cond sample and cond inspect: statsmodels and LAPACK
oracles on what is read, the same sample as from the same rows in a .npy, and the
bad-input contract (pickle codecs refused before any chunk is decoded)."""

import json
import os
import pickle

import numpy as np
import pytest
from cli_checks import run_cli_without
from invariants import assert_one_line_error
from typer.testing import CliRunner

from cond.cli.main import app
from cond.commands.sample import sample

zarr = pytest.importorskip("zarr")
runner = CliRunner()


def write(path, a, chunks, zarr_format=3, **kw):
    z = zarr.create_array(store=str(path), shape=a.shape, chunks=chunks, dtype=a.dtype, zarr_format=zarr_format, **kw)
    z[...] = a
    return str(path)


def test_longley_from_zarr_has_statsmodels_leverage():
    sm = pytest.importorskip("statsmodels.api")
    from statsmodels.stats.outliers_influence import OLSInfluence

    data = sm.datasets.longley.load_pandas()
    x = sm.add_constant(data.exog.to_numpy(dtype=np.float64))
    hat = OLSInfluence(sm.OLS(data.endog.to_numpy(dtype=np.float64), x).fit()).hat_matrix_diag
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = write(os.path.join(tmp, "longley.zarr"), x, chunks=(5, 7))  # chunks cut across rows
        result = sample(path, size=16, seed=0)
    np.testing.assert_allclose(result.scores, hat, rtol=0, atol=1e-10)  # float64 LAPACK-level agreement
    assert result.header["rank"] == 7


@pytest.mark.parametrize("zarr_format,dtype", [(3, np.float64), (2, np.float32)])
def test_sample_from_zarr_equals_the_same_rows_from_npy(tmp_path, zarr_format, dtype):
    rng = np.random.default_rng(zarr_format)
    a = (rng.standard_normal((20_000, 6)) * [1, 10, 100, 1, 1, 1]).astype(dtype)
    a[rng.choice(20_000, 50, replace=False)] *= 40
    np.save(tmp_path / "a.npy", a)
    store = write(tmp_path / "a.zarr", a, chunks=(3001, 4), zarr_format=zarr_format)
    for extra in ([], ["--chunk-rows", "1000"], ["--method", "lewis", "-p", "1"]):
        from_npy = runner.invoke(app, ["sample", str(tmp_path / "a.npy"), "--size", "300", "--seed", "5", *extra])
        from_zarr = runner.invoke(app, ["sample", store, "--size", "300", "--seed", "5", *extra])
        assert from_npy.exit_code == from_zarr.exit_code == 0, from_zarr.output
        assert from_zarr.stdout == from_npy.stdout  # byte for byte
    kept = sample(store, size=300, seed=5, keep_rows=True)
    np.testing.assert_array_equal(kept.rows, a[kept.indices].astype(np.float64) * kept.scales[:, None])


def test_inspect_a_zarr_group_against_lapack(tmp_path):
    rng = np.random.default_rng(7)
    w = rng.standard_normal((60, 40)) @ np.diag(np.logspace(0, -6, 40))
    v = rng.standard_normal((30, 30)).astype(np.float32)
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    for name, arr in (("W", w), ("V", v), ("bias", rng.standard_normal(30)), ("ids", np.arange(12).reshape(3, 4))):
        group.create_array(name, shape=arr.shape, dtype=arr.dtype, chunks=tuple(max(1, s // 3) for s in arr.shape))
        group[name][...] = arr
    result = runner.invoke(app, ["inspect", str(tmp_path / "g.zarr"), "--format", "json", "--quiet"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    got = {m["name"]: m for m in doc["matrices"]}
    assert set(got) == {"V", "W"}
    for name, arr in (("W", w), ("V", v.astype(np.float64))):
        s = np.linalg.svd(arr, compute_uv=False)
        assert got[name]["shape"] == list(arr.shape)
        # relative tolerance: backward-stable SVDs agree to ~ max(m, n) eps kappa in sigma_min
        assert got[name]["kappa"] == pytest.approx(s[0] / s[-1], rel=1e-8 * max(1.0, s[0] / s[-1] * 1e-6))
    skipped = {s["name"]: s["reason"] for s in doc["skipped"]}
    assert "vector" in skipped["bias"] and "integer" in skipped["ids"]


def test_a_group_with_several_matrices_needs_a_name(tmp_path):
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    a = np.random.default_rng(0).standard_normal((500, 3))
    for name in ("X", "Z"):
        group.create_array(name, shape=a.shape, dtype=a.dtype)
        group[name][...] = a
    result = runner.invoke(app, ["sample", str(tmp_path / "g.zarr"), "--size", "10"])
    assert_one_line_error(result, ["g.zarr", "holds 2 2-D arrays", "X, Z", "g.zarr/NAME"])
    named = runner.invoke(app, ["sample", str(tmp_path / "g.zarr" / "Z"), "--size", "10"])
    assert named.exit_code == 0, named.output
    assert "n=500 d=3" in named.stdout


class _Boom:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # unpickling this would create the marker directory
        return os.mkdir, (self.marker,)


@pytest.mark.parametrize("where", ["compressor", "filters", "object"])
def test_pickle_codecs_are_refused_before_any_chunk_is_read(tmp_path, where):
    store = tmp_path / "p.zarr"
    store.mkdir()
    marker = tmp_path / "unpickled"
    meta = {
        "zarr_format": 2,
        "shape": [4, 2],
        "chunks": [4, 2],
        "dtype": "<f8",
        "order": "C",
        "fill_value": 0.0,
        "compressor": None,
        "filters": None,
    }
    if where == "compressor":
        meta["compressor"] = {"id": "pickle", "protocol": 5}
    elif where == "filters":
        meta["filters"] = [{"id": "pickle"}]
    else:
        meta["dtype"] = "|O"
    (store / ".zarray").write_text(json.dumps(meta))
    (store / "0.0").write_bytes(pickle.dumps(_Boom(str(marker))))
    for cmd in (["sample", str(store), "--size", "2"], ["inspect", str(store)]):
        assert_one_line_error(runner.invoke(app, cmd), ["p.zarr", "cond never loads pickles"])
    assert not marker.exists()


def test_corrupt_chunk_is_one_line_naming_the_store(tmp_path):
    a = np.random.default_rng(1).standard_normal((9000, 4))
    store = write(tmp_path / "c.zarr", a, chunks=(3000, 4))
    (tmp_path / "c.zarr" / "c" / "1" / "0").write_bytes(b"not a zstd frame")
    out = tmp_path / "s.tsv"
    assert_one_line_error(
        runner.invoke(app, ["sample", store, "--size", "20", "-o", str(out)]), ["c.zarr", "cannot read rows"]
    )
    assert not out.exists()
    assert_one_line_error(runner.invoke(app, ["inspect", store]), ["c.zarr", "cannot read rows"])


def test_non_finite_and_non_numeric_zarr(tmp_path):
    a = np.random.default_rng(2).standard_normal((100, 3))
    a[57, 2] = np.nan
    assert_one_line_error(
        runner.invoke(app, ["sample", write(tmp_path / "n.zarr", a, chunks=(30, 3)), "--size", "5"]),
        ["n.zarr", "row 57", "nan"],
    )
    s = zarr.create_array(store=str(tmp_path / "s.zarr"), shape=(4, 2), dtype=str)
    s[...] = np.array([["a", "b"]] * 4)
    assert_one_line_error(
        runner.invoke(app, ["sample", str(tmp_path / "s.zarr"), "--size", "2"]), ["s.zarr", "not numeric"]
    )


def test_zarr_without_the_package_says_what_to_install(tmp_path):
    store = write(tmp_path / "a.zarr", np.ones((10, 2)), chunks=(5, 2))
    out = run_cli_without(["zarr"], ["sample", store, "--size", "2"])
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [
        f"cond: error: {store}: reading Zarr needs zarr: pip install 'cond[zarr]'"
    ]
