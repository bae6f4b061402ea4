"""The command line: output formats, ordering, gating exit codes, start-up imports."""

import csv
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.linalg
from safetensors.numpy import load_file, save_file
from typer.testing import CliRunner

import cond
from cond.cli.main import app
from cond.commands.inspect_report import ROW_FIELDS, SCHEMA

runner = CliRunner()


@pytest.fixture
def mlp(fixtures_dir):
    return os.path.join(fixtures_dir, "digits_mlp.safetensors")


def lapack_kappas(path):
    out = {}
    for name, w in load_file(path).items():
        if w.ndim == 2:
            s = scipy.linalg.svd(w.astype(np.float64), compute_uv=False)
            out[name] = s[0] / s[-1]
    return out


def test_json_schema_and_values(mlp):
    result = runner.invoke(app, ["inspect", mlp, "--format", "json", "--alpha", "--normality"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["schema"] == SCHEMA
    assert set(doc) == {"schema", "cond_version", "input", "options", "seconds", "summary", "matrices", "skipped"}
    expected = lapack_kappas(mlp)
    assert [m["name"] for m in doc["matrices"]] == list(expected)
    for m in doc["matrices"]:
        assert list(m) == list(ROW_FIELDS)
        assert m["kappa"] == pytest.approx(expected[m["name"]], rel=1e-12)
    assert doc["summary"]["matrices"] == 3 and doc["summary"]["skipped"] == 3
    worst = max(expected, key=expected.get)
    assert doc["summary"]["worst_kappa_name"] == worst
    norms = [
        scipy.linalg.svd(w.astype(np.float64), compute_uv=False)[0] for w in load_file(mlp).values() if w.ndim == 2
    ]
    assert doc["summary"]["log10_spectral_norm_product"] == pytest.approx(np.sum(np.log10(norms)), rel=1e-12)
    assert {s["name"] for s in doc["skipped"]} == {"layers.0.bias", "layers.1.bias", "layers.2.bias"}


def test_jsonl_and_csv(mlp):
    result = runner.invoke(app, ["inspect", mlp, "-f", "jsonl"])
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["record"] for r in records] == ["matrix"] * 3 + ["skipped"] * 3 + ["summary"]
    result = runner.invoke(app, ["inspect", mlp, "-f", "csv"])
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert tuple(rows[0]) == ROW_FIELDS
    expected = lapack_kappas(mlp)
    for r in rows:
        assert float(r["kappa"]) == pytest.approx(expected[r["name"]], rel=1e-12)
        assert r["shape"].count("x") == 1


def test_sort_top_filter(mlp):
    expected = lapack_kappas(mlp)
    result = runner.invoke(app, ["inspect", mlp, "-f", "json", "--sort", "kappa", "--top", "2"])
    names = [m["name"] for m in json.loads(result.stdout)["matrices"]]
    assert names == sorted(expected, key=expected.get, reverse=True)[:2]
    result = runner.invoke(app, ["inspect", mlp, "-f", "json", "--filter", r"layers\.[12]\.weight"])
    doc = json.loads(result.stdout)
    assert [m["name"] for m in doc["matrices"]] == ["layers.1.weight", "layers.2.weight"]
    assert doc["summary"]["skipped"] == 0


def test_table_lists_everything(mlp):
    result = runner.invoke(app, ["inspect", mlp])
    assert result.exit_code == 0
    for name in ("layers.0.weight", "layers.2.weight", "skipped 3", "3 matrices analysed"):
        assert name in result.stdout


def test_fail_above_exit_codes(mlp):
    kappas = lapack_kappas(mlp)
    high, low = max(kappas.values()), min(kappas.values())
    assert runner.invoke(app, ["inspect", mlp, "--fail-above", str(high * 1.01)]).exit_code == 0
    result = runner.invoke(app, ["inspect", mlp, "--fail-above", str(low * 1.01)])
    assert result.exit_code == 1
    assert "kappa above" in result.stderr
    assert runner.invoke(app, ["inspect", mlp, "--fail-above", "-3"]).exit_code == 2


def test_fail_above_counts_nonfinite(tmp_path):
    w = np.eye(3, dtype=np.float32)
    w[0, 0] = np.inf
    save_file({"w": w}, str(tmp_path / "inf.safetensors"))
    assert runner.invoke(app, ["inspect", str(tmp_path / "inf.safetensors"), "--fail-above", "1e30"]).exit_code == 1


def test_usage_errors_exit_2(mlp):
    assert runner.invoke(app, ["inspect", mlp, "--format", "xml"]).exit_code == 2
    assert runner.invoke(app, ["inspect", mlp, "--top", "0"]).exit_code == 2
    assert runner.invoke(app, ["inspect", mlp, "--columns", "a"]).exit_code == 2


def test_version():
    from cond import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"cond {__version__}"


def test_help_imports_no_numerics():
    code = (
        "import sys\n"
        "from cond.cli.main import main\n"
        "for argv in (['cond', '--help'], ['cond', 'inspect', '--help']):\n"
        "    sys.argv = argv\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, e.code\n"
        "heavy = sorted(m for m in ('numpy', 'scipy', 'numba', 'cupy', 'dask', 'ml_dtypes', 'matplotlib')\n"
        "               if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout


def test_import_cond_is_light():
    out = subprocess.run(
        [sys.executable, "-c", "import cond, sys; print('numpy' in sys.modules)"], capture_output=True, text=True
    )
    assert out.stdout.strip() == "False"


def test_python_api_on_an_array():
    import cond

    a = np.diag([10.0, 1.0, 0.1])
    tall = np.random.default_rng(0).standard_normal((300, 20))  # takes the CholeskyQR2 path
    kept = tall.copy()
    cond.inspect(tall)
    np.testing.assert_array_equal(tall, kept)  # the caller's array is never used as workspace
    report = cond.inspect(a, name="diag")
    (m,) = report.matrices
    assert m.name == "diag" and m.diagnostics.kappa == pytest.approx(100.0, rel=1e-14)
    assert report.to_dict()["matrices"][0]["kappa"] == pytest.approx(100.0, rel=1e-14)


def test_spectra_file_matches_lapack_and_never_overwrites_input(mlp, tmp_path):
    out = tmp_path / "spectra.npz"
    result = runner.invoke(app, ["inspect", mlp, "--spectra", str(out), "-q"])
    assert result.exit_code == 0, result.output
    with np.load(out, allow_pickle=False) as z:
        for name, w in load_file(mlp).items():
            if w.ndim == 2:
                s = scipy.linalg.svd(w.astype(np.float64), compute_uv=False)
                np.testing.assert_allclose(z[name], s, rtol=0, atol=10 * max(w.shape) * 2.2e-16 * s[0])
    before = open(mlp, "rb").read()
    result = runner.invoke(app, ["inspect", mlp, "--spectra", mlp])
    assert result.exit_code == 2 and "refusing to overwrite the input" in result.stderr
    assert open(mlp, "rb").read() == before
    assert not [p for p in os.listdir(os.path.dirname(mlp)) if p.endswith(".tmp")]


def test_progress_callback_counts_every_matrix(mlp):
    import cond

    seen = []
    cond.inspect(mlp, progress=lambda done, total, name: seen.append((done, total, name)))
    assert [d for d, _, _ in seen] == [1, 2, 3] and {t for _, t, _ in seen} == {3}
    assert {n for _, _, n in seen} == {"layers.0.weight", "layers.1.weight", "layers.2.weight"}


def test_the_gate_names_every_matrix_above_it(mlp):
    """cond.inspect(fail_above=) and the JSON `gate`: exactly the matrices whose LAPACK kappa exceeds it."""
    kappas = lapack_kappas(mlp)
    threshold = sorted(kappas.values())[len(kappas) // 2] * 1.0001
    report = cond.inspect(mlp, fail_above=threshold)
    want = sorted(name for name, k in kappas.items() if k > threshold)
    assert sorted(report.exceeded) == want and report.gate_failed == bool(want)
    doc = json.loads(runner.invoke(app, ["inspect", mlp, "--fail-above", str(threshold), "-f", "json"]).stdout)
    assert doc["gate"] == {"fail_above": threshold, "exceeded": list(report.exceeded)}
