"""ci/conformance.sh, the gate implementations copy: it starts the server, runs the bundled suite
against it, writes the reports, and its exit status is the verdict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_taskqueue._procs import free_port

ROOT = Path(__file__).resolve().parent.parent
GATE = ROOT / "ci" / "conformance.sh"


def _run_gate(tmp_path: Path, *breaks: str, select: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    port = free_port()
    flags = " ".join(f"--break {name}" for name in breaks)
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "TASKQUEUE_PIP_SPEC": "",  # already installed; a copy in another repo installs it here
        "TASKQUEUE_TARGET": f"127.0.0.1:{port}",
        "TASKQUEUE_START_CMD": f"{sys.executable} -m tests.servers.inmemory --port {port} {flags}",
        "TASKQUEUE_REPORT_DIR": str(tmp_path / "reports"),
        "PYTHONPATH": str(ROOT),
    }
    env.pop("GITHUB_STEP_SUMMARY", None)
    return subprocess.run(
        ["bash", str(GATE), *select],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_gate_passes_a_conforming_server_and_writes_the_reports(tmp_path: Path) -> None:
    done = _run_gate(tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    reports = tmp_path / "reports"
    report = json.loads((reports / "conformance.json").read_text())
    assert report["verdict"] == "conforming-at-api-level"
    assert (reports / "junit.xml").read_text().startswith("<?xml")
    assert "CONFORMING AT API LEVEL" in (reports / "conformance.md").read_text()


@pytest.mark.parametrize("broken", ["race_duplicates"])
def test_gate_fails_a_broken_server(tmp_path: Path, broken: str) -> None:
    done = _run_gate(tmp_path, broken, select=("-m", "idempotency"))
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    report = json.loads((tmp_path / "reports" / "conformance.json").read_text())
    assert report["verdict"] == "not-conforming"
