"""Infrastructure errors: stop the whole run with one line instead of failing every scenario.

An unreachable target or a stack that cannot start says nothing about conformance, so the run
ends at once with exit code 3 (pytest's ``INTERNAL_ERROR``: "the run could not be carried out")
and the report's verdict is ``error``. Without xdist that is ``pytest.exit``. An xdist worker
cannot use ``pytest.exit`` (the controller would see a worker vanish with tests pending), so it
skips the current test with the message, asks its session to stop, and sends the message to the
controller in ``workeroutput``; the controller then stops the run and sets the same exit code.
"""

from __future__ import annotations

from typing import Final, NoReturn

import pytest

from pytest_taskqueue._report import INFO_KEY

__all__ = ["INFRA_EXIT_CODE", "abort_run", "is_xdist_worker", "one_line"]

INFRA_EXIT_CODE: Final = pytest.ExitCode.INTERNAL_ERROR
"""Exit status of a run stopped by an infrastructure error (3)."""


def is_xdist_worker(config: pytest.Config) -> bool:
    """True in a pytest-xdist worker process."""
    return hasattr(config, "workerinput")


def one_line(text: str) -> str:
    """Whitespace, newlines included, collapsed: the message must stay on one line."""
    return " ".join(text.split())


def abort_run(request: pytest.FixtureRequest, message: str) -> NoReturn:
    """Record ``message`` as the run's infrastructure error and stop the run (see the module doc)."""
    message = one_line(message)
    info = request.config.stash[INFO_KEY]
    info.infra_error = info.infra_error or message
    if is_xdist_worker(request.config):
        request.session.shouldstop = message
        pytest.skip(message)
    pytest.exit(message, returncode=INFRA_EXIT_CODE)
