"""Dask and CuPy paths against the single-process path (the oracle here is cond's own
in-process result, which the rest of the suite checks against LAPACK, mpmath and
statsmodels; these tests assert that distributing the work changes nothing).

The Dask tests start one real LocalCluster (2 worker processes) and skip when
dask.distributed is not installed; the CuPy tests skip without CuPy and a GPU.
"""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
from checkpoints import reconstruct
from cli_checks import run_cli_without
from invariants import assert_one_line_error
from safetensors.numpy import save_file
from typer.testing import CliRunner

import cond
from cond.cli.main import app
from cond.commands.sample import sample
from cond.errors import UsageError

runner = CliRunner()
HAS_DASK = importlib.util.find_spec("distributed") is not None
needs_dask = pytest.mark.skipif(not HAS_DASK, reason="dask.distributed is not installed")


@pytest.fixture(scope="module")
def cluster():
    """One LocalCluster of two single-threaded worker processes for the module."""
    if not HAS_DASK:
        pytest.skip("dask.distributed is not installed")
    import logging

    import distributed

    lc = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
    )
    yield lc.scheduler_address
    lc.close()


def _checkpoint(path, seed=0):
    rng = np.random.default_rng(seed)
    tensors = {}
    basis = np.linalg.qr(rng.standard_normal((96, 6)))[0]
    for i in range(8):
        w = basis @ rng.standard_normal((6, 40)) + 1e-3 * rng.standard_normal((96, 40))
        tensors[f"blocks.{i}.weight"] = w.astype(np.float32)
        tensors[f"blocks.{i}.bias"] = rng.standard_normal(96).astype(np.float32)
    tensors["ill.weight"] = (rng.standard_normal((50, 50)) @ np.diag(np.logspace(0, -9, 50))).astype(np.float64)
    save_file(tensors, str(path))
    return tensors


@needs_dask
def test_inspect_on_a_cluster_gives_the_same_floats(tmp_path, cluster):
    _checkpoint(tmp_path / "m.safetensors")
    local = cond.inspect(tmp_path / "m.safetensors", alpha=True, keep_spectra=True)
    remote = cond.inspect(tmp_path / "m.safetensors", alpha=True, keep_spectra=True, scheduler=cluster)
    assert [m.name for m in remote.matrices] == [m.name for m in local.matrices]  # file order
    for a, b in zip(local.matrices, remote.matrices):
        np.testing.assert_array_equal(a.diagnostics.spectrum, b.diagnostics.spectrum)
        assert (a.diagnostics.kappa, a.diagnostics.status, a.diagnostics.alpha) == (
            b.diagnostics.kappa,
            b.diagnostics.status,
            b.diagnostics.alpha,
        )
    assert [s.name for s in remote.skipped] == [s.name for s in local.skipped]


@needs_dask
def test_compress_on_a_cluster_meets_the_same_bounds(tmp_path, cluster):
    tensors = _checkpoint(tmp_path / "m.safetensors")
    local = cond.compress(tmp_path / "m.safetensors", tmp_path / "a.safetensors", max_error=0.05, min_size=0)
    remote = cond.compress(
        tmp_path / "m.safetensors", tmp_path / "b.safetensors", max_error=0.05, min_size=0, scheduler=cluster
    )
    assert [t.name for t in remote.tensors] == [t.name for t in local.tensors]
    assert len(remote.clusters) >= 1
    _, _, dense = reconstruct(tmp_path / "b.safetensors")  # independent of cond's reader
    for t in remote.tensors:
        if t.error is None:
            continue
        w = tensors[t.name].astype(np.float64)
        measured = np.linalg.norm(w - dense[t.name].astype(np.float64)) / np.linalg.norm(w)
        assert measured <= 0.05 * (1 + 1e-6) or t.storage == "dense"
        assert t.error == pytest.approx(measured, rel=1e-5, abs=1e-9)
    # the same work was done: same storage and ranks per matrix, same parameter count
    assert [(t.storage, t.rank) for t in remote.tensors] == [(t.storage, t.rank) for t in local.tensors]
    assert remote.params_after == local.params_after


def _grams(tensors, path, seed):
    """Input Grams of 200 Gaussian rows for every weight of the checkpoint."""
    rng = np.random.default_rng(seed)
    grams = {}
    for name, w in tensors.items():
        if name.endswith(".weight"):
            x = rng.standard_normal((200, w.shape[1]))
            grams[name] = x.T @ x
    save_file(grams, str(path))


@needs_dask
def test_weighted_compress_on_a_cluster(tmp_path, cluster):
    _grams(_checkpoint(tmp_path / "m.safetensors"), tmp_path / "g.safetensors", 1)
    kwargs = dict(max_error=0.05, min_size=0, method="whiten", activations=str(tmp_path / "g.safetensors"))
    local = cond.compress(tmp_path / "m.safetensors", tmp_path / "a.safetensors", **kwargs)
    remote = cond.compress(tmp_path / "m.safetensors", tmp_path / "b.safetensors", scheduler=cluster, **kwargs)
    assert [(t.storage, t.rank, t.weighting) for t in remote.tensors] == [
        (t.storage, t.rank, t.weighting) for t in local.tensors
    ]
    assert all(t.error <= 0.05 for t in remote.tensors if t.error is not None)


@needs_dask
def test_budget_int8_and_output_errors_on_a_cluster(tmp_path, cluster):
    _grams(_checkpoint(tmp_path / "m.safetensors"), tmp_path / "g.safetensors", 2)
    kwargs = dict(budget=0.5, dtype="int8", min_size=0, activations=str(tmp_path / "g.safetensors"))
    local = cond.compress(tmp_path / "m.safetensors", tmp_path / "a.safetensors", **kwargs)
    remote = cond.compress(tmp_path / "m.safetensors", tmp_path / "b.safetensors", scheduler=cluster, **kwargs)
    rows = lambda r: [(t.storage, t.rank, t.error, t.output_error, t.bytes_after) for t in r.tensors]  # noqa: E731
    assert rows(remote) == rows(local) and remote.budget == local.budget


@needs_dask
@pytest.mark.parametrize("method", ["leverage", "root-leverage", "lewis"])
def test_sample_on_a_cluster_gives_the_same_sample(tmp_path, cluster, method):
    rng = np.random.default_rng(3)
    a = rng.standard_normal((50_000, 12))
    a[rng.choice(50_000, 100, replace=False)] *= 30
    np.save(tmp_path / "X.npy", a)
    p = 2 if method == "lewis" else None
    local = sample(str(tmp_path / "X.npy"), size=500, method=method, p=p, seed=4)
    remote = sample(str(tmp_path / "X.npy"), size=500, method=method, p=p, seed=4, scheduler=cluster)
    np.testing.assert_array_equal(remote.scores, local.scores)  # the same floats
    np.testing.assert_array_equal(remote.indices, local.indices)
    np.testing.assert_array_equal(remote.weights, local.weights)
    assert remote.header["rank"] == local.header["rank"] == 12


@needs_dask
@pytest.mark.parametrize("scores", ["sketch", "sketch-srht"])
def test_sketched_sample_on_a_cluster_gives_the_same_sample(tmp_path, cluster, scores):
    from cond.linalg.sketch import leaf_rows

    rng = np.random.default_rng(11)
    a = rng.standard_normal((61_000, 5))
    a[rng.choice(61_000, 60, replace=False)] *= 25
    np.save(tmp_path / "X.npy", a)
    assert 61_000 / leaf_rows(61_000, 5) > 7  # several sketch leaves, the last one partial
    local = sample(str(tmp_path / "X.npy"), size=400, scores=scores, seed=6)
    remote = sample(str(tmp_path / "X.npy"), size=400, scores=scores, seed=6, scheduler=cluster)
    np.testing.assert_array_equal(remote.scores, local.scores)  # the same floats
    np.testing.assert_array_equal(remote.indices, local.indices)
    np.testing.assert_array_equal(remote.weights, local.weights)
    assert remote.header == local.header


@needs_dask
def test_parquet_sample_on_a_cluster_gives_the_same_sample(tmp_path, cluster):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(6)
    a = rng.standard_normal((30_000, 5))
    table = pa.table({**{f"x{j}": a[:, j] for j in range(4)}, "label": np.arange(30_000) % 3, "y": a[:, 4]})
    pq.write_table(table, tmp_path / "d.parquet", row_group_size=7000)  # groups cut across blocks
    kwargs = dict(size=300, seed=2, columns="x*", target="y", keep_rows=True)
    local = sample(str(tmp_path / "d.parquet"), **kwargs)
    remote = sample(str(tmp_path / "d.parquet"), scheduler=cluster, **kwargs)
    np.testing.assert_array_equal(remote.scores, local.scores)
    np.testing.assert_array_equal(remote.indices, local.indices)
    np.testing.assert_array_equal(remote.rows, local.rows)


@needs_dask
def test_zarr_sample_on_a_cluster_gives_the_same_sample(tmp_path, cluster):
    zarr = pytest.importorskip("zarr")
    rng = np.random.default_rng(8)
    a = rng.standard_normal((30_000, 7)).astype(np.float32)
    z = zarr.create_array(store=str(tmp_path / "d.zarr"), shape=a.shape, chunks=(5000, 3), dtype=a.dtype)
    z[...] = a  # row chunks cut across the 4096-row blocks
    kwargs = dict(size=300, seed=9, target="6", keep_rows=True)
    local = sample(str(tmp_path / "d.zarr"), **kwargs)
    remote = sample(str(tmp_path / "d.zarr"), scheduler=cluster, **kwargs)
    np.testing.assert_array_equal(remote.scores, local.scores)
    np.testing.assert_array_equal(remote.indices, local.indices)
    np.testing.assert_array_equal(remote.rows, local.rows)
    np.testing.assert_array_equal(local.target, a[local.indices, 6].astype(np.float64) * local.scales)


@needs_dask
def test_cli_scheduler_flag_and_environment(tmp_path, cluster):
    _checkpoint(tmp_path / "m.safetensors")
    plain = runner.invoke(app, ["inspect", str(tmp_path / "m.safetensors"), "--format", "json", "--quiet"])
    flag = runner.invoke(
        app, ["inspect", str(tmp_path / "m.safetensors"), "--format", "json", "--quiet", "--scheduler", cluster]
    )
    env = runner.invoke(
        app,
        ["inspect", str(tmp_path / "m.safetensors"), "--format", "json", "--quiet"],
        env={"COND_SCHEDULER": cluster},
    )
    assert plain.exit_code == flag.exit_code == env.exit_code == 0, flag.output

    def strip(doc):  # timings differ; everything else must not
        import json

        d = json.loads(doc)
        for m in d["matrices"]:
            m.pop("seconds", None)
        d["summary"].pop("seconds", None)
        d.pop("seconds", None)
        d.pop("options", None)
        return d

    assert strip(flag.stdout) == strip(plain.stdout) == strip(env.stdout)
    out = runner.invoke(
        app,
        [
            "compress",
            str(tmp_path / "m.safetensors"),
            "--max-error",
            "0.05",
            "--min-size",
            "0",
            "-o",
            str(tmp_path / "c.safetensors"),
            "--scheduler",
            cluster,
            "--quiet",
        ],
    )
    assert out.exit_code == 0, out.output
    assert "worst error" in out.stdout
    np.save(tmp_path / "X.npy", np.random.default_rng(0).standard_normal((5000, 3)))
    a = runner.invoke(app, ["sample", str(tmp_path / "X.npy"), "--size", "50", "--scheduler", cluster])
    b = runner.invoke(app, ["sample", str(tmp_path / "X.npy"), "--size", "50"])
    assert a.exit_code == b.exit_code == 0, a.output
    assert a.stdout == b.stdout  # the same sample, byte for byte


@needs_dask
def test_bad_input_on_a_worker_is_one_line_naming_file_and_tensor(tmp_path, cluster):
    import pickle

    from cond.errors import InputError

    err = pickle.loads(pickle.dumps(InputError("holds NaN", path="m.safetensors", tensor="w", shape=(2, 3))))
    assert err.one_line() == "m.safetensors: tensor 'w' (shape 2x3): holds NaN"
    tensors = _checkpoint(tmp_path / "m.safetensors")
    tensors["blocks.3.weight"][1, 2] = np.nan
    save_file(tensors, str(tmp_path / "m.safetensors"))
    result = runner.invoke(
        app,
        [
            "compress",
            str(tmp_path / "m.safetensors"),
            "--max-error",
            "0.1",
            "--min-size",
            "0",
            "-o",
            str(tmp_path / "o.safetensors"),
            "--scheduler",
            cluster,
        ],
    )
    assert_one_line_error(result, ["m.safetensors", "tensor 'blocks.3.weight'", "NaN"])
    assert not (tmp_path / "o.safetensors").exists()


@needs_dask
def test_unreachable_scheduler_and_one_without_workers_are_one_line_errors(tmp_path):
    import logging
    import socket
    import time

    import distributed

    np.save(tmp_path / "X.npy", np.random.default_rng(0).standard_normal((5000, 3)))
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["sample", str(tmp_path / "X.npy"), "--size", "5", "--scheduler"]
    started = time.perf_counter()
    result = runner.invoke(app, [*args, f"tcp://127.0.0.1:{port}"], env={"COND_SCHEDULER_TIMEOUT": "1"})
    assert_one_line_error(result, [f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port} within 1 s"])
    assert time.perf_counter() - started < 15  # the timeout was honoured, not Dask's default
    empty = distributed.LocalCluster(n_workers=0, dashboard_address=":0", silence_logs=logging.ERROR)
    try:
        result = runner.invoke(app, [*args, empty.scheduler_address], env={"COND_SCHEDULER_TIMEOUT": "1"})
        assert_one_line_error(result, ["has no workers", "dask worker " + empty.scheduler_address])
    finally:
        empty.close()
    result = runner.invoke(app, [*args, f"tcp://127.0.0.1:{port}"], env={"COND_SCHEDULER_TIMEOUT": "soon"})
    assert_one_line_error(result, ["$COND_SCHEDULER_TIMEOUT must be a positive number of seconds; got 'soon'"])


def test_scheduler_and_device_errors(tmp_path):
    _checkpoint(tmp_path / "m.safetensors")
    np.save(tmp_path / "X.npy", np.ones((10, 2)))
    result = runner.invoke(app, ["inspect", str(tmp_path / "X.npy"), "--scheduler", "local:2"])
    assert_one_line_error(result, ["`--scheduler` distributes safetensors checkpoints"])
    result = runner.invoke(app, ["inspect", str(tmp_path / "m.safetensors"), "--scheduler", "local:zero"])
    assert_one_line_error(result, ["local:N"])
    with pytest.raises(UsageError, match="lewis only at p = 2"):
        sample(str(tmp_path / "X.npy"), size=5, method="lewis", p=1, scheduler="local:1")
    if importlib.util.find_spec("cupy") is None:
        result = runner.invoke(app, ["inspect", str(tmp_path / "m.safetensors"), "--device", "cuda"])
        assert_one_line_error(result, ["`--device cuda` needs CuPy", "pip install 'cond[gpu]'"])


def test_scheduler_without_dask_says_what_to_install(tmp_path):
    _checkpoint(tmp_path / "m.safetensors")
    out = run_cli_without(
        ["dask", "distributed"], ["inspect", str(tmp_path / "m.safetensors"), "--scheduler", "local:2"]
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == ["cond: error: `--scheduler` needs Dask: pip install 'cond[dask]'"]


def test_import_cond_and_help_import_neither_dask_nor_cupy():
    code = (
        "import sys\n"
        "import cond\n"
        "from typer.testing import CliRunner\n"
        "from cond.cli.main import app\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "assert r.exit_code == 0\n"
        "for sub in ('inspect', 'compress', 'sample'):\n"
        "    assert CliRunner().invoke(app, [sub, '--help']).exit_code == 0\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed', 'cupy'))\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_device_cuda_plumbing_with_a_stand_in_for_cupy(tmp_path):
    """--device cuda end to end with tests/fake_cupy.py (NumPy behind CuPy's names, refusing
    implicit conversion as CuPy does): the matrix goes to the "device", the backend follows it,
    the values come back; results equal the CPU's. GPU numerics are for benchmarks/gpu_check.py."""
    _checkpoint(tmp_path / "m.safetensors")
    code = (
        "import sys, json\n"
        f"sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})\n"
        "import fake_cupy; cupy = fake_cupy.install()\n"
        "import numpy as np, cond\n"
        f"p = {str(tmp_path / 'm.safetensors')!r}\n"
        "cpu = cond.inspect(p, keep_spectra=True)\n"
        "gpu = cond.inspect(p, keep_spectra=True, device='cuda')\n"
        "arr = cond.inspect(cupy.asarray(np.diag([3.0, 2.0, 1.0])))\n"
        "ok = all(np.allclose(a.diagnostics.spectrum, b.diagnostics.spectrum, rtol=1e-12, atol=0)\n"
        "         for a, b in zip(cpu.matrices, gpu.matrices))\n"
        "print(json.dumps([ok, gpu.options['device'], arr.options['device'],\n"
        "                  arr.matrices[0].diagnostics.kappa]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    import json

    assert json.loads(out.stdout) == [True, "cuda", "cuda", 3.0]


def test_array_namespace_sketch_equals_the_kernel_sketch():
    """The GPU code path, run with NumPy as its array module, against the numba kernels."""
    from cond import threads as cond_threads
    from cond.linalg.sketch import sketched_leverage
    from cond.linalg.sketch.xp import sketched_leverage_xp

    rng = np.random.default_rng(8)
    a = rng.standard_normal((30_000, 9))
    a[:40] *= 25
    blocks = lambda: ((s, a[s : s + 4096]) for s in range(0, len(a), 4096))  # noqa: E731
    kernel = sketched_leverage(blocks, len(a), 9, seed=5)
    on_numpy = sketched_leverage_xp(np, blocks, len(a), 9, seed=5)
    assert on_numpy.rank == kernel.rank == 9
    # The same sketch up to float64 summation order; d = 9 is below k / 2, so both score
    # exactly against the sketch's rank basis (no JL product), in float64.
    assert kernel.detail["jl_dim"] is None and on_numpy.detail["jl_dim"] is None
    np.testing.assert_allclose(on_numpy.values, kernel.values, rtol=1e-10)
    with cond_threads.one_thread_blas():
        same_blas = sketched_leverage_xp(np, blocks, len(a), 9, seed=5)
    np.testing.assert_allclose(same_blas.values, kernel.values, rtol=1e-10)  # then only the sketch's order
    wide = rng.standard_normal((30_000, 200))  # rank 200 > k / 2: the float32 JL product on both
    wide_blocks = lambda: ((s, wide[s : s + 4096]) for s in range(0, len(wide), 4096))  # noqa: E731
    kernel = sketched_leverage(wide_blocks, len(wide), 200, seed=5)
    with cond_threads.one_thread_blas():
        on_numpy = sketched_leverage_xp(np, wide_blocks, len(wide), 200, seed=5)
    assert kernel.detail["jl_dim"] == on_numpy.detail["jl_dim"] > 0
    # float32 product: a few roundings of a 200-term product and a sum of k squares
    np.testing.assert_allclose(on_numpy.values, kernel.values, rtol=1e-5)


def _require_gpu():
    from cond.backends.cupy_backend import require_gpu

    try:
        require_gpu()
    except UsageError:
        if os.environ.get("COND_REQUIRE_GPU"):  # benchmarks/gpu_check.py: a GPU is expected
            raise
        pytest.skip("no usable GPU")


@pytest.mark.skipif(importlib.util.find_spec("cupy") is None, reason="CuPy is not installed")
def test_cuda_sketched_sample_matches_the_cpu(tmp_path):
    _require_gpu()
    rng = np.random.default_rng(9)
    np.save(tmp_path / "X.npy", rng.standard_normal((40_000, 10)))
    cpu = sample(str(tmp_path / "X.npy"), size=400, scores="sketch", seed=2)
    gpu = sample(str(tmp_path / "X.npy"), size=400, scores="sketch", seed=2, device="cuda")
    np.testing.assert_allclose(gpu.scores, cpu.scores, rtol=1e-5)  # float32 JL product on both


@pytest.mark.skipif(importlib.util.find_spec("cupy") is None, reason="CuPy is not installed")
def test_cuda_inspect_matches_the_cpu(tmp_path):
    _require_gpu()
    _checkpoint(tmp_path / "m.safetensors")
    cpu = cond.inspect(tmp_path / "m.safetensors", keep_spectra=True)
    gpu = cond.inspect(tmp_path / "m.safetensors", keep_spectra=True, device="cuda")
    for a, b in zip(cpu.matrices, gpu.matrices):
        s_a, s_b = a.diagnostics.spectrum, b.diagnostics.spectrum
        # both float64 SVDs are backward stable: every value within c * eps * sigma_max
        assert np.max(np.abs(s_a - s_b)) <= 64 * max(s_a.shape[0], 1) * np.finfo(float).eps * s_a[0]
        assert a.diagnostics.status == b.diagnostics.status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([os.path.abspath(__file__), "-q"]))
