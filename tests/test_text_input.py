"""Text input that means what it says: the same rules for inspect and sample.

Each file is read by both commands; a correct matrix is compared with the values
written (numpy's own parse of the same numbers), an error must be one line that
names the file and the line.
"""

import gzip

import numpy as np
import pytest
from invariants import assert_one_line_error
from typer.testing import CliRunner

from cond.cli.main import app
from cond.commands.inspect import inspect
from cond.commands.sample import sample

runner = CliRunner()
X = np.array([[1.5, -2.0], [3.25, 4.0], [5.0, 6.5], [-7.0, 8.125]])
PLAIN = "\n".join(",".join(repr(float(v)) for v in row) for row in X) + "\n"


def matrix_of(path, **kw):
    """The matrix both commands read: inspect's spectrum and sample's kept rows (size 100%)."""
    report = inspect(str(path), keep_spectra=True, **kw)
    result = sample(str(path), size="100%", keep_rows=True, **kw)
    return report.matrices[0], result


def assert_reads_as(path, x, **kw):
    m, result = matrix_of(path, **kw)
    assert m.shape == x.shape
    np.testing.assert_allclose(m.diagnostics.spectrum, np.linalg.svd(x, compute_uv=False), rtol=1e-13)
    # every row kept once (size 100%: probability 1), so the kept rows are the rows, unscaled
    np.testing.assert_array_equal(result.rows, x)


@pytest.mark.parametrize(
    "name, text",
    [
        ("header.csv", "a,b\n" + PLAIN),
        ("bom.csv", "\ufeffa,b\n" + PLAIN),
        ("comment.csv", "# written by hand\n\na,b\n# a comment inside\n" + PLAIN),
        ("crlf.csv", ("a,b\n" + PLAIN).replace("\n", "\r\n")),
        ("cr.csv", ("a,b\n" + PLAIN).replace("\n", "\r")),
        ("quoted.csv", '"a","b"\n' + "\n".join(",".join(f'"{float(v)!r}"' for v in row) for row in X) + "\n"),
        ("quoted-name.csv", '"x,1",b\n' + PLAIN),
        ("noheader.csv", PLAIN),
    ],
)
def test_files_that_read_as_the_matrix(tmp_path, name, text):
    p = tmp_path / name
    p.write_bytes(text.encode("utf-8"))
    assert_reads_as(p, X)


def test_bom_is_not_part_of_the_first_name(tmp_path):
    p = tmp_path / "bom.csv"
    p.write_bytes(("\ufeffa,b\n" + PLAIN).encode("utf-8"))
    result = sample(str(p), size="100%", columns="a")
    assert result.design_names == ("a",)


@pytest.mark.parametrize(
    "text, expect",
    [
        ('a,b\n"1,000",2\n3,4\n', ["non-numeric value '1,000'", "line 2", "column 'a'"]),
        ("1,NA\n2,3\n4,5\n", ["missing value 'NA'", "line 1"]),  # data with a gap, not a header
        ("1,\n2,3\n4,5\n", ["line 1", "empty last field"]),
        ("a,b\n1,2\n3,\n", ["line 3", "empty last field"]),
        ("a,b\n1,,\n", ["line 2", "ends with the delimiter"]),
        ("a,b,\n1,2,\n3,4,\n", ["line 2", "trailing delimiters"]),
        ("a,b\n1,N/A\n", ["missing value 'N/A'", "line 2", "column 'b'"]),
        ("a,b\n1,2\n3,4,5\n", ["ragged", "line 3"]),
        ("# only a comment\n\n", ["empty"]),
    ],
)
@pytest.mark.parametrize("command", ["inspect", "sample"])
def test_text_that_is_an_error_names_the_line(tmp_path, text, expect, command):
    p = tmp_path / "t.csv"
    p.write_text(text)
    args = [command, str(p)] + (["--size", "2"] if command == "sample" else [])
    assert_one_line_error(runner.invoke(app, args), ["t.csv", *expect])


@pytest.mark.parametrize("command", ["inspect", "sample"])
def test_a_detected_header_is_announced_and_can_be_overruled(tmp_path, command):
    p = tmp_path / "h.csv"
    p.write_text("10,20\n" + PLAIN)  # numeric names: data unless told
    extra = ["--size", "100%"] if command == "sample" else ["-f", "json"]
    said = runner.invoke(app, [command, str(p), *extra])
    assert said.exit_code == 0 and "header" not in said.stderr
    q = tmp_path / "named.csv"
    q.write_text("a,b\n" + PLAIN)
    said = runner.invoke(app, [command, str(q), *extra])
    assert said.exit_code == 0
    assert said.stderr.strip() == f"cond: {q}: read line 1 as a header (a, b); pass --no-header if it is data"
    quiet = runner.invoke(app, [command, str(q), *extra, "--quiet"])
    assert quiet.exit_code == 0 and quiet.stderr == ""
    m, _ = matrix_of(p, header=True)  # --header: the numeric first line is names
    assert m.shape == X.shape
    forced = runner.invoke(app, [command, str(q), *extra, "--no-header"])  # 'a' is then data: an error
    assert_one_line_error(forced, ["named.csv", "non-numeric value 'a'", "line 1"])


def test_header_options_apply_to_text_only(tmp_path):
    np.save(tmp_path / "x.npy", X)
    for command, extra in (("inspect", []), ("sample", ["--size", "2"])):
        assert_one_line_error(
            runner.invoke(app, [command, str(tmp_path / "x.npy"), "--header", *extra]), ["--header", "csv and tsv"]
        )


def test_gzip_and_stdin_follow_the_same_rules(tmp_path):
    text = ("\ufeff# c\r\na,b\r\n" + PLAIN.replace("\n", "\r\n")).encode("utf-8")
    gz = tmp_path / "x.csv.gz"
    gz.write_bytes(gzip.compress(text))
    assert_reads_as(gz, X)
    out = runner.invoke(app, ["inspect", "-", "--input-format", "csv", "-f", "json", "-q"], input=text)
    assert out.exit_code == 0 and '"matrix_shape": [\n        4,\n        2\n      ]' in out.stdout


@pytest.mark.parametrize("value", ["0x10", "1.5abc", "nan", "--1", "1e"])
def test_matrix_market_values_that_are_not_numbers(tmp_path, value):
    p = tmp_path / "m.mtx"
    p.write_text(f"%%MatrixMarket matrix coordinate real general\n% c\n2 2 2\n1 1 2.5\n2 2 {value}\n")
    assert_one_line_error(runner.invoke(app, ["inspect", str(p)]), ["m.mtx", "line 5", repr(value)])


def test_parquet_string_column_is_refused_by_both_commands(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    p = tmp_path / "s.parquet"
    pq.write_table(pa.table({"id": ["a", "b", "c", "d"], "x": X[:, 0], "y": X[:, 1]}), p)
    for command, extra in (("inspect", []), ("sample", ["--size", "2"])):
        assert_one_line_error(
            runner.invoke(app, [command, str(p), *extra]), ["s.parquet", "column 'id'", "not numeric", "--columns"]
        )
    assert_reads_as(p, X, columns="x,y")
    assert_reads_as(p, X, columns="1:3")


def test_cond_reads_its_own_sample_output(tmp_path):
    rng = np.random.default_rng(5)
    a = rng.standard_normal((300, 4))
    np.save(tmp_path / "a.npy", a)
    for fmt, sep in (("tsv", "\t"), ("csv", ",")):
        out = tmp_path / f"rows.{fmt}"
        done = runner.invoke(
            app,
            [
                "sample",
                str(tmp_path / "a.npy"),
                "--size",
                "40",
                "--emit",
                "rows",
                "--format",
                fmt,
                "-o",
                str(out),
                "--seed",
                "3",
            ],
        )
        assert done.exit_code == 0, done.output
        picked = runner.invoke(app, ["sample", str(tmp_path / "a.npy"), "--size", "40", "--seed", "3", "--format", fmt])
        lines = [ln.split(sep) for ln in picked.stdout.splitlines()[2:]]
        index = np.array([int(x[0]) for x in lines])
        scale = np.array([float(x[2]) for x in lines])
        expected = a[index] * scale[:, None]  # the original rows times their scales
        m, result = matrix_of(out)
        np.testing.assert_allclose(result.rows, expected, rtol=1e-15)
        assert m.shape == expected.shape
