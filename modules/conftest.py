import pytest

from harness import Tollgate


@pytest.fixture
def tollgate_factory():
    """Builds Tollgate instances and always stops and removes them after the test."""
    made = []

    def make(http_block, **kwargs):
        t = Tollgate(http_block, **kwargs)
        made.append(t)
        return t

    yield make
    for t in made:
        t.cleanup()
