"""Infrastructure errors: an unreachable target stops the run with one line and exit code 3.

The check is lazy: runs that never use the harness do not contact the target at all.
"""

from __future__ import annotations

import json

import pytest

_USES_HARNESS = """
import pytest

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.lifecycle, pytest.mark.required]

async def test_one(harness):
    await harness.submit()

async def test_two(harness):
    await harness.submit()

async def test_three(harness):
    await harness.submit()
"""


def _error_lines(output: str, target: str) -> list[str]:
    return [line for line in output.splitlines() if f"taskqueue: target {target} is unreachable" in line]


def test_unreachable_target_stops_the_run_with_one_line(inner: pytest.Pytester, dead_target: str) -> None:
    inner.makepyfile(test_scenarios=_USES_HARNESS)
    result = inner.runpytest_subprocess(
        "test_scenarios.py",
        f"--taskqueue-target={dead_target}",
        "--taskqueue-connect-timeout=1",
        "--taskqueue-report=report.json",
    )
    assert result.ret == 3
    output = result.stdout.str() + result.stderr.str()
    lines = _error_lines(output, dead_target)
    assert len(lines) == 1, output
    assert "connection refused" in lines[0]
    assert "FAILED" not in output and "ERROR at setup" not in output  # no pile of failed scenarios
    assert "_pytest" not in output and "Exit:" not in output, output  # no pytest internals
    result.stdout.fnmatch_lines(["taskqueue verdict: ERROR (infrastructure error, the run stopped)"])
    report = inner.path / "report.json"
    result.stdout.fnmatch_lines([f"taskqueue report: {report}, {report.with_suffix('.md')}"])
    document = json.loads(report.read_text())
    assert document["verdict"] == "error"
    assert document["verdict_reason"].startswith(f"taskqueue: target {dead_target} is unreachable")
    assert "connection refused" in (inner.path / "report.md").read_text()


def test_refused_connection_is_not_waited_for(inner: pytest.Pytester, dead_target: str) -> None:
    """A refused connection stops the run at once, not after ``--taskqueue-connect-timeout``.

    The 600 s deadline would outlast the test's own timeout if the run waited for it.
    """
    inner.makepyfile(test_scenarios=_USES_HARNESS)
    result = inner.runpytest_subprocess(
        "test_scenarios.py",
        f"--taskqueue-target={dead_target}",
        "--taskqueue-connect-timeout=600",
        timeout=120,
    )
    assert result.ret == 3
    assert len(_error_lines(result.stdout.str(), dead_target)) == 1, result.stdout.str()


def test_unresolvable_host_is_reported_at_once(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_scenarios=_USES_HARNESS)
    target = "no-such-host.invalid:50051"
    result = inner.runpytest_subprocess(
        "test_scenarios.py", f"--taskqueue-target={target}", "--taskqueue-connect-timeout=600", timeout=120
    )
    assert result.ret == 3
    lines = _error_lines(result.stdout.str(), target)
    assert len(lines) == 1 and "does not resolve" in lines[0], result.stdout.str()


def test_unreachable_target_under_xdist(inner: pytest.Pytester, dead_target: str) -> None:
    inner.makepyfile(test_scenarios=_USES_HARNESS)
    result = inner.runpytest_subprocess(
        "test_scenarios.py",
        "-n",
        "2",
        f"--taskqueue-target={dead_target}",
        "--taskqueue-connect-timeout=1",
        "--taskqueue-report=report.json",
    )
    assert result.ret == 3
    output = result.stdout.str()
    assert len(_error_lines(output, dead_target)) == 1, output
    result.stdout.fnmatch_lines(["taskqueue verdict: ERROR (infrastructure error, the run stopped)"])
    assert "FAILED" not in output and "ERROR at setup" not in output
    document = json.loads((inner.path / "report.json").read_text())
    assert document["verdict"] == "error"
    assert dead_target in document["verdict_reason"]


def test_wrong_token_is_an_infrastructure_error(
    inner: pytest.Pytester, fake_server: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TASKQUEUE_TOKEN", raising=False)
    target = fake_server("--token=s3cret")  # type: ignore[operator]
    inner.makepyfile(test_scenarios=_USES_HARNESS)
    result = inner.runpytest_subprocess(
        "test_scenarios.py", f"--taskqueue-target={target}", "--taskqueue-connect-timeout=1"
    )
    assert result.ret == 3
    lines = _error_lines(result.stdout.str() + result.stderr.str(), target)
    assert len(lines) == 1 and "UNAUTHENTICATED" in lines[0]
    result = inner.runpytest_subprocess(
        "test_scenarios.py", f"--taskqueue-target={target}", "--taskqueue-token=s3cret"
    )
    result.assert_outcomes(passed=3)


def test_plain_tests_never_contact_the_target(
    inner: pytest.Pytester, dead_target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CI may export TASKQUEUE_TARGET for every job: unrelated tests must not notice."""
    monkeypatch.setenv("TASKQUEUE_TARGET", dead_target)
    monkeypatch.setenv("TASKQUEUE_CONNECT_TIMEOUT", "30")
    inner.makepyfile(test_plain="def test_a(): pass\ndef test_b(): pass")
    result = inner.runpytest("test_plain.py")
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.OK


def test_stack_that_cannot_start_stops_the_run_with_one_line(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a target the harness starts the reference stack; with no ``java`` on PATH it cannot."""
    monkeypatch.delenv("TASKQUEUE_TARGET", raising=False)
    monkeypatch.setenv("PATH", str(inner.path / "empty-bin"))  # the inner python is started by full path
    inner.makepyfile(test_scenarios=_USES_HARNESS)
    result = inner.runpytest_subprocess("test_scenarios.py", "--taskqueue-report=report.json")
    assert result.ret == 3
    output = result.stdout.str() + result.stderr.str()
    lines = [line for line in output.splitlines() if "taskqueue: the reference stack failed to start" in line]
    assert len(lines) == 1 and "java" in lines[0], output
    assert "FAILED" not in output and "ERROR at setup" not in output
    assert json.loads((inner.path / "report.json").read_text())["verdict"] == "error"
