"""cond inspect --collinearity against independent oracles: statsmodels' VIFs, and BKW by the
book (tests/naive.py: numpy's SVD of the scaled design)."""

import json
import warnings

import naive
import numpy as np
import pytest
from typer.testing import CliRunner

import cond
from cond.cli.main import app

runner = CliRunner()
sm = pytest.importorskip("statsmodels.api")


def longley():
    data = sm.datasets.longley.load_pandas()
    return data.exog, sm.add_constant(data.exog.to_numpy(dtype=np.float64))


def test_vifs_equal_statsmodels_on_longley_with_a_constant():
    from statsmodels.stats.outliers_influence import variance_inflation_factor

    _, x = longley()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels warns that Longley is ill-conditioned
        expected = np.array([variance_inflation_factor(x, j) for j in range(x.shape[1])])
    got = np.array(cond.collinearity(x).vif)
    np.testing.assert_allclose(got, expected, rtol=1e-10)


@pytest.mark.parametrize("scale, center", [(True, False), (False, False), (True, True)])
def test_condition_indexes_and_proportions_by_the_book(scale, center):
    _, x = longley()
    design = x[:, 1:] if center else x  # centring zeroes an intercept column
    eta, pi = naive.belsley_kuh_welsch(design, scale=scale, center=center)
    r = cond.collinearity(design, scale=scale, center=center)
    np.testing.assert_allclose(r.condition_indexes, eta, rtol=1e-10)
    np.testing.assert_allclose(np.array(r.proportions), pi, rtol=0, atol=1e-10)
    np.testing.assert_allclose(np.array(r.proportions).sum(axis=0), 1.0, rtol=1e-12)


def test_csv_column_names_dependencies_and_the_gate(tmp_path):
    exog, x = longley()
    path = tmp_path / "longley.csv"
    exog.to_csv(path, index=False)
    done = runner.invoke(app, ["inspect", str(path), "--collinearity", "--add-intercept", "-f", "json", "-q"])
    assert done.exit_code == 0, done.output
    doc = json.loads(done.stdout)
    assert doc["schema"] == "cond.collinearity/1" and doc["columns"] == ["const", *exog.columns]
    eta, pi = naive.belsley_kuh_welsch(x)
    expected = [[doc["columns"][j] for j in np.flatnonzero(pi[k] > 0.5)] for k in np.argsort(-eta) if eta[k] > 30]
    assert [d["columns"] for d in doc["dependencies"]] == expected
    assert {"GNPDEFL", "POP"} <= set(doc["dependencies"][1]["columns"])
    gate = runner.invoke(
        app, ["inspect", str(path), "--collinearity", "--add-intercept", "--fail-above", f"{eta.max() * 0.99}", "-q"]
    )
    assert gate.exit_code == 1 and "condition index" in gate.stderr
    passed = runner.invoke(
        app, ["inspect", str(path), "--collinearity", "--add-intercept", "--fail-above", f"{eta.max() * 1.01}", "-q"]
    )
    assert passed.exit_code == 0


def test_orthogonal_design_has_condition_indexes_one_and_vifs_one():
    # columns orthogonal to each other and to the constant (so centred): the closed form is
    # eta = 1 for every index and VIF = 1 for every column
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(np.column_stack([np.ones(50), rng.standard_normal((50, 4))]))
    x = q[:, 1:] * np.array([1.0, 3.0, 0.1, 7.0])  # scaling changes neither
    r = cond.collinearity(x)
    np.testing.assert_allclose(r.condition_indexes, 1.0, rtol=1e-12)
    np.testing.assert_allclose(r.vif, 1.0, rtol=1e-12)
    assert r.dependencies == ()
