"""cond dedup on the 72-predictor stacking fixture and on designs built to stress it, checked
against numpy's corrcoef and cond on the data itself (independent of cond's streaming)."""

import json

import naive
import numpy as np
import pytest
from data import FIXTURES
from oracles import EPS
from typer.testing import CliRunner

import cond
from cond.cli.main import app

runner = CliRunner()
STACK = f"{FIXTURES}/stack72.csv"


def load_stack():
    names = open(STACK).readline().strip().split(",")
    return names, np.loadtxt(STACK, delimiter=",", skiprows=1)


@pytest.mark.parametrize("max_corr", [0.95, 0.99, 0.999])
def test_the_dedup_promise_on_the_stacking_fixture(max_corr):
    names, x = load_stack()
    corr = np.corrcoef(x, rowvar=False)
    report = cond.dedup(STACK, max_corr=max_corr)
    kept = [names.index(n) for n in report.kept]
    for d in report.dropped:  # every dropped column has a kept partner at or above the threshold
        j, p = names.index(d["column"]), names.index(d["partner"])
        assert p in kept and abs(corr[j, p]) >= max_corr * (1 - 1e-12)
        assert d["correlation"] == pytest.approx(corr[j, p], abs=1e-12)
    off = np.abs(corr[np.ix_(kept, kept)]) - np.eye(len(kept))
    assert off.max() < max_corr * (1 + 1e-12)  # and no kept pair reaches it
    assert len(report.kept) + len(report.dropped) == 72
    # kappa before and after: the data's own, from LAPACK (within c eps kappa, the promise)
    for stats, cols in ((report.before, list(range(72))), (report.after, kept)):
        truth = np.linalg.cond(x[:, cols])
        assert abs(stats["kappa"] - truth) <= max(x.shape) * EPS * truth * (truth + 1) + 1e-12 * truth
        # effective rank of the data's own singular values (each within c eps sigma_1: p_i barely moves)
        s = np.linalg.svd(x[:, cols], compute_uv=False)
        assert stats["effective_rank"] == pytest.approx(naive.effective_rank(s), rel=1e-10)
        assert stats["columns"] == len(cols) and stats["status"] == "ok"


def test_fixture_reads_as_nine_families_at_095():
    report = cond.dedup(STACK, max_corr=0.95)
    assert [n.split("_")[0] for n in report.kept] == ["ridge", "lasso", "knn", "svr", "rf", "gbm", "xgb", "mlp", "nb"]
    assert report.after["kappa"] < report.before["kappa"] / 10


def test_prefer_keeps_the_matching_columns(tmp_path):
    report = cond.dedup(STACK, max_corr=0.95, prefer=r"_7$")
    assert all(n.endswith("_7") for n in report.kept)


def test_output_holds_exactly_the_kept_columns(tmp_path):
    names, x = load_stack()
    for suffix in ("csv", "tsv.gz", "npy"):
        out = tmp_path / f"kept.{suffix}"
        done = runner.invoke(app, ["dedup", STACK, "-o", str(out), "-q", "-f", "json"])
        assert done.exit_code == 0, done.output
        doc = json.loads(done.stdout)
        assert doc["schema"] == "cond.dedup/1" and doc["output"] == str(out)
        cols = [names.index(n) for n in doc["kept"]]
        if suffix == "npy":
            back = np.load(out)
        else:
            back = np.loadtxt(out, delimiter="\t" if "tsv" in suffix else ",", skiprows=1)
            header = (__import__("gzip").open(out, "rt") if suffix.endswith("gz") else open(out)).readline()
            assert header.strip().split("\t" if "tsv" in suffix else ",") == doc["kept"]
        np.testing.assert_array_equal(back, x[:, cols])  # repr round-trips: the same values


def test_streaming_correlations_survive_large_means_and_many_blocks(tmp_path):
    # 10,000 rows (three 4096-row blocks), means 1e8 with spread ~1: G - n mean mean^T would
    # cancel to noise; Chan's merge must agree with numpy's centred corrcoef
    rng = np.random.default_rng(7)
    base = rng.standard_normal((10_000, 1))
    x = 1e8 + np.column_stack(
        [base + 0.3 * rng.standard_normal((10_000, 1)) for _ in range(4)] + [rng.standard_normal((10_000, 2))]
    )
    np.save(tmp_path / "x.npy", x)
    from cond.linalg.correlation import Moments

    m = Moments.empty(6)
    for start in range(0, 10_000, 4096):
        m.add_block(x[start : start + 4096])
    truth = np.corrcoef(x - 1e8, rowvar=False)  # the offset subtracts exactly (Sterbenz): no cancellation
    # the running mean is stored to ulp(1e8) = 1.5e-8; times |delta| ~ 0.05 between block means and
    # n_a n_b / n, over the cross-products' ~n: about 1e-10 in a correlation
    np.testing.assert_allclose(m.correlations(), truth, rtol=0, atol=1e-9)
    report = cond.dedup(str(tmp_path / "x.npy"), max_corr=0.95)
    assert report.kept == ("0", "1", "2", "3", "4", "5")  # the first four correlate at ~0.92 only
    report = cond.dedup(str(tmp_path / "x.npy"), max_corr=0.9)
    assert report.kept == ("0", "4", "5")


def test_a_constant_column_is_kept_and_named(tmp_path):
    x = np.column_stack([np.ones(50), np.arange(50.0), np.arange(50.0) * 2 + 1])
    np.save(tmp_path / "c.npy", x)
    report = cond.dedup(str(tmp_path / "c.npy"))
    assert report.constant == ("0",) and report.kept == ("0", "1") and report.dropped[0]["column"] == "2"


def test_relative_mse_drops_near_copies_that_correlation_keeps(tmp_path):
    # column 1 is column 0 with a shift: correlation 1 (dropped at any max_corr); column 2 is a
    # noisy copy (corr ~0.9, below 0.95) whose relative MSE against column 0 is ~0.2
    rng = np.random.default_rng(3)
    a = rng.standard_normal(400) + 2.0
    x = np.column_stack([a, a + 0.5, a + 0.5 * rng.standard_normal(400), rng.standard_normal(400)])
    np.save(tmp_path / "x.npy", x)
    rel = np.mean((x[:, 2] - x[:, 0]) ** 2) / np.mean(x[:, 2] ** 2)  # the definition, on the data
    assert cond.dedup(str(tmp_path / "x.npy")).kept == ("0", "2", "3")
    assert cond.dedup(str(tmp_path / "x.npy"), max_rel_mse=rel * 1.001).kept == ("0", "3")
    assert cond.dedup(str(tmp_path / "x.npy"), max_rel_mse=rel * 0.999).kept == ("0", "2", "3")


@pytest.mark.parametrize("scale_exp", [-565, 531])  # entries ~1e-170 and ~1e160: squares out of range
def test_correlations_near_the_float64_limits(tmp_path, scale_exp):
    rng = np.random.default_rng(8)
    base = rng.standard_normal((200, 1))
    y = np.column_stack([base, base + 0.1 * rng.standard_normal((200, 1)), rng.standard_normal((200, 1))])
    np.save(tmp_path / "x.npy", np.ldexp(y, scale_exp))  # exact scaling: the same correlations
    report = cond.dedup(str(tmp_path / "x.npy"), max_corr=0.95)
    corr = np.corrcoef(y, rowvar=False)
    assert report.kept == ("0", "2") and report.constant == ()
    assert report.dropped[0]["correlation"] == pytest.approx(corr[1, 0], abs=1e-12)
