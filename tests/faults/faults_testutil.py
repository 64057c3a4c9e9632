"""Command templates and runners shared by the tests of fault scenarios and chaos runs."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
"""The repository root (``python -m tests.servers.inmemory`` needs it on the path: the harness adds it)."""

PYTHON = shlex.quote(sys.executable)

_BACKEND_FLAGS = (
    "--dynamodb-endpoint {dynamodb} --sqs-endpoint {sqs} --region {region} --table {table} "
    "--queue {queue} --dead-letter-queue {dlq} "
    "--visibility-timeout 2 --retry-backoff-ms 50 --retry-backoff-max-ms 200"
)


def reference_cmd(mode: str) -> str:
    """A ``--taskqueue-target-cmd`` (``serve``, ``all``) or ``--taskqueue-worker-cmd`` (``worker``)
    template that runs the reference server as if it were someone else's implementation."""
    port = "0" if mode == "worker" else "{port}"
    return f"{PYTHON} -m reference_server {mode} --port {port} " + _BACKEND_FLAGS


def reference_break_cmd(name: str, mode: str = "all") -> str:
    """``reference_cmd`` with one rule broken (``tests.servers.reference_breaks``)."""
    return reference_cmd(mode).replace(
        "-m reference_server ", f"-m tests.servers.reference_breaks {name} ", 1
    )


def inmemory_cmd(*breaks: str) -> str:
    """A ``--taskqueue-target-cmd`` template running the in-memory test server (it ignores the backends)."""
    return f"{PYTHON} -m tests.servers.inmemory --port {{port}}" + "".join(f" --break {b}" for b in breaks)


def harness_command() -> list[str]:
    """The installed console script, else the module (a source checkout without ``pip install``)."""
    script = shutil.which("taskqueue-harness")
    return [script] if script else [sys.executable, "-m", "pytest_taskqueue.cli"]


@dataclass
class CliRun:
    """One finished ``taskqueue-harness`` process and the report it wrote (if any)."""

    returncode: int
    stdout: str
    stderr: str
    report: dict[str, Any] | None

    def explain(self) -> str:
        """What an assertion about this run should show."""
        return f"exit {self.returncode}\nstdout:\n{self.stdout[-3000:]}\nstderr:\n{self.stderr[-3000:]}"


def run_cli(*args: str, report: Path | None = None, timeout: float = 600.0) -> CliRun:
    """Run ``taskqueue-harness ARGS`` (with ``--report`` when given) from the repository root."""
    command = [*harness_command(), *args]
    if report is not None:
        command += ["--report", str(report)]
    # Kept log folders (runs with anomalies or errors keep theirs) go beside the report, not in /tmp.
    env = dict(os.environ, TMPDIR=str(report.parent)) if report is not None else None
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, env=env
    )
    data = json.loads(report.read_text()) if report is not None and report.exists() else None
    return CliRun(done.returncode, done.stdout, done.stderr, data)


def inner_report(pytester: pytest.Pytester) -> Path:
    """Where an inner run writes its conformance report (removed first)."""
    path = pytester.path / "report.json"
    path.unlink(missing_ok=True)
    return path


def outcomes(report: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Scenario id -> (outcome, message) from an inner run's conformance report."""
    return {s["id"]: (s["outcome"], s.get("message") or "") for s in report["scenarios"]}
