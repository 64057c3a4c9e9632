"""ci/conformance.sh, the gate implementations copy: by default the harness runs the implementation
against backends it owns (the full level, the only one that can say CONFORMING); the plain-target
mode stays available, says what it does not check, and reaches at best CONFORMING AT API LEVEL."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_taskqueue._procs import free_port

ROOT = Path(__file__).resolve().parent.parent
GATE = ROOT / "ci" / "conformance.sh"
PYTHON = shlex.quote(sys.executable)
_REFERENCE = (
    "-m reference_server {mode} --port {port} --dynamodb-endpoint {{dynamodb}} --sqs-endpoint {{sqs}} "
    "--region {{region}} --table {{table}} --queue {{queue}} --dead-letter-queue {{dlq}} "
    "--visibility-timeout 2 --retry-backoff-ms 50 --retry-backoff-max-ms 200"
)
_GATE_TIMEOUT_S = 1200.0
_NOT_CHECKED = "the dead-letter queue, worker recovery, durability and fault rules are NOT checked"


def _run_gate(tmp_path: Path, gate_env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith("TASKQUEUE_") or k == "TASKQUEUE_CACHE_DIR"
        },
        "PYTHON": sys.executable,
        "TASKQUEUE_PIP_SPEC": "",  # already installed; a copy in another repo installs it here
        "TASKQUEUE_REPORT_DIR": str(tmp_path / "reports"),
        "PYTHONPATH": str(ROOT),
        **gate_env,
    }
    env.pop("GITHUB_STEP_SUMMARY", None)
    # Its own process group: on a timeout the gate's pytest and the stack it started go too.
    gate = subprocess.Popen(
        ["bash", str(GATE), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = gate.communicate(timeout=_GATE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        _stop_group(gate)
        stdout, stderr = gate.communicate()
        pytest.fail(f"the gate ran over {_GATE_TIMEOUT_S:g} s; output:\n{stdout[-4000:]}\n{stderr[-2000:]}")
    finally:
        if gate.poll() is None:
            _stop_group(gate)
    return subprocess.CompletedProcess(gate.args, gate.returncode, stdout, stderr)


def _stop_group(gate: subprocess.Popen[str]) -> None:
    """SIGINT the gate's process group (its pytest stops the stack it started), SIGKILL what is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(gate.pid, signal.SIGINT)
    try:
        gate.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(gate.pid, signal.SIGKILL)
        gate.wait()


def _plain(*breaks: str) -> dict[str, str]:
    port = free_port()
    flags = " ".join(f"--break {name}" for name in breaks)
    return {
        "TASKQUEUE_TARGET": f"127.0.0.1:{port}",
        "TASKQUEUE_START_CMD": f"{sys.executable} -m tests.servers.inmemory --port {port} {flags}",
    }


def _report(tmp_path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((tmp_path / "reports" / "conformance.json").read_text())
    return document


def _explain(done: subprocess.CompletedProcess[str]) -> str:
    return done.stdout[-4000:] + done.stderr[-2000:]


def test_full_level_gate_passes_the_reference_run_as_an_implementation(tmp_path: Path) -> None:
    """The default mode starts the implementation (and its worker) itself: every required scenario runs."""
    done = _run_gate(
        tmp_path,
        {
            "TASKQUEUE_TARGET_CMD": f"{PYTHON} " + _REFERENCE.format(mode="serve", port="{port}"),
            "TASKQUEUE_WORKER_CMD": f"{PYTHON} " + _REFERENCE.format(mode="worker", port="0"),
        },
    )
    assert done.returncode == 0, _explain(done)
    assert "taskqueue gate: full level" in done.stdout
    report = _report(tmp_path)
    assert report["verdict"] == "conforming" and report["level"] == "full", _explain(done)
    assert all(entry["why"] == "opt-in" for entry in report["not_run"]), report["not_run"]
    assert report["sweep"]["ran"] and not report["sweep"]["violations"]
    reports = tmp_path / "reports"
    assert '<property name="taskqueue_verdict" value="conforming"' in (reports / "junit.xml").read_text()
    assert (reports / "conformance.md").read_text().startswith("## taskqueue conformance: CONFORMING\n")


def test_full_level_gate_fails_what_a_plain_target_cannot_see(tmp_path: Path) -> None:
    """The in-memory server keeps its tasks in one process's memory: the plain-target gate cannot
    tell (see below), the full-level gate restarts it and finds its tasks gone (spec 3.5, 7.3)."""
    done = _run_gate(
        tmp_path,
        {"TASKQUEUE_TARGET_CMD": f"{PYTHON} -m tests.servers.inmemory --port {{port}}"},
        "-k",
        "restart_keeps_state",
    )
    assert done.returncode == 1, _explain(done)
    report = _report(tmp_path)
    assert report["verdict"] == "not-conforming", _explain(done)
    failed = [s for s in report["scenarios"] if s["outcome"] == "failed"]
    assert [s["id"] for s in failed] == [
        "scenarios/faults.py::test_server_restart_keeps_state_and_work_resumes"
    ]


def test_plain_target_gate_says_what_it_did_not_check(tmp_path: Path) -> None:
    done = _run_gate(tmp_path, _plain())
    assert done.returncode == 0, _explain(done)
    assert _NOT_CHECKED in done.stdout
    report = _report(tmp_path)
    assert report["verdict"] == "conforming-at-api-level" and report["level"] == "api"
    assert {entry["why"] for entry in report["not_run"]} == {"level", "opt-in"}
    reports = tmp_path / "reports"
    assert (reports / "junit.xml").read_text().startswith("<?xml")
    assert "CONFORMING AT API LEVEL" in (reports / "conformance.md").read_text()
    assert "taskqueue verdict: CONFORMING AT API LEVEL (" in done.stdout


@pytest.mark.parametrize("broken", ["race_duplicates"])
def test_plain_target_gate_fails_a_broken_server(tmp_path: Path, broken: str) -> None:
    done = _run_gate(tmp_path, _plain(broken), "-m", "idempotency")
    assert done.returncode == 1, _explain(done)
    assert _report(tmp_path)["verdict"] == "not-conforming"


@pytest.mark.parametrize(
    ("gate_env", "message"),
    [
        ({}, "set TASKQUEUE_TARGET_CMD"),
        ({"TASKQUEUE_TARGET_CMD": "srv --port {port}", "TASKQUEUE_TARGET": "127.0.0.1:1"}, "not both"),
    ],
    ids=["nothing", "both"],
)
def test_gate_usage_errors(tmp_path: Path, gate_env: dict[str, str], message: str) -> None:
    done = _run_gate(tmp_path, gate_env)
    assert done.returncode == 4 and message in done.stderr, _explain(done)
