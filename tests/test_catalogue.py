"""Every case of the catalogue through every reader and backend, judged by one checker.

A path is a way a user hands cond a matrix: the Python API with C-ordered,
Fortran-ordered, strided and read-only arrays, each file format (as a file,
gzipped, on standard input), a checkpoint single, sharded or as a directory,
one or several workers, a Dask cluster, and for tall and wide shapes both the
CholeskyQR2 and the gesdd route. Each path reports every case it can hold;
``invariants.check_inspect_row`` judges each row against the case's truth.
The count of (case, path) pairs checked is printed at the end of the session.
"""

import gzip
import json
import os

import ml_dtypes
import numpy as np
import pytest
from cases import catalogue, select
from invariants import Tally, check_inspect_row
from safetensors.numpy import save_file
from typer.testing import CliRunner

import cond
from cond.cli.main import app

runner = CliRunner()
U = {
    np.dtype(np.float64): 2.0**-53,
    np.dtype(np.float32): 2.0**-24,
    np.dtype(np.float16): 2.0**-11,
    np.dtype(ml_dtypes.bfloat16): 2.0**-8,
}
TEXT_EXCLUDE = ("big",)  # 131072 x 100 floats are 300 MB of text: binary paths only


def _judge(path_name, results, cases):
    """Check every case's row; one failure lists every broken promise of the path."""
    failures = []
    assert set(results) == {c.name for c in cases}, sorted(set(c.name for c in cases) ^ set(results))
    for case in cases:
        row, u, spectrum = results[case.name]
        Tally.add(case.name, path_name)
        failures += [f"{case.name} [{case.oracle}]: {msg}" for msg in check_inspect_row(case, row, u, spectrum)]
    assert not failures, f"{len(failures)} broken promises on {path_name}:\n" + "\n".join(failures[:40])


def _narrowest(case, supported):
    """The case's storage dtype if the format has it, else the narrowest supported one holding it exactly."""
    for dtype in [case.storage] + [d for d in ("f32", "f64") if d != case.storage]:
        if dtype in supported:
            out = case.a.astype(
                {"f64": np.float64, "f32": np.float32, "f16": np.float16, "bf16": ml_dtypes.bfloat16}[dtype]
            )
            if np.array_equal(out.astype(np.float64), case.a):
                return out
    raise AssertionError(f"no exact storage for {case.name}")


def _inspect_cli(args, input=None):
    result = runner.invoke(app, ["inspect", *args, "-f", "json", "-q"], input=input)
    assert result.exit_code == 0, (result.exit_code, result.output[-2000:])
    return json.loads(result.stdout)


# ---------------------------------------------------------------- the Python API


def _api(arrays, cases, keep=True, **options):
    out = {}
    for case in cases:
        array = arrays(case)
        report = cond.inspect(array, name=case.name, keep_spectra=keep, **options)
        m = report.matrices[0]
        out[case.name] = (m.row(), U[np.dtype(array.dtype)], m.diagnostics.spectrum)
    return out


def _strided(case):
    stored = case.stored
    big = np.zeros((stored.shape[0] * 2, stored.shape[1] * 3), dtype=stored.dtype)
    big[::2, ::3] = stored
    return big[::2, ::3]


def _read_only(case):
    stored = case.stored.copy()
    stored.setflags(write=False)
    return stored


API_LAYOUTS = {
    "api-C": lambda c: np.ascontiguousarray(c.stored),
    "api-F": lambda c: np.asfortranarray(c.stored),
    "api-strided": _strided,
    "api-read-only": _read_only,
}


@pytest.mark.parametrize("layout", sorted(API_LAYOUTS))
def test_python_api(layout):
    cases = list(catalogue())
    _judge(layout, _api(API_LAYOUTS[layout], cases), cases)


def test_python_api_dict():
    """Every case in one dict of arrays (a checkpoint in memory), each in its storage dtype."""
    cases = list(catalogue())
    report = cond.inspect({c.name: c.stored for c in cases}, keep_spectra=True)
    rows = {m.name: m for m in report.matrices}
    _judge(
        "api-dict",
        {c.name: (rows[c.name].row(), U[np.dtype(c.stored.dtype)], rows[c.name].diagnostics.spectrum) for c in cases},
        cases,
    )


def test_python_api_dataframe():
    """Every case as a pandas DataFrame (float64 columns, the stored values widened exactly)."""
    pandas = pytest.importorskip("pandas")
    cases = select(exclude=("big",))
    out = {}
    for case in cases:
        frame = pandas.DataFrame(case.a, columns=[f"c{j}" for j in range(case.a.shape[1])])
        (m,) = cond.inspect(frame, keep_spectra=True).matrices
        out[case.name] = (m.row(), U[np.dtype(np.float64)], m.diagnostics.spectrum)
    _judge("api-dataframe", out, cases)


@pytest.mark.parametrize("order", ["C", "F"])
def test_gesdd_route_for_tall_and_wide(order, monkeypatch):
    # the Gram route is tried for every clearly non-square matrix and CholeskyQR2 for every
    # matrix twice as tall as wide; this path turns both off
    import cond.backends.numpy_backend as backend

    monkeypatch.setattr(backend, "CHOLQR_ASPECT", 10**12)
    cases = select(tags_any=("tall", "wide"), exclude=("big",))
    _judge(f"api-gesdd-{order}", _api(lambda c: np.array(c.stored, order=order), cases, gram=False), cases)


@pytest.mark.parametrize("order", ["C", "F"])
def test_svd_routes_without_gram(order):
    # --no-gram: CholeskyQR2 or gesdd for every matrix, the promise e_i of the SVD
    cases = select(tags_any=("tall", "wide"))
    _judge(f"api-no-gram-{order}", _api(lambda c: np.array(c.stored, order=order), cases, gram=False), cases)


def test_every_route_is_taken_and_declines_are_honest():
    # the catalogue exercises each branch: the Gram route where its certificate holds, and
    # both SVD routes where it does not (ill-conditioned tall, square, or near the float64 limits)
    import collections

    routes = collections.Counter()
    for case in catalogue():
        row = cond.inspect(case.stored, name=case.name).matrices[0].row()
        if row["status"] != "zero":
            routes[row["route"]] += 1
            if row["route"] == "gram":  # accepted only where kappa is certified to 1e-9
                assert row["sigma_error"] <= 1e-9 * row["sigma_max"], case.name
                assert max(case.a.shape) >= 1.25 * min(case.a.shape), case.name
    assert min(routes["gram"], routes["cholqr2"], routes["gesdd"]) >= 3, routes


def test_the_caller_array_is_never_modified():
    for case in select(tags_any=("tall", "wide")):
        array = np.asfortranarray(case.stored) if "wide" in case.tags else case.stored
        before = array.copy()
        cond.inspect(array)
        assert np.array_equal(array, before), case.name


# ---------------------------------------------------------------- files, one case each


@pytest.fixture(scope="module")
def text_files(tmp_path_factory):
    """Each case as CSV with a header, TSV without one, and both gzipped: written once."""
    root = tmp_path_factory.mktemp("text")
    files = {}
    for case in select(exclude=TEXT_EXCLUDE):
        csv = root / f"{case.name}.csv"
        body = _text(case.a, ",")
        header = ",".join(f"x{j}" for j in range(case.a.shape[1])) + "\n"
        csv.write_bytes(header.encode() + body)
        tsv = root / f"{case.name}.tsv"
        tsv.write_bytes(body.replace(b",", b"\t"))
        for p in (csv, tsv):
            with gzip.open(f"{p}.gz", "wb", compresslevel=1) as f:
                f.write(p.read_bytes())
        files[case.name] = {"csv": csv, "tsv": tsv}
    return files


def _text(a, sep):
    """repr-exact text (17 significant digits), as a user's tools would write it."""
    lines = [sep.join(repr(float(v)) for v in row) for row in a] if a.shape[0] * a.shape[1] < 10**5 else None
    if lines is None:
        import io

        buf = io.StringIO()
        np.savetxt(buf, a, fmt="%.17g", delimiter=sep)
        return buf.getvalue().encode()
    return ("\n".join(lines) + "\n").encode()


TEXT_PATHS = {
    "csv": lambda f: ([str(f["csv"])], None),
    "tsv": lambda f: ([str(f["tsv"])], None),
    "csv.gz": lambda f: ([f"{f['csv']}.gz"], None),
    "tsv.gz": lambda f: ([f"{f['tsv']}.gz"], None),
    "csv-stdin": lambda f: (["-", "--input-format", "csv"], f["csv"].read_bytes()),
    "tsv.gz-stdin": lambda f: (["-", "--input-format", "tsv"], open(f"{f['tsv']}.gz", "rb").read()),
}


@pytest.mark.parametrize("kind", sorted(TEXT_PATHS))
def test_text(kind, text_files):
    cases = select(exclude=TEXT_EXCLUDE)
    out = {}
    for case in cases:
        args, data = TEXT_PATHS[kind](text_files[case.name])
        doc = _inspect_cli(args, input=data)
        out[case.name] = (doc["matrices"][0], None, None)
    _judge(kind, out, cases)


def test_npy(tmp_path):
    cases = list(catalogue())
    out = {}
    for case in cases:
        array = _narrowest(case, ("f64", "f32", "f16"))
        p = tmp_path / f"{case.name}.npy"
        np.save(p, array)
        out[case.name] = (_inspect_cli([str(p)])["matrices"][0], U[array.dtype], None)
        p.unlink()
    _judge("npy", out, cases)


def test_npz(tmp_path):
    cases = select(exclude=("big",))
    arrays = {c.name: _narrowest(c, ("f64", "f32", "f16")) for c in cases}
    np.savez(tmp_path / "all.npz", **arrays)
    rows = {m["name"]: m for m in _inspect_cli([str(tmp_path / "all.npz")])["matrices"]}
    _judge("npz", {n: (rows[n], U[a.dtype], None) for n, a in arrays.items()}, cases)


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    cases = select(exclude=TEXT_EXCLUDE)
    out = {}
    for case in cases:
        array = _narrowest(case, ("f64", "f32", "f16"))
        p = tmp_path / f"{case.name}.parquet"
        pq.write_table(
            pa.table({f"c{j}": array[:, j] for j in range(array.shape[1])}),
            p,
            row_group_size=max(1, array.shape[0] // 3),
        )
        out[case.name] = (_inspect_cli([str(p)])["matrices"][0], U[array.dtype], None)
    _judge("parquet", out, cases)


def test_zarr(tmp_path):
    zarr = pytest.importorskip("zarr")
    cases = select(exclude=("big",))
    group = zarr.open_group(str(tmp_path / "all.zarr"), mode="w")
    dtypes = {}
    for case in cases:
        array = _narrowest(case, ("f64", "f32", "f16"))
        z = group.create_array(
            case.name, shape=array.shape, dtype=array.dtype, chunks=(max(1, array.shape[0] // 3), array.shape[1])
        )
        z[...] = array
        dtypes[case.name] = array.dtype
    rows = {m["name"]: m for m in _inspect_cli([str(tmp_path / "all.zarr")])["matrices"]}
    _judge("zarr", {n: (rows[n], U[d], None) for n, d in dtypes.items()}, cases)


def test_matrix_market(tmp_path):
    import scipy.io

    cases = select(exclude=TEXT_EXCLUDE)
    out = {}
    for case in cases:
        p = tmp_path / f"{case.name}.mtx"
        scipy.io.mmwrite(str(p), case.a, precision=17)
        out[case.name] = (_inspect_cli([str(p)])["matrices"][0], U[np.dtype(np.float64)], None)
    _judge("mtx", out, cases)


# ---------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """Every case in one safetensors file, the same split into three shards with an index,
    and a directory of shards without one. Stored in each case's own dtype."""
    root = tmp_path_factory.mktemp("ckpt")
    tensors = {c.name: c.stored for c in catalogue()}
    save_file(tensors, str(root / "all.safetensors"))
    names = list(tensors)
    shards = {f"model-0000{k + 1}-of-00003.safetensors": names[k::3] for k in range(3)}
    for d in ("sharded", "directory"):
        (root / d).mkdir()
        for shard, members in shards.items():
            save_file({n: tensors[n] for n in members}, str(root / d / shard))
    index = {
        "metadata": {"total_size": sum(t.nbytes for t in tensors.values())},
        "weight_map": {n: s for s, members in shards.items() for n in members},
    }
    (root / "sharded" / "model.safetensors.index.json").write_text(json.dumps(index))
    return root


CHECKPOINT_PATHS = {
    "safetensors --workers 1": ("all.safetensors", ["--workers", "1"]),
    "safetensors --workers 2": ("all.safetensors", ["--workers", "2"]),
    "sharded index": ("sharded/model.safetensors.index.json", []),
    "directory": ("directory", []),
}


def _checkpoint_rows(doc):
    cases = list(catalogue())
    rows = {m["name"]: m for m in doc["matrices"]}
    return {c.name: (rows[c.name], U[np.dtype(c.stored.dtype)], None) for c in cases}, cases


@pytest.mark.parametrize("kind", sorted(CHECKPOINT_PATHS))
def test_checkpoint(kind, checkpoint):
    rel, extra = CHECKPOINT_PATHS[kind]
    _judge(kind, *_checkpoint_rows(_inspect_cli([str(checkpoint / rel), *extra])))


@pytest.mark.slow
def test_checkpoint_on_a_dask_cluster(checkpoint):
    pytest.importorskip("distributed")
    doc = _inspect_cli([str(checkpoint / "sharded" / "model.safetensors.index.json"), "--scheduler", "local:2"])
    _judge("--scheduler local:2", *_checkpoint_rows(doc))


def test_catalogue_covers_the_issue_cases():
    names = {c.name for c in catalogue()}
    assert "longley" in names and any(n.startswith("issue-tall131072x100") for n in names)
    assert {c.storage for c in catalogue()} == {"f64", "f32", "f16", "bf16"}
    for tag in ("square", "tall", "wide", "very-tall", "singular", "zero", "tiny", "huge"):
        assert any(tag in c.tags for c in catalogue()), tag


def test_dedup_kappa_keeps_the_promise():
    # cond dedup reports the design's kappa from the TSQR R factor, with inspect's status rule:
    # an `ok` kappa must lie in the checker's interval (tall cases; dedup reads designs)
    import math
    import tempfile

    from oracles import EPS

    cases = [c for c in select(tags_any=("tall",), exclude=("big", "zero")) if c.a.shape[0] >= c.a.shape[1]]
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            path = os.path.join(tmp, f"{case.name}.npy")
            np.save(path, case.a)
            before = cond.dedup(path, max_corr=1.0).before
            Tally.add(case.name, "dedup (kappa before)")
            s, c = case.sigma, max(case.a.shape)
            e = c * EPS * s[0] + case.sigma_err + 101 * EPS * s
            lo = (s[0] - e[0]) / (s[-1] + e[-1])
            hi = (s[0] + e[0]) / (s[-1] - e[-1]) if s[-1] > e[-1] else math.inf
            if before["status"] == "ok":
                assert lo * (1 - 2 * EPS) <= before["kappa"] <= hi * (1 + 2 * EPS), (case.name, before, lo, hi)
            else:
                assert hi * EPS * c > 0.1 * (1 - 1e-6), (case.name, before)  # unresolved only where it must be


def test_adapter_factor_space(tmp_path):
    """Every case as a LoRA module (a kohya file: lora_up = the matrix in its storage dtype,
    lora_down = the identity, alpha = r, so dW is the case exactly), inspected in factor space:
    sigma_max, the Frobenius norm and the numerical rank against the case's truth. The factored
    route's bound: each value within about c eps |s| ||L||_F ||R||_F of the product's."""
    cases = select(exclude=("zero", "big"))
    tensors = {}
    for case in cases:
        n = case.a.shape[1]
        up = case.stored
        tensors[f"{case.name}.lora_up.weight"] = up
        tensors[f"{case.name}.lora_down.weight"] = np.eye(n, dtype=up.dtype)
        tensors[f"{case.name}.alpha"] = np.array(float(n), dtype=np.float32)
    path = str(tmp_path / "catalogue-lora.safetensors")
    save_file(tensors, path)
    doc = _inspect_cli([path])
    rows = {r["name"]: r for r in doc["modules"]}
    failures = []
    for case in cases:
        row = rows[case.name]
        Tally.add(case.name, "adapter factor space")
        m, n = case.a.shape
        sigma = case.sigma
        frob = float(np.sqrt(np.sum((sigma / sigma[0]) ** 2)) * sigma[0])  # scaled: tiny and huge cases
        band = case.sigma_err + 10 * max(m, n) * 2.0**-52 * frob * np.sqrt(n)
        if abs(row["sigma_max"] - sigma[0]) > band:
            failures.append(f"{case.name}: sigma_max {row['sigma_max']} vs {sigma[0]} (band {band:.3g})")
        if abs(row["frobenius_norm"] - frob) > band * np.sqrt(len(sigma)) + 1e-12 * frob:
            failures.append(f"{case.name}: ||dW|| {row['frobenius_norm']} vs {frob}")
        tol = row["rank_tolerance"]
        surely_above = int(np.sum(sigma > tol + band))
        maybe_above = int(np.sum(sigma > tol - band))
        if not surely_above <= row["numerical_rank"] <= maybe_above:
            failures.append(
                f"{case.name}: numerical rank {row['numerical_rank']} outside [{surely_above}, {maybe_above}]"
            )
        if row["rank"] != n:
            failures.append(f"{case.name}: nominal rank {row['rank']} != {n}")
    assert not failures, "\n".join(failures[:40])
