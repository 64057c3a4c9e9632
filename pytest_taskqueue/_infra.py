"""Infrastructure errors: stop the whole run with one line instead of failing every scenario.

An unreachable target or a stack that cannot start says nothing about conformance, so the run
ends at once with exit code 3 (pytest's ``INTERNAL_ERROR``: "the run could not be carried out")
and the report's verdict is ``error``. Without xdist that is ``pytest.exit``. An xdist worker
cannot use ``pytest.exit`` (the controller would see a worker vanish with tests pending), so it
skips the current test with the message, asks its session to stop, and sends the message to the
controller in ``workeroutput``; the controller then stops the run and sets the same exit code.
"""

from __future__ import annotations

import contextlib
from typing import Any, Final, NoReturn

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

    ``detail`` (a failing command line, a log tail) goes to the terminal above the one-line
    message, and into the report; the message itself stays on one line.
    """
    message = one_line(message)
    config = request.config
    info = config.stash[INFO_KEY]
    if not info.infra_error:
        info.infra_error, info.infra_detail = message, detail.strip()
    if is_xdist_worker(config):
        request.session.shouldstop = message
        pytest.skip(message)
    if detail.strip():
        _show(config, detail.strip())
    pytest.exit(message, returncode=INFRA_EXIT_CODE)


def _show(config: pytest.Config, detail: str) -> None:
    """Write ``detail`` to the terminal now, past output capturing."""
    reporter: Any = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    capture: Any = config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        reporter.ensure_newline()
        reporter.write_sep("-", "taskqueue infrastructure error")
        reporter.write_line(detail)
