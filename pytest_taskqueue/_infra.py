"""Infrastructure errors: stop the whole run with one line instead of failing every scenario.

An unreachable target or a stack that cannot start says nothing about conformance, so the run
ends at once with exit code 3 (pytest's ``INTERNAL_ERROR``: "the run could not be carried out")
and the report's verdict is ``error``. The current test is skipped with the message and the
session asked to stop, so pytest ends the run in its usual way (the terminal summary, with the
verdict, then the reason it stopped) rather than through ``pytest.exit``, whose exception would
show. Under pytest-xdist the worker also sends the message to the controller in ``workeroutput``;
the controller then stops the run and sets the same exit code.
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


def abort_run(request: pytest.FixtureRequest, message: str, detail: str = "") -> NoReturn:
    """Record ``message`` as the run's infrastructure error and stop the run (see the module doc).

    ``detail`` (a failing command line, a log tail) goes into the report and the terminal summary,
    above the verdict; the message itself stays on one line.
    """
    message = one_line(message)
    info = request.config.stash[INFO_KEY]
    if not info.infra_error:
        info.infra_error, info.infra_detail = message, detail.strip()
    request.session.shouldstop = message
    pytest.skip(message)
