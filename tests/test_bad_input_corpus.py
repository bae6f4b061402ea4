"""The bad-input corpus (tests/bad_inputs.py) through every command: exit 2, one line on
stderr naming the file (and tensor), no traceback, nothing written, the input untouched."""

import hashlib
import os

import pytest
from bad_inputs import CORPUS
from invariants import assert_one_line_error
from typer.testing import CliRunner

from cond.cli.main import app

runner = CliRunner()
CASES = [(command, name) for command, cases in CORPUS.items() for name in cases]


def snapshot(folder):
    """Every file under ``folder`` with the hash of its bytes."""
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            path = os.path.join(root, f)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, folder)] = hashlib.sha256(fh.read()).hexdigest()
    return out


@pytest.mark.parametrize("command, name", CASES, ids=[f"{c}: {n}" for c, n in CASES])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, command, name):
    args, expect = CORPUS[command][name](str(tmp_path))
    before = snapshot(tmp_path)
    result = runner.invoke(app, [command, *args])
    assert_one_line_error(result, expect)
    assert snapshot(tmp_path) == before, "a failed command changed or left files"
    assert not (tmp_path / "pwned").exists(), "a pickle was loaded"


def test_every_command_has_a_corpus():
    assert {c: len(v) >= 15 for c, v in CORPUS.items()} == {c: True for c in CORPUS}, {
        c: len(v) for c, v in CORPUS.items()
    }
