import pytest

from data import FIXTURES


@pytest.fixture
def fixtures_dir():
    return FIXTURES

