"""cond inspect --plot and the table's sparkline: the files, and the data behind each picture
against the report's own numbers."""

import os

import numpy as np
import pytest
from cli_checks import run_cli_without
from data import FIXTURES
from safetensors.numpy import save_file
from typer.testing import CliRunner

import cond
from cond.cli.main import app
from cond.errors import OutputError

pytest.importorskip("matplotlib")
runner = CliRunner()
MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "svg": b"<?xml", "pdf": b"%PDF"}


@pytest.mark.parametrize("fmt", sorted(MAGIC))
def test_one_valid_picture_per_matrix_and_the_overview(tmp_path, fmt):
    out = tmp_path / "plots"
    done = runner.invoke(
        app,
        [
            "inspect",
            f"{FIXTURES}/digits_mlp.safetensors",
            "--alpha",
            "--plot",
            str(out),
            "--plot-format",
            fmt,
            "-q",
            "-f",
            "json",
        ],
    )
    assert done.exit_code == 0, done.output
    files = sorted(os.listdir(out))
    assert files == sorted(f"{n}.{fmt}" for n in ("layers.0.weight", "layers.1.weight", "layers.2.weight", "overview"))
    for f in files:
        data = (out / f).read_bytes()
        assert data.startswith(MAGIC[fmt]) and len(data) > 5000, f
        if fmt == "svg":
            assert b"<svg" in data[:2000]


def test_the_data_drawn_is_the_reports(tmp_path):
    from cond.commands.plots import write_plots

    report = cond.inspect(f"{FIXTURES}/digits_mlp.safetensors", alpha=True, keep_spectra=True)
    drawn = write_plots(report, str(tmp_path / "p"))
    by_name = {d["name"]: d for d in drawn.values() if "name" in d}
    for m in report.matrices:
        d, diag = by_name[m.name], m.diagnostics
        np.testing.assert_array_equal(d["singular_values"], diag.spectrum)
        assert (d["rank_tolerance"], d["energy_rank_90"], d["energy_rank_99"]) == (
            diag.rank_tolerance,
            diag.energy_rank_90,
            diag.energy_rank_99,
        )
        assert (d["alpha"], d["xmin"]) == (diag.alpha, diag.alpha_xmin)
        # the ESD is the density of the report's sigma^2 over the drawn bins: the counts numpy finds
        # there, and a density (it integrates to 1)
        ev, edges = diag.spectrum**2, d["esd_edges"]
        counts, _ = np.histogram(ev, bins=edges)
        np.testing.assert_allclose(d["esd_density"], counts / (len(ev) * np.diff(edges)), rtol=1e-12)
        assert float(np.sum(d["esd_density"] * np.diff(edges))) == pytest.approx(1.0, rel=1e-12)
        # the fitted line is alpha's power law: its log-log slope is -alpha
        slope = np.polyfit(np.log(d["fit_x"]), np.log(d["fit_density"]), 1)[0]
        assert slope == pytest.approx(-diag.alpha, rel=1e-12)
    overview = next(d for d in drawn.values() if "names" in d)
    assert overview["names"] == [m.name for m in report.matrices]
    np.testing.assert_array_equal(overview["kappa"], [m.diagnostics.kappa for m in report.matrices])
    np.testing.assert_array_equal(overview["alpha"], [m.diagnostics.alpha for m in report.matrices])


def test_file_names_are_safe_and_distinct(tmp_path):
    rng = np.random.default_rng(0)
    names = ["../../etc/passwd", "a/b", "a_b", "\x1b[31m[bold]x", "..."]
    save_file({n: rng.standard_normal((8, 6)).astype(np.float32) for n in names}, str(tmp_path / "m.safetensors"))
    out = tmp_path / "plots"
    assert runner.invoke(app, ["inspect", str(tmp_path / "m.safetensors"), "--plot", str(out), "-q"]).exit_code == 0
    files = os.listdir(out)
    assert len(files) == len(names) + 1 and len(set(files)) == len(files)
    assert all(set(f) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") for f in files)
    assert not any(f.startswith(".") for f in files) and not (tmp_path / "etc").exists()


def test_sparkline_follows_the_spectrum():
    from cond.commands.plots import SPARK, sparkline

    s = np.geomspace(100.0, 1.0, 16)  # log-linear: the blocks must descend evenly from top to bottom
    line = sparkline(s)
    assert line[0] == SPARK[-1] and line[-1] == SPARK[0] and len(line) == 16
    assert [SPARK.index(c) for c in line] == sorted((SPARK.index(c) for c in line), reverse=True)
    assert sparkline(np.ones(5)) == SPARK[-1] * 5 and sparkline(np.zeros(3)) == ""


def test_table_shows_sparklines_unless_asked_not_to():
    path = f"{FIXTURES}/digits_mlp.safetensors"
    with_line = runner.invoke(app, ["inspect", path, "-q"]).stdout
    assert "spectrum (log)" in with_line and any(c in with_line for c in "▁▂▃▄▅▆▇█")
    assert "spectrum (log)" not in runner.invoke(app, ["inspect", path, "-q", "--no-sparkline"]).stdout
    assert "▁" not in runner.invoke(app, ["inspect", path, "-q", "-f", "csv"]).stdout


def test_plot_without_matplotlib_is_one_line(tmp_path):
    out = run_cli_without(
        ["matplotlib"], ["inspect", f"{FIXTURES}/digits_mlp.safetensors", "--plot", str(tmp_path / "p")]
    )
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0 and "cond[plot]" in out.stderr
    assert not (tmp_path / "p").exists()


def test_a_failed_save_leaves_no_partial_picture(tmp_path, monkeypatch):
    import matplotlib.figure

    from cond.commands.plots import write_plots

    report = cond.inspect(f"{FIXTURES}/digits_mlp.safetensors", keep_spectra=True)

    def broken(self, fname, **kw):
        with open(fname, "wb") as f:
            f.write(b"\x89PNG half")  # as far as a save gets before it fails
        raise OSError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken)
    with pytest.raises(OutputError, match="disk full; nothing was written"):
        write_plots(report, str(tmp_path / "p"))
    assert not (tmp_path / "p").exists()  # no truncated file, no temporary, not even the folder it made
