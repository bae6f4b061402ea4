import os

import pytest
from data import FIXTURES
from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

# Hypothesis profiles. `ci` (the default): seeded, so a CI run is reproducible, bounded so the
# suite stays within minutes, and no example database (nothing written into the repo). `long`,
# for a local hunt: `pytest -m hypothesis --hypothesis-profile long` (examples kept under
# ~/.cache/cond-hypothesis so that what it finds is replayed next time).
settings.register_profile(
    "ci",
    max_examples=25,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "long",
    max_examples=500,
    deadline=None,
    database=DirectoryBasedExampleDatabase(os.path.expanduser("~/.cache/cond-hypothesis")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
if os.environ.get("HYPOTHESIS_PROFILE") is None:
    settings.load_profile("ci")


@pytest.fixture
def fixtures_dir():
    return FIXTURES


def pytest_terminal_summary(terminalreporter):
    """The case catalogue's count: how many (case, path) pairs one checker judged."""
    from invariants import Tally

    if Tally.pairs:
        terminalreporter.write_line(
            f"case catalogue: {Tally.pairs} (case, path) pairs checked: "
            f"{len(Tally.cases)} cases x {len(Tally.paths)} paths"
        )


@pytest.fixture(autouse=True)
def _no_terminal_width(monkeypatch):
    """Tables fit ``COLUMNS`` when it is set; the suite checks output at full width unless a test
    sets it (tests/test_tables.py), whatever the shell running pytest exports."""
    monkeypatch.delenv("COLUMNS", raising=False)
