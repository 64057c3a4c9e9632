"""``taskqueue-harness chaos`` and ``check`` as a user runs them: real subprocesses, real stacks.

A short run against the reference stack is clean (exit 0) and its saved history checks clean
offline; the in-memory server broken to complete twice or to race duplicates (through
``--target-cmd``) is flagged (exit 1, and again by ``check``); a plain ``--target`` is faulted on
its API link only, and says so; usage errors exit 2 and infrastructure failures exit 3, each with
one line.
"""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest

from fault_injection.history import Event, History, Operation, TaskSnapshot
from pytest_taskqueue.cli import main
from tests.faults.faults_testutil import PYTHON, inmemory_cmd, run_cli

_LINKS = ["api", "server_dynamodb", "server_sqs", "worker_dynamodb", "worker_sqs"]


def test_short_run_against_the_reference_stack_is_clean(tmp_path: Path) -> None:
    report_path = tmp_path / "out" / "chaos.json"
    run = run_cli("chaos", "--seed", "1", "--duration", "15", report=report_path)

    assert run.returncode == 0, run.explain()
    report = run.report
    assert report is not None and report["verdict"] == "ok"
    assert report["mode"] == "reference-stack" and report["links"] == _LINKS
    history = report["history"]
    assert history["operations"] > 0 and history["anomalies"] == [], history
    assert history["undrained"] == [] and history["health_checks"]["failed"] == 0
    assert report["faults"]["applied"], "the schedule applied no fault"
    assert report["process_faults"] == ["server", "worker"] and report["skipped_links"] == {}
    assert history["liveness"]["final_submit"] == "ok" and history["liveness"]["unresolved"] == 0
    assert Path(report["timeline"]) == tmp_path / "out" / "chaos.html" and Path(report["timeline"]).is_file()
    saved = Path(history["path"])
    assert saved == tmp_path / "out" / "chaos.history.json" and saved.is_file()
    assert f"history     {saved}" in run.stdout and "OK (no anomalies)" in run.stdout
    assert "chaos: fault 0:" in run.stderr  # progress while it runs
    assert report["logs"] is None  # a clean run removes its log folder, so the report names none

    again = run_cli("check", str(saved))
    assert again.returncode == 0, again.explain()
    assert f"{history['operations']} operations" in again.stdout and "0 anomalies" in again.stdout


@pytest.mark.parametrize(
    ("brk", "rules"),
    [
        ("double_complete", {"double_completed"}),
        ("race_duplicates", {"duplicate_task_for_key", "created_twice"}),
    ],
)
def test_broken_implementation_is_flagged(tmp_path: Path, brk: str, rules: set[str]) -> None:
    report_path = tmp_path / "chaos.json"
    run = run_cli(
        "chaos", "--seed", "5", "--duration", "8", "--target-cmd", inmemory_cmd(brk), report=report_path
    )

    assert run.returncode == 1, run.explain()
    assert (
        run.report is not None and run.report["verdict"] == "anomalies" and run.report["mode"] == "target-cmd"
    )
    anomalies = run.report["history"]["anomalies"]
    assert {a["rule"] for a in anomalies} & rules, anomalies[:3]
    # No --worker-cmd: nothing uses the worker links, so they are not faulted but listed as skipped.
    assert run.report["links"] == ["api", "server_dynamodb", "server_sqs"]
    assert sorted(run.report["skipped_links"]) == ["worker_dynamodb", "worker_sqs"]
    assert run.report["process_faults"] == ["server"]
    assert all(a["rule"] and a["meaning"] and a["evidence"] and "task_id" in a for a in anomalies)
    assert "ANOMALIES" in run.stdout

    again = run_cli("check", run.report["history"]["path"])
    assert again.returncode == 1, again.explain()
    assert any(rule in again.stdout for rule in rules), again.stdout[-2000:]


def test_plain_target_faults_only_its_api_link(tmp_path: Path) -> None:
    from tests.servers import running_server

    with running_server() as target:
        run = run_cli("chaos", "--duration", "5", "--target", target, report=tmp_path / "chaos.json")

    assert run.returncode == 0, run.explain()
    assert run.report is not None and run.report["links"] == ["api"] and run.report["mode"] == "target"
    assert "only the client -> API link (api) can be faulted" in run.stderr
    assert run.report["history"]["operations"] > 0


def test_check_reports_an_anomaly_in_a_saved_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    submit = Operation(
        id=0,
        kind="submit",
        invoke_ns=1,
        idempotency_key="k",
        outcome="ok",
        value={"task_id": "t1", "created": True, "status": "PENDING"},
        task_id="t1",
        complete_ns=2,
    )
    events = [
        Event(1, "SUBMITTED", 0, 10),
        Event(2, "PROCESSING", 1, 11),
        Event(3, "COMPLETED", 1, 12),
        Event(4, "COMPLETED", 1, 13),
    ]
    snapshot = TaskSnapshot("t1", "k", "noop", b"", "COMPLETED", 1, 5, created_at_ns=10, updated_at_ns=13)
    path = tmp_path / "history.json"
    History(operations=[submit], tasks={"t1": snapshot}, events={"t1": events}).save(path)

    assert main(["check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "1 operations, 1 tasks" in out and "double_completed: task t1 key k:" in out
    assert main(["check", "--json", str(path)]) == 1
    document = json.loads(capsys.readouterr().out)
    assert "double_completed" in {a["rule"] for a in document["anomalies"]}
    assert main(["check", "--timeline", str(tmp_path / "t.html"), str(path)]) == 1
    page = (tmp_path / "t.html").read_text()
    assert 'href="#anomaly-1"' in page and 'id="task-t1"' in page


def test_check_of_an_unreadable_history_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.json").write_text('{"format": "something else"}')
    assert main(["check", str(tmp_path / "bad.json")]) == 2
    assert main(["check", str(tmp_path / "missing.json")]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and all(
        line.startswith("taskqueue-harness: error: cannot read the history") for line in lines
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target-cmd", "srv --port {port} {nope}"], "--target-cmd: unknown placeholder {nope}"),
        (["--target-cmd", "srv --db {dynamodb}"], "--target-cmd: the command must contain {port}"),
        (["--worker-cmd", "wrk {sqs}"], "--worker-cmd: needs --target-cmd"),
        (["--target-cmd", "srv {port}", "--worker-cmd", "wrk {port}"], "--worker-cmd: {port}"),
        (["--clients", "0"], "--clients: must be at least 1"),
        (["--links", ","], "--links: name at least one link"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["chaos", "--duration", "1", *args]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"taskqueue-harness: error: {message}"), lines


def test_argparse_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chaos", "--target", "127.0.0.1:1", "--target-cmd", "srv {port}"]) == 2
    assert main(["chaos", "--target", "nowhere"]) == 2
    assert main(["chaos", "--duration", "0"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_implementation_that_cannot_start_is_exit_3_apart_from_anomalies(tmp_path: Path) -> None:
    report_path = tmp_path / "chaos.json"
    run = run_cli(
        "chaos",
        "--duration",
        "5",
        "--target-cmd",
        f"{PYTHON} -c 'import sys; sys.exit(3)' {{port}}",
        report=report_path,
    )

    assert run.returncode == 3, run.explain()
    errors = [line for line in run.stderr.splitlines() if line.startswith("taskqueue-harness: error:")]
    assert len(errors) == 1 and "implementation (--target-cmd" not in errors[0]
    assert (
        "the stack failed to start: implementation (--taskqueue-target-cmd): exited with code 3" in errors[0]
    )
    assert run.report is not None and run.report["verdict"] == "error" and run.report["history"] is None
    logs = Path(run.report["logs"])  # a failed run keeps the log folder the report names
    assert logs.is_dir() and any(logs.iterdir()), run.report
    shutil.rmtree(logs)


def test_unreachable_target_is_exit_3(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    run = run_cli(
        "chaos",
        "--duration",
        "5",
        "--health-timeout",
        "2",
        "--target",
        f"127.0.0.1:{port}",
        report=tmp_path / "chaos.json",
    )

    assert run.returncode == 3, run.explain()
    assert run.stderr.splitlines()[-1].startswith(
        "taskqueue-harness: error: the chaos run could not be carried out: RuntimeError: "
    )
    assert "is not SERVING" in run.stderr.splitlines()[-1]
    assert run.report is not None and run.report["verdict"] == "error"
