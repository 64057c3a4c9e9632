"""The bundled suite: ``pytest --taskqueue-target=HOST:PORT`` in an empty folder runs the scenarios."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import pytest


def _collected(result: pytest.RunResult) -> list[str]:
    return [line for line in result.stdout.lines if "::test_" in line]


def test_empty_folder_with_a_target_collects_the_bundled_scenarios(
    inner: pytest.Pytester, dead_target: str
) -> None:
    """Collection alone never contacts the target."""
    result = inner.runpytest(f"--taskqueue-target={dead_target}", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    collected = _collected(result)
    assert any(line.startswith("lifecycle.py::test_") for line in collected), collected
    assert any(line.startswith("idempotency.py::test_") for line in collected), collected
    assert not any("_checks.py" in line or "_support.py" in line for line in collected)


def test_empty_folder_with_a_target_command_collects_the_bundled_scenarios(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--taskqueue-target-cmd`` names the implementation as ``--taskqueue-target`` does."""
    monkeypatch.delenv("TASKQUEUE_TARGET", raising=False)
    result = inner.runpytest("--taskqueue-target-cmd=./my-server --port {port}", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    assert any(line.startswith("lifecycle.py::test_") for line in _collected(result)), result.stdout.str()


def test_empty_folder_without_a_target_collects_nothing(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TASKQUEUE_TARGET", raising=False)
    result = inner.runpytest("--collect-only", "-q")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_pyargs_collects_the_bundled_scenarios_anywhere(inner: pytest.Pytester) -> None:
    result = inner.runpytest("--pyargs", "scenarios", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    assert any("lifecycle.py::test_" in line for line in _collected(result))


def test_explicit_paths_are_respected(inner: pytest.Pytester, dead_target: str) -> None:
    inner.makepyfile(test_mine="def test_mine(): pass")
    result = inner.runpytest("test_mine.py", f"--taskqueue-target={dead_target}", "--collect-only", "-q")
    assert _collected(result) == ["test_mine.py::test_mine"]


def test_bundled_suite_passes_against_the_conforming_server(
    inner: pytest.Pytester, inmemory_server: Callable[..., str]
) -> None:
    target = inmemory_server()
    result = inner.runpytest_subprocess(f"--taskqueue-target={target}", "--taskqueue-report=report.json")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()[-3000:]
    result.stdout.fnmatch_lines(
        [
            f"taskqueue target: {target}  implementation: *",
            "taskqueue level: API level*",
            "taskqueue: * required scenarios not run at this level: *",
            "*",
            "taskqueue verdict: CONFORMING AT API LEVEL (* required scenarios need harness-owned backends *)",
        ]
    )
    document = json.loads((inner.path / "report.json").read_text())
    assert document["verdict"] == "conforming-at-api-level"
    assert document["not_run"] and {entry["why"] for entry in document["not_run"]} <= {"level", "opt-in"}
    areas = {scenario["area"] for scenario in document["scenarios"]}
    assert {"lifecycle", "idempotency", "retry", "errors"} <= areas
    assert all(scenario["id"].startswith("scenarios/") for scenario in document["scenarios"])
    skipped = [s for s in document["scenarios"] if s["outcome"] == "skipped"]
    assert skipped and all(s["message"] for s in skipped)


def test_bundled_suite_fails_against_a_broken_server(
    inner: pytest.Pytester, inmemory_server: Callable[..., str]
) -> None:
    target = inmemory_server("extra_attempt")
    result = inner.runpytest_subprocess(
        f"--taskqueue-target={target}", "--taskqueue-report=report.json", "-m", "retry"
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["taskqueue verdict: NOT CONFORMING (* required scenario* failed*)"])
    document = json.loads((inner.path / "report.json").read_text())
    failed = [s for s in document["scenarios"] if s["outcome"] == "failed"]
    assert failed and all("spec " in s["message"] for s in failed), failed  # the broken rule is named


def test_a_users_own_scenarios_package_is_not_taken_for_the_bundled_suite(
    inner: pytest.Pytester, inmemory_server: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A package named ``scenarios`` earlier on sys.path (the user's) does not hide the bundled one."""
    mine = inner.mkpydir("scenarios")
    (mine / "__init__.py").write_text('"""The user\'s own package that happens to be named scenarios."""\n')
    (mine / "helpers.py").write_text("def helper() -> int:\n    return 1\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(inner.path), os.environ.get("PYTHONPATH", "")]))
    target = inmemory_server()
    result = inner.runpytest_subprocess(f"--taskqueue-target={target}", "-m", "lifecycle and not burst")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) > 0 and not outcomes.get("failed"), result.stdout.str()[-3000:]
    result.stdout.fnmatch_lines(["*lifecycle.py ..*"])
    assert "helpers.py" not in result.stdout.str()
