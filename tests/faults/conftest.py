"""Fixtures for tests/faults: inner pytest runs of the fault scenarios, free of outer settings.

Inner runs load the installed plugin through its ``pytest11`` entry point, as a user's run does.
Runs that start stacks are subprocesses (``runpytest_subprocess``): grpc and asyncio are safer
there, and every process they start dies with them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

INNER_INI = """
[pytest]
asyncio_default_fixture_loop_scope = function
"""


_CACHE = os.environ.get("TASKQUEUE_CACHE_DIR") or str(Path.home() / ".cache" / "pytest-taskqueue")
"""The outer run's cache folder, read before pytester points HOME at its temporary folder."""


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester folder with a quiet ini and no outer TASKQUEUE_* settings; the cache folder stays
    the outer run's (pytester's own HOME would make every inner stack fetch and build it again)."""
    for name in [n for n in os.environ if n.startswith("TASKQUEUE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TASKQUEUE_CACHE_DIR", _CACHE)
    pytester.makeini(INNER_INI)
    return pytester
