"""A user's run in their own folder: no warnings from the plugin's dependencies, no stray files."""

from __future__ import annotations

import importlib.util
import json

import pytest


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def test_empty_folder_run_has_no_warning_lines(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ini file at all: pytest-asyncio's loop-scope deprecation warning must not show."""
    monkeypatch.delenv("TASKQUEUE_TARGET", raising=False)
    result = pytester.runpytest_subprocess(
        "--taskqueue-target=127.0.0.1:50051", "--collect-only", "-q", "-p", "no:cacheprovider"
    )
    assert result.ret == pytest.ExitCode.OK
    output = result.stdout.str() + result.stderr.str()
    assert "Warning" not in output and "warnings.warn" not in output, output
    # pytester's own files aside; pytest-benchmark is no dependency (an older dev install may have it).
    ignored = {"stdout", "stderr", "runpytest-0", "runpytest-current"} | (
        {".benchmarks"} if _has("pytest_benchmark") else set()
    )
    assert sorted(path.name for path in pytester.path.iterdir() if path.name not in ignored) == []


def test_the_users_own_loop_scope_wins(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = module\n")
    result = pytester.runpytest("--taskqueue-target=127.0.0.1:50051", "--collect-only", "-q")
    result.stdout.no_fnmatch_line("*asyncio_default_fixture_loop_scope=function*")
    verbose = pytester.runpytest("--taskqueue-target=127.0.0.1:50051", "--collect-only")
    verbose.stdout.fnmatch_lines(["*asyncio_default_fixture_loop_scope=module*"])


def test_a_target_command_that_cannot_run_is_named_in_the_report(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The summary and report name the implementation command, not the reference stack."""
    for name in ("TASKQUEUE_TARGET", "TASKQUEUE_TARGET_CMD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", str(pytester.path / "empty-bin"))  # no java: the backends cannot start
    command = "./my-server --port {port}"
    result = pytester.runpytest_subprocess(
        f"--taskqueue-target-cmd={command}", "--taskqueue-report=report.json", "-m", "lifecycle"
    )
    assert result.ret == 3, result.stdout.str()
    document = json.loads((pytester.path / "report.json").read_text())
    assert document["target"] == f"{command} (started by the harness)"
    assert "reference stack" not in document["target"]
