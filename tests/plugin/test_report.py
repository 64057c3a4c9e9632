"""The conformance table, the verdict, the JSON/Markdown report and the exit status they imply.

These runs need no target: any test with an area marker is a scenario, and the report is built
from test reports alone. The same run under ``-n 2`` must give the same report.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

_SCENARIOS = """
import pytest

@pytest.mark.lifecycle
@pytest.mark.required
def test_required_ok():
    pass

@pytest.mark.errors
@pytest.mark.optional
def test_optional_ok():
    pass

@pytest.mark.retry
def test_no_obligation_counts_as_required():
    pass

@pytest.mark.dlq
@pytest.mark.required
def test_skipped():
    pytest.skip("nothing to see here")

def test_not_a_scenario():
    pass
"""

_REQUIRED_FAILS = """
import pytest

@pytest.mark.idempotency
@pytest.mark.required
def test_required_broken():
    assert 1 == 2, "spec 3.3: same key, same task"
"""

_OPTIONAL_FAILS = """
import pytest

@pytest.mark.errors
@pytest.mark.optional
def test_optional_broken():
    assert False, "spec 9.1: SHOULD name the field"
"""

_SETUP_ERROR = """
import pytest

@pytest.fixture
def broken():
    raise RuntimeError("fixture exploded")

@pytest.mark.watch
@pytest.mark.required
def test_setup_error(broken):
    pass
"""


def _report(pytester: pytest.Pytester) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((pytester.path / "report.json").read_text())
    return document


def _by_id(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {scenario["id"]: scenario for scenario in document["scenarios"]}


def test_all_required_pass_is_conforming(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_suite=_SCENARIOS)
    result = inner.runpytest("--taskqueue-report=report.json")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "*= taskqueue conformance =*",
            "scenario * area * obligation * outcome",
            "test_suite.py::test_required_ok * lifecycle * required * passed",
            "test_suite.py::test_no_obligation_counts_as_required * retry * required * passed",
            "test_suite.py::test_skipped * dlq * required * skipped",
            "test_suite.py::test_optional_ok * errors * optional * passed",
            "",
            "taskqueue target: harness-owned reference stack  implementation: unknown*",
            "taskqueue verdict: CONFORMING",
        ]
    )
    assert "test_not_a_scenario" not in result.stdout.str().split("taskqueue conformance")[1]
    document = _report(inner)
    assert document["verdict"] == "conforming"
    assert document["summary"] == {"passed": 3, "failed": 0, "skipped": 1, "errors": 0}
    scenarios = _by_id(document)
    assert set(scenarios) == {
        "test_suite.py::test_required_ok",
        "test_suite.py::test_optional_ok",
        "test_suite.py::test_no_obligation_counts_as_required",
        "test_suite.py::test_skipped",
    }
    assert scenarios["test_suite.py::test_skipped"]["message"] == "nothing to see here"
    assert scenarios["test_suite.py::test_optional_ok"]["obligation"] == "optional"
    for scenario in scenarios.values():
        assert set(scenario) == {"id", "area", "obligation", "outcome", "duration_s", "message"}
        assert scenario["duration_s"] >= 0
    markdown = (inner.path / "report.md").read_text()
    assert markdown.startswith("## taskqueue conformance: CONFORMING\n")
    assert "| `test_suite.py::test_skipped` | dlq | required | skipped |" in markdown
    assert "| 3 | 0 | 1 | 0 |" in markdown


def test_required_failure_is_not_conforming(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_suite=_SCENARIOS, test_broken=_REQUIRED_FAILS)
    result = inner.runpytest("--taskqueue-report=report.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "test_broken.py::test_required_broken * idempotency * required * failed",
            "*",
            "taskqueue verdict: NOT CONFORMING (1 required scenario failed)",
        ]
    )
    document = _report(inner)
    assert document["verdict"] == "not-conforming"
    assert document["summary"]["failed"] == 1
    broken = _by_id(document)["test_broken.py::test_required_broken"]
    assert broken["outcome"] == "failed"
    assert "spec 3.3: same key, same task" in broken["message"]
    markdown = (inner.path / "report.md").read_text()
    assert markdown.startswith("## taskqueue conformance: NOT CONFORMING (1 required scenario failed)")


def test_optional_failure_is_reported_but_passes(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_suite=_SCENARIOS, test_optional=_OPTIONAL_FAILS)
    result = inner.runpytest("--taskqueue-report=report.json")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "test_optional.py::test_optional_broken * errors * optional * failed",
            "*",
            "taskqueue verdict: CONFORMING (1 optional scenario failed)",
        ]
    )
    document = _report(inner)
    assert document["verdict"] == "conforming"
    assert document["summary"]["failed"] == 1
    assert "SHOULD name the field" in _by_id(document)["test_optional.py::test_optional_broken"]["message"]


def test_optional_failure_fails_a_strict_run(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_suite=_SCENARIOS, test_optional=_OPTIONAL_FAILS)
    result = inner.runpytest("--taskqueue-report=report.json", "--taskqueue-strict")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["taskqueue verdict: NOT CONFORMING (1 optional scenario failed, strict run)"]
    )
    document = _report(inner)
    assert document["verdict"] == "not-conforming"
    assert document["strict"] is True


def test_other_failures_keep_their_exit_status(inner: pytest.Pytester) -> None:
    """An optional scenario's failure is forgiven; a failing plain test beside it is not."""
    inner.makepyfile(test_optional=_OPTIONAL_FAILS, test_plain="def test_plain(): assert False")
    result = inner.runpytest("--taskqueue-report=report.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert _report(inner)["verdict"] == "conforming"


def test_setup_error_counts_as_error(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_setup=_SETUP_ERROR)
    result = inner.runpytest("--taskqueue-report=report.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["taskqueue verdict: NOT CONFORMING (1 required scenario failed)"])
    document = _report(inner)
    assert document["summary"] == {"passed": 0, "failed": 0, "skipped": 0, "errors": 1}
    scenario = _by_id(document)["test_setup.py::test_setup_error"]
    assert scenario["outcome"] == "error"
    assert "fixture exploded" in scenario["message"]


def test_report_with_no_scenario_is_an_error_verdict(inner: pytest.Pytester) -> None:
    inner.makepyfile("def test_plain(): pass")
    result = inner.runpytest("--taskqueue-report=report.json")
    result.stdout.fnmatch_lines(["taskqueue verdict: ERROR (no conformance scenario ran)"])
    assert _report(inner)["verdict"] == "error"


def test_markdown_cells_are_escaped(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        test_pipe="""
        import pytest

        @pytest.mark.errors
        def test_pipe():
            assert False, "a | b\\nsecond line"
        """
    )
    inner.runpytest("--taskqueue-report=report.json")
    row = next(line for line in (inner.path / "report.md").read_text().splitlines() if "test_pipe" in line)
    assert "a \\| b" in row
    assert row.count("\n") == 0


def test_xdist_controller_builds_the_same_report(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_suite=_SCENARIOS, test_broken=_REQUIRED_FAILS, test_optional=_OPTIONAL_FAILS)
    result = inner.runpytest_subprocess("-n", "2", "--taskqueue-report=report.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["taskqueue verdict: NOT CONFORMING (1 required scenario failed)"])
    document = _report(inner)
    assert document["summary"] == {"passed": 3, "failed": 2, "skipped": 1, "errors": 0}
    scenarios = _by_id(document)
    assert scenarios["test_broken.py::test_required_broken"]["area"] == "idempotency"
    assert scenarios["test_optional.py::test_optional_broken"]["obligation"] == "optional"
    assert scenarios["test_suite.py::test_skipped"]["message"] == "nothing to see here"


def test_xdist_optional_failure_passes(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_suite=_SCENARIOS, test_optional=_OPTIONAL_FAILS)
    result = inner.runpytest_subprocess("-n", "2", "--taskqueue-report=report.json")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["taskqueue verdict: CONFORMING (1 optional scenario failed)"])


def test_junit_xml_carries_area_and_obligation(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_suite=_SCENARIOS)
    inner.runpytest("--junitxml=junit.xml")
    xml = (inner.path / "junit.xml").read_text()
    assert '<property name="taskqueue_area" value="lifecycle"' in xml
    assert '<property name="taskqueue_obligation" value="optional"' in xml


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_collection_error_is_never_conforming(inner: pytest.Pytester, xdist: list[str]) -> None:
    """A scenario module that cannot be imported must not vanish from the verdict."""
    inner.makepyfile(test_suite=_SCENARIOS, test_broken_import="import no_such_module_here")
    result = inner.runpytest_subprocess(
        *xdist, "--continue-on-collection-errors", "--taskqueue-report=report.json"
    )
    assert result.ret != pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        ["taskqueue verdict: ERROR (1 module could not be collected: test_broken_import.py)"]
    )
    assert _report(inner)["verdict"] == "error"
