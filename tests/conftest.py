import pytest

from data import FIXTURES


@pytest.fixture
def fixtures_dir():
    return FIXTURES



def pytest_terminal_summary(terminalreporter):
    """The case catalogue's count: how many (case, path) pairs one checker judged."""
    from invariants import Tally

    if Tally.pairs:
        terminalreporter.write_line(f"case catalogue: {Tally.pairs} (case, path) pairs checked: "
                                    f"{len(Tally.cases)} cases x {len(Tally.paths)} paths")
