"""Fixtures for running the bundled suite against the in-memory test servers with pytester.

Inner runs are subprocesses (``runpytest_subprocess``: grpc and asyncio are safer there) in an
empty temporary folder, so they collect the installed ``scenarios`` package through the plugin's
``pytest11`` entry point exactly as an implementer's run does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from tests.servers import running_server
from tests.suite._runs import SuiteRun, SuiteRunner

INNER_INI = """
[pytest]
asyncio_default_fixture_loop_scope = function
"""
"""pytest-asyncio in strict mode (as in a user's empty folder), with its loop-scope warning silenced."""

_INNER_TIMEOUT_S = 600.0


@pytest.fixture
def run_suite(pytester: pytest.Pytester) -> Iterator[SuiteRunner]:
    """``run_suite(*breaks, args=(...))``: start the in-memory server with these breaks, run the suite.

    The server is stopped when the test ends, whatever happens.
    """
    pytester.makeini(INNER_INI)
    with ExitStack() as servers:

        def run(*breaks: str, args: tuple[str, ...] = ()) -> SuiteRun:
            target = servers.enter_context(running_server(*breaks))
            report_path = pytester.path / "report.json"
            report_path.unlink(missing_ok=True)
            result = pytester.runpytest_subprocess(
                f"--taskqueue-target={target}",
                f"--taskqueue-report={report_path}",
                "-p",
                "no:cacheprovider",
                *args,
                timeout=_INNER_TIMEOUT_S,
            )
            if not report_path.exists():
                pytest.fail(
                    "the inner run wrote no report; output:\n"
                    + "\n".join(result.outlines[-40:] + result.errlines[-20:])
                )
            return SuiteRun(result=result, report=json.loads(report_path.read_text()))

        yield run
