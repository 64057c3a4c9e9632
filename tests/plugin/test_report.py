"""The conformance table, the verdict, the JSON/Markdown report and the exit status they imply.

These runs need no target: any test with an area marker is a scenario, and the report is built
from test reports alone. The same run under ``-n 2`` must give the same report. The inner runs'
catalogue (what a run must cover to be CONFORMING; normally the bundled ``scenarios`` package) is
their own ``catalogue/`` folder, set by a conftest.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

_CATALOGUE_CONFTEST = """
import pathlib

import pytest

from pytest_taskqueue._collect import BUNDLED_KEY


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    config.stash[BUNDLED_KEY] = (pathlib.Path(__file__).parent / "catalogue").resolve()
"""

_SCENARIOS = """
import pytest

@pytest.mark.lifecycle
@pytest.mark.required
@pytest.mark.spec("2.2", "4.3")
def test_required_ok():
    pass

@pytest.mark.errors
@pytest.mark.optional
@pytest.mark.spec("9.1")
def test_optional_ok():
    pass

@pytest.mark.retry
@pytest.mark.spec("5.3")
def test_no_obligation_counts_as_required():
    pass

@pytest.mark.faults
@pytest.mark.required
@pytest.mark.opt_in
def test_opt_in():
    pytest.skip("not requested")
"""

_NEEDS_BACKENDS = """
import pytest

from pytest_taskqueue._collect import skip_for_level

@pytest.mark.dlq
@pytest.mark.required
@pytest.mark.spec("10.2")
def test_needs_backends(request):
    skip_for_level(request.node, "needs harness-owned backends")
"""

_SELF_SKIP = """
import pytest

@pytest.mark.errors
@pytest.mark.required
def test_skips_itself():
    pytest.skip("max_payload_bytes too large to test")
"""

_REQUIRED_FAILS = """
import pytest

@pytest.mark.idempotency
@pytest.mark.required
@pytest.mark.spec("3.3")
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


def _catalogue(inner: pytest.Pytester, **modules: str) -> None:
    """Make ``catalogue/<name>.py`` for each module, and the conftest that makes it the catalogue."""
    inner.makeconftest(_CATALOGUE_CONFTEST)
    folder = inner.mkdir("catalogue")
    for name, text in modules.items():
        (folder / f"{name}.py").write_text(text)


def _report(pytester: pytest.Pytester) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((pytester.path / "report.json").read_text())
    return document


def _by_id(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {scenario["id"]: scenario for scenario in document["scenarios"]}


def _not_run(document: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {entry["id"]: (entry["why"], entry["reason"]) for entry in document["not_run"]}


def test_every_required_scenario_of_the_catalogue_passing_is_conforming(inner: pytest.Pytester) -> None:
    _catalogue(inner, test_suite=_SCENARIOS)
    inner.makepyfile(test_plain="def test_not_a_scenario(): pass")
    result = inner.runpytest("--taskqueue-report=report.json")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "*= taskqueue conformance =*",
            "scenario * area * obligation * outcome",
            "catalogue/test_suite.py::test_required_ok * lifecycle * required * passed",
            "catalogue/test_suite.py::test_no_obligation_counts_as_required * retry * required * passed",
            "catalogue/test_suite.py::test_optional_ok * errors * optional * passed",
            "catalogue/test_suite.py::test_opt_in * faults * required * skipped",
            "",
            "taskqueue target: harness-owned reference stack  implementation: unknown*",
            "taskqueue level: full level*",
            "taskqueue: 1 required scenario not requested: not requested",
            "  catalogue/test_suite.py::test_opt_in",
            "taskqueue verdict: CONFORMING",
        ]
    )
    assert "test_not_a_scenario" not in result.stdout.str().split("taskqueue conformance")[1]
    document = _report(inner)
    assert document["verdict"] == "conforming" and document["verdict_headline"] == "CONFORMING"
    assert document["level"] == "full"
    assert document["summary"] == {"passed": 3, "failed": 0, "skipped": 1, "errors": 0}
    scenarios = _by_id(document)
    assert set(scenarios) == {
        "catalogue/test_suite.py::test_required_ok",
        "catalogue/test_suite.py::test_optional_ok",
        "catalogue/test_suite.py::test_no_obligation_counts_as_required",
        "catalogue/test_suite.py::test_opt_in",
    }
    assert scenarios["catalogue/test_suite.py::test_optional_ok"]["obligation"] == "optional"
    assert scenarios["catalogue/test_suite.py::test_required_ok"]["spec"] == ["2.2", "4.3"]
    for scenario in scenarios.values():
        assert set(scenario) == {"id", "area", "obligation", "spec", "outcome", "duration_s", "message"}
        assert scenario["duration_s"] >= 0
    assert _not_run(document) == {"catalogue/test_suite.py::test_opt_in": ("opt-in", "not requested")}
    coverage = {row["section"]: row for row in document["coverage"]}
    assert list(coverage) == ["2.2", "4.3", "5.3"]  # required scenarios only, in section order
    assert coverage["5.3"]["status"] == "held" and coverage["5.3"]["passed"] == 1
    markdown = (inner.path / "report.md").read_text()
    assert markdown.startswith("## taskqueue conformance: CONFORMING\n")
    assert "| `catalogue/test_suite.py::test_opt_in` | faults | required | skipped |" in markdown
    assert "| 5.3 | 1 | 1 | 0 | 0 | held |" in markdown
    assert "| 3 | 0 | 1 | 0 |" in markdown


def test_a_plain_target_reaches_the_api_level_and_never_says_bare_conforming(inner: pytest.Pytester) -> None:
    """Scenarios the level cannot reach are listed with their reason; such a run still exits 0."""
    _catalogue(inner, test_suite=_SCENARIOS, test_owned_backends=_NEEDS_BACKENDS)
    result = inner.runpytest("catalogue", "--taskqueue-target=127.0.0.1:1", "--taskqueue-report=report.json")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "taskqueue level: API level*",
            "taskqueue: 1 required scenario not run at this level: needs harness-owned backends",
            "  catalogue/test_owned_backends.py::test_needs_backends",
            "taskqueue verdict: CONFORMING AT API LEVEL (1 required scenario needs harness-owned backends "
            "and did not run; *--taskqueue-target-cmd*)",
        ]
    )
    assert "taskqueue verdict: CONFORMING\n" not in result.stdout.str()
    document = _report(inner)
    assert document["verdict"] == "conforming-at-api-level" and document["level"] == "api"
    assert document["verdict_headline"].startswith("CONFORMING AT API LEVEL (")
    assert _not_run(document)["catalogue/test_owned_backends.py::test_needs_backends"] == (
        "level",
        "needs harness-owned backends",
    )
    assert {row["section"]: row["status"] for row in document["coverage"]}["10.2"] == "not checked"
    markdown = (inner.path / "report.md").read_text()
    assert markdown.startswith("## taskqueue conformance: CONFORMING AT API LEVEL (")
    row = "| `catalogue/test_owned_backends.py::test_needs_backends` | level | needs harness-owned backends |"
    assert row in markdown


def test_a_run_whose_fixtures_own_nothing_is_at_the_api_level(inner: pytest.Pytester) -> None:
    """No --taskqueue-target, but the level-bound scenarios skipped (an overridden taskqueue_stack)."""
    _catalogue(inner, test_suite=_SCENARIOS, test_owned_backends=_NEEDS_BACKENDS)
    result = inner.runpytest("--taskqueue-report=report.json")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        ["taskqueue level: API level*", "*", "taskqueue verdict: CONFORMING AT API LEVEL (*"]
    )
    document = _report(inner)
    assert document["verdict"] == "conforming-at-api-level" and document["level"] == "api"


def test_a_required_scenario_that_skips_itself_is_not_conforming(inner: pytest.Pytester) -> None:
    """Only the run's level may keep a required scenario from running; any other skip counts."""
    _catalogue(inner, test_suite=_SCENARIOS, test_self=_SELF_SKIP)
    result = inner.runpytest("--taskqueue-report=report.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "taskqueue: 1 required scenario skipped (counts against the verdict): max_payload_bytes *",
            "  catalogue/test_self.py::test_skips_itself",
            "taskqueue verdict: NOT CONFORMING (1 required scenario skipped for a reason other than "
            "the run's level)",
        ]
    )
    assert _report(inner)["verdict"] == "not-conforming"


@pytest.mark.parametrize(
    ("narrowing", "left_out"),
    [
        (
            ("-m", "not retry and not idempotency"),
            {
                "catalogue/test_suite.py::test_no_obligation_counts_as_required": "deselected",
                "catalogue/test_broken.py::test_required_broken": "deselected",
            },
        ),
        (
            ("-k", "not required_ok and not broken"),
            {
                "catalogue/test_suite.py::test_required_ok": "deselected",
                "catalogue/test_broken.py::test_required_broken": "deselected",
            },
        ),
        (("catalogue/test_suite.py",), {"catalogue/test_broken.py": "not collected"}),
        (
            ("catalogue/test_suite.py::test_required_ok",),
            {"catalogue/test_suite.py": "narrowed", "catalogue/test_broken.py": "not collected"},
        ),
    ],
    ids=["-m", "-k", "path", "nodeid"],
)
def test_a_narrowed_run_is_partial_and_lists_what_it_left_out(
    inner: pytest.Pytester, narrowing: tuple[str, ...], left_out: dict[str, str]
) -> None:
    """The catalogue has a failing required scenario: leaving it out must never pass for conforming."""
    _catalogue(inner, test_suite=_SCENARIOS, test_broken=_REQUIRED_FAILS)
    result = inner.runpytest(*narrowing, "--taskqueue-report=report.json")
    assert result.ret == 6, result.stdout.str()
    result.stdout.fnmatch_lines(["taskqueue verdict: PARTIAL (* left out by the selection)"])
    document = _report(inner)
    assert document["verdict"] == "partial"
    not_run = _not_run(document)
    for scenario, why in left_out.items():
        assert scenario in not_run and why in not_run[scenario][1], not_run


def test_a_narrowed_run_with_a_failure_is_not_conforming(inner: pytest.Pytester) -> None:
    _catalogue(inner, test_suite=_SCENARIOS, test_broken=_REQUIRED_FAILS)
    result = inner.runpytest("-m", "idempotency", "--taskqueue-report=report.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert _report(inner)["verdict"] == "not-conforming"


def test_a_run_without_the_catalogue_is_partial(inner: pytest.Pytester) -> None:
    """An implementation's own scenarios alone do not make it conforming."""
    inner.makepyfile(test_mine=_SCENARIOS)
    result = inner.runpytest("--taskqueue-report=report.json")
    assert result.ret == 6
    result.stdout.fnmatch_lines(["taskqueue verdict: PARTIAL (*)"])
    assert _not_run(_report(inner))


def test_required_failure_is_not_conforming(inner: pytest.Pytester) -> None:
    _catalogue(inner, test_suite=_SCENARIOS, test_broken=_REQUIRED_FAILS)
    result = inner.runpytest("--taskqueue-report=report.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "catalogue/test_broken.py::test_required_broken * idempotency * required * failed",
            "*",
            "taskqueue verdict: NOT CONFORMING (1 required scenario failed)",
        ]
    )
    document = _report(inner)
    assert document["verdict"] == "not-conforming"
    assert document["summary"]["failed"] == 1
    broken = _by_id(document)["catalogue/test_broken.py::test_required_broken"]
    assert broken["outcome"] == "failed"
    assert "spec 3.3: same key, same task" in broken["message"]
    assert {row["section"]: row["status"] for row in document["coverage"]}["3.3"] == "violated"
    markdown = (inner.path / "report.md").read_text()
    assert markdown.startswith("## taskqueue conformance: NOT CONFORMING (1 required scenario failed)")


def test_optional_failure_is_reported_but_passes(inner: pytest.Pytester) -> None:
    _catalogue(inner, test_suite=_SCENARIOS, test_optional=_OPTIONAL_FAILS)
    result = inner.runpytest("--taskqueue-report=report.json")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "catalogue/test_optional.py::test_optional_broken * errors * optional * failed",
            "*",
            "taskqueue verdict: CONFORMING (1 optional scenario failed)",
        ]
    )
    document = _report(inner)
    assert document["verdict"] == "conforming"
    assert document["summary"]["failed"] == 1
    message = _by_id(document)["catalogue/test_optional.py::test_optional_broken"]["message"]
    assert "SHOULD name the field" in message


def test_optional_failure_fails_a_strict_run(inner: pytest.Pytester) -> None:
    _catalogue(inner, test_suite=_SCENARIOS, test_optional=_OPTIONAL_FAILS)
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
    _catalogue(inner, test_suite=_SCENARIOS, test_optional=_OPTIONAL_FAILS)
    inner.makepyfile(test_plain="def test_plain(): assert False")
    result = inner.runpytest("--taskqueue-report=report.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert _report(inner)["verdict"] == "conforming"


def test_setup_error_counts_as_error(inner: pytest.Pytester) -> None:
    _catalogue(inner, test_setup=_SETUP_ERROR)
    result = inner.runpytest("--taskqueue-report=report.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["taskqueue verdict: NOT CONFORMING (1 required scenario failed)"])
    document = _report(inner)
    assert document["summary"] == {"passed": 0, "failed": 0, "skipped": 0, "errors": 1}
    scenario = _by_id(document)["catalogue/test_setup.py::test_setup_error"]
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
    _catalogue(inner, test_suite=_SCENARIOS, test_broken=_REQUIRED_FAILS, test_optional=_OPTIONAL_FAILS)
    result = inner.runpytest_subprocess("-n", "2", "--taskqueue-report=report.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["taskqueue verdict: NOT CONFORMING (1 required scenario failed)"])
    document = _report(inner)
    assert document["summary"] == {"passed": 3, "failed": 2, "skipped": 1, "errors": 0}
    scenarios = _by_id(document)
    assert scenarios["catalogue/test_broken.py::test_required_broken"]["area"] == "idempotency"
    assert scenarios["catalogue/test_optional.py::test_optional_broken"]["obligation"] == "optional"
    assert scenarios["catalogue/test_suite.py::test_opt_in"]["message"] == "not requested"


def test_xdist_optional_failure_passes(inner: pytest.Pytester) -> None:
    _catalogue(inner, test_suite=_SCENARIOS, test_optional=_OPTIONAL_FAILS)
    result = inner.runpytest_subprocess("-n", "2", "--taskqueue-report=report.json")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["taskqueue verdict: CONFORMING (1 optional scenario failed)"])


def test_xdist_narrowed_run_is_partial(inner: pytest.Pytester) -> None:
    """Workers collect; the controller learns from them what the selection left out."""
    _catalogue(inner, test_suite=_SCENARIOS)
    result = inner.runpytest_subprocess("-n", "2", "-m", "not retry", "--taskqueue-report=report.json")
    assert result.ret == 6
    assert "catalogue/test_suite.py::test_no_obligation_counts_as_required" in _not_run(_report(inner))


def test_junit_xml_carries_area_obligation_and_the_verdict(inner: pytest.Pytester) -> None:
    _catalogue(inner, test_suite=_SCENARIOS)
    inner.runpytest("--junitxml=junit.xml")
    xml = (inner.path / "junit.xml").read_text()
    assert '<property name="taskqueue_area" value="lifecycle"' in xml
    assert '<property name="taskqueue_obligation" value="optional"' in xml
    assert '<property name="taskqueue_verdict" value="conforming"' in xml
    assert '<property name="taskqueue_level" value="full"' in xml


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_collection_error_is_never_conforming(inner: pytest.Pytester, xdist: list[str]) -> None:
    """A scenario module that cannot be imported must not vanish from the verdict."""
    _catalogue(inner, test_suite=_SCENARIOS)
    inner.makepyfile(test_broken_import="import no_such_module_here")
    result = inner.runpytest_subprocess(
        *xdist, "--continue-on-collection-errors", "--taskqueue-report=report.json"
    )
    assert result.ret != pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        ["taskqueue verdict: ERROR (1 module could not be collected: test_broken_import.py)"]
    )
    assert _report(inner)["verdict"] == "error"
