"""Load runs against the reference stack: the built-in generator, and Locust distributed.

``taskqueue-harness load`` with no target starts the reference stack, runs, and finishes clean
with both reports. A real Locust master with two workers (headless, on 127.0.0.1) runs the
shipped user against a reference stack; its aggregated statistics carry the SubmitTask calls and
the end-to-end entry.
"""

from __future__ import annotations

import contextlib
import csv
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

from pytest_taskqueue._stack import StackConfig, reference_stack
from tests.load.load_testutil import RELAXED_LAG, ROOT, run_load

_LOCUST_RUN_S = 12
# The entries pytest_taskqueue.load.locust_user reports. Not imported from it: importing Locust
# monkey-patches this process's threading for gevent, which the stack's start-up threads cannot bear.
SUBMIT_TYPE, SUBMIT_NAME = "grpc", "SubmitTask"
E2E_TYPE, E2E_NAME = "e2e", "submit->terminal"


def test_short_run_against_the_reference_stack_is_clean(tmp_path: Path) -> None:
    report_path = tmp_path / "out" / "load.json"
    run = run_load("--duration", "8", "--rate", "20", "--warmup", "1", *RELAXED_LAG, report=report_path)

    assert run.returncode == 0, run.explain()
    report = run.report
    assert report is not None and report["verdict"] == "ok" and report["mode"] == "reference-stack"
    assert report["history"]["anomalies"] == [] and report["run"]["tasks"]["undrained"] == 0
    assert report["run"]["latency_ms"]["e2e"]["count"] > 0 and report["run"]["latency_ms"]["submit"]["p99"]
    assert report_path.with_suffix(".html").is_file()
    assert "anomalies   0" in run.stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def _processes(commands: list[list[str]], logs: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start each command (output to a log file); terminate, then kill, every one on exit."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        for number, command in enumerate(commands):
            with (logs / f"process-{number}.log").open("wb") as log:
                started.append(
                    subprocess.Popen(
                        command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                    )
                )
        yield started
    finally:
        for process in started:
            if process.poll() is None:
                process.terminate()
        for process in started:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _logs(logs: Path) -> str:
    return "\n".join(
        f"--- {p.name}\n{p.read_text(errors='replace')[-2500:]}" for p in sorted(logs.glob("*.log"))
    )


def test_locust_master_and_two_workers_report_submits_and_end_to_end(tmp_path: Path) -> None:
    locustfile = subprocess.run(
        [sys.executable, "-m", "pytest_taskqueue.load", "locustfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(locustfile).is_file(), locustfile
    logs = tmp_path / "logs"
    logs.mkdir()
    port = _free_port()
    locust = [sys.executable, "-m", "locust", "-f", locustfile]
    config = StackConfig(prefix=f"locust-{uuid.uuid4().hex[:6]}", log_dir=tmp_path / "stack")
    with reference_stack(config) as stack:
        master = [
            *locust,
            "--master",
            "--master-bind-host",
            "127.0.0.1",
            "--master-bind-port",
            str(port),
            "--headless",
            "--expect-workers",
            "2",
            "--expect-workers-max-wait",
            "90",
            "-u",
            "6",
            "-r",
            "6",
            "-t",
            f"{_LOCUST_RUN_S}s",
            "--stop-timeout",
            "5",
            "--host",
            stack.direct_target,
            "--csv",
            str(tmp_path / "stats"),
            "--only-summary",
            "--tq-user-rate",
            "2",
            "--tq-e2e-share",
            "1",
            "--tq-mix",
            "noop:3,echo:1:64",
        ]
        worker = [*locust, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)]
        with _processes([master, worker, worker], logs) as (master_process, *workers):
            try:
                master_process.wait(timeout=240)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"the Locust master did not finish in 240 s\n{_logs(logs)}") from None
            for process in workers:  # the workers quit when the master does
                process.wait(timeout=60)

    stats_path = tmp_path / "stats_stats.csv"
    assert stats_path.is_file(), _logs(logs)
    with stats_path.open() as handle:
        rows = {(row["Type"], row["Name"]): row for row in csv.DictReader(handle)}
    submits, e2e = rows.get((SUBMIT_TYPE, SUBMIT_NAME)), rows.get((E2E_TYPE, E2E_NAME))
    assert submits is not None and e2e is not None, f"{sorted(rows)}\n{_logs(logs)}"
    # A failure is a submit answered with a gRPC error (a deadline on a busy machine); most succeed.
    assert int(submits["Failure Count"]) < int(submits["Request Count"]) / 2, (submits, _logs(logs))
    assert int(e2e["Request Count"]) > 0, (e2e, _logs(logs))
    assert float(e2e["Median Response Time"]) > 0
    assert "2 workers connected" in _logs(logs) or "workers" in _logs(logs)
