"""Fixtures shared by tests/integration and modules/*/tests (pytest.ini puts harness.py on the path)."""
import pytest

from harness import Tollgate


@pytest.fixture
def tollgate_factory():
    """Builds Tollgate instances; after the test stops each, checks that neither the master nor a
    worker wrote a sanitizer report to standard error, and removes it."""
    made = []

    def make(http_block, **kwargs):
        t = Tollgate(http_block, **kwargs)
        made.append(t)
        return t

    yield make
    reports = []
    for t in made:
        t.stop()
        err = t.stderr()
        if "Sanitizer" in err or "runtime error" in err:
            reports.append(err[-3000:])
        t.cleanup()
    assert not reports, reports[0]
