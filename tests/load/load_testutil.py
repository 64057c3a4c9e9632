"""The load command as a user runs it, for the load tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RELAXED_LAG = ("--max-lag-ms", "5000")
"""Tests judge correctness and reports, not the shared machine's scheduling: keep runs valid."""


@dataclass
class LoadRun:
    """One finished ``taskqueue-harness load`` process and its JSON report (if written)."""

    returncode: int
    stdout: str
    stderr: str
    report: dict[str, Any] | None

    def explain(self) -> str:
        """What an assertion about this run should show."""
        return f"exit {self.returncode}\nstdout:\n{self.stdout[-4000:]}\nstderr:\n{self.stderr[-3000:]}"


def run_load(*args: str, report: Path | None = None, timeout: float = 300.0) -> LoadRun:
    """Run ``taskqueue-harness load ARGS`` from the repository root (a subprocess, stdin closed)."""
    command = [sys.executable, "-m", "pytest_taskqueue.cli", "load", *args]
    env = dict(os.environ)
    if report is not None:
        command += ["--report", str(report)]
        report.parent.mkdir(parents=True, exist_ok=True)
        env["TMPDIR"] = str(report.parent)  # kept log folders beside the report
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, env=env
    )
    data = json.loads(report.read_text()) if report is not None and report.exists() else None
    return LoadRun(done.returncode, done.stdout, done.stderr, data)
