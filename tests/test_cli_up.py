"""``taskqueue-harness up`` as a user runs it: a real subprocess, real signals, real processes."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from pytest_taskqueue.cli import main
from taskqueue_proto import taskqueue_pb2 as pb
from taskqueue_proto import taskqueue_pb2_grpc as pb_grpc
from tests.process_tools import ProcessRecord, descendants, poll_until, still_running

READY_TIMEOUT = 120.0
EXIT_TIMEOUT = 30.0


def harness_command() -> list[str]:
    """The installed console script, else the module (a source checkout without ``pip install``)."""
    script = shutil.which("taskqueue-harness")
    return [script] if script else [sys.executable, "-m", "pytest_taskqueue.cli"]


@dataclass
class Harness:
    """A running ``taskqueue-harness`` process with its stdout lines queued by a reader thread."""

    process: subprocess.Popen[str]
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def next_line(self, timeout: float = READY_TIMEOUT) -> str:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output within {timeout} s; stderr so far unknown") from None
        if line is None:
            stderr = self.process.stderr.read() if self.process.stderr else ""
            raise AssertionError(f"taskqueue-harness exited ({self.process.wait()}) early: {stderr}")
        return line

    def children(self) -> list[ProcessRecord]:
        return [record for record in descendants(self.process.pid) if still_running(record)]

    def finish(self, signum: int) -> tuple[int, str]:
        self.process.send_signal(signum)
        code = self.process.wait(EXIT_TIMEOUT)
        return code, self.process.stderr.read() if self.process.stderr else ""


def launch(*args: str, env: dict[str, str] | None = None) -> Harness:
    process = subprocess.Popen(
        [*harness_command(), "up", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    return Harness(process)


@pytest.fixture
def harnesses() -> Iterator[list[Harness]]:
    """Launched harnesses, killed (with their process groups' children) if a test left one running."""
    started: list[Harness] = []
    yield started
    for harness in started:
        if harness.process.poll() is None:
            leftovers = harness.children()
            harness.process.kill()
            harness.process.wait()
            for record in leftovers:
                if still_running(record):
                    os.killpg(record.pgid, signal.SIGKILL)


def grpc_checks(target: str) -> None:
    """What a grpcurl user would do: health, reflection, SubmitTask."""
    with grpc.insecure_channel(target) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        services = {service.name for reply in replies for service in reply.list_services_response.service}
        assert "taskqueue.v1.TaskQueue" in services
        submitted = pb_grpc.TaskQueueStub(channel).SubmitTask(
            pb.SubmitTaskRequest(idempotency_key="cli-up-1", task_type="noop"), timeout=10
        )
        assert submitted.created and submitted.task_id


def test_up_json_then_sigint_stops_everything(harnesses: list[Harness]) -> None:
    harness = launch("--port", "0", "--json")
    harnesses.append(harness)
    info = json.loads(harness.next_line())
    for key in ("target", "dynamodb", "sqs", "toxiproxy", "table", "queue", "dead_letter_queue", "region"):
        assert key in info, key
    assert info["target"].startswith("127.0.0.1:") and info["sqs"].startswith("http://127.0.0.1:")
    grpc_checks(info["target"])
    children = harness.children()
    commands = " ".join(record.command for record in children)
    for part in ("org.elasticmq.server.Main", "pytest_taskqueue._moto_server", "toxiproxy-server"):
        assert part in commands
    assert "reference_server serve" in commands and "reference_server worker" in commands
    code, stderr = harness.finish(signal.SIGINT)
    assert code == 0, stderr
    assert harness.lines.get(timeout=EXIT_TIMEOUT) is None  # exactly one line on stdout
    assert not [record for record in children if still_running(record)]


def test_up_human_output_then_sigterm(harnesses: list[Harness], tmp_path: Path) -> None:
    harness = launch("--log-dir", str(tmp_path), "--prefix", "human")
    harnesses.append(harness)
    first = harness.next_line()
    assert "reference stack ready" in first
    shown = "".join(harness.next_line(5) for _ in range(9))
    assert "target" in shown and "human-dlq" in shown and str(tmp_path) in shown
    children = harness.children()
    code, _ = harness.finish(signal.SIGTERM)
    assert code == 0
    assert not [record for record in children if still_running(record)]
    assert (tmp_path / "elasticmq.log").is_file()  # an explicit log folder is kept


def test_a_crashed_child_stops_the_rest_with_one_error_line(harnesses: list[Harness]) -> None:
    harness = launch("--json")
    harnesses.append(harness)
    harness.next_line()
    children = harness.children()
    java = next(record for record in children if "org.elasticmq.server.Main" in record.command)
    os.kill(java.pid, signal.SIGKILL)
    code = harness.process.wait(EXIT_TIMEOUT)
    stderr = harness.process.stderr.read() if harness.process.stderr else ""
    assert code == 1
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("taskqueue-harness: error: ElasticMQ exited unexpectedly with code -9")
    assert "elasticmq.log" in lines[0]
    assert not [record for record in children if still_running(record)]


def test_sigint_during_start_cleans_up(harnesses: list[Harness]) -> None:
    harness = launch("--json")
    harnesses.append(harness)
    poll_until(
        lambda: any("reference_server worker" in record.command for record in harness.children()),
        READY_TIMEOUT,
        "the worker spawned",
    )
    children = harness.children()
    code, stderr = harness.finish(signal.SIGINT)
    assert code in (0, 130), stderr  # 130: interrupted while starting (0 if it was ready already)
    assert not [record for record in children if still_running(record)]


def test_missing_java_is_one_line_saying_what_to_install(tmp_path: Path) -> None:
    env = dict(os.environ, PATH=str(tmp_path))  # no java (the harness runs by absolute path)
    done = subprocess.run(
        [sys.executable, "-m", "pytest_taskqueue.cli", "up", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("taskqueue-harness: error: java: java not found on PATH")
    assert "apt-get install openjdk-17-jre-headless" in lines[0]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["up", "--port", "70000"], "argument --port: must be in 0..65535"),
        (["up", "--port", "http"], "argument --port: not a port number: 'http'"),
        (["up", "--bogus"], "unrecognized arguments: --bogus"),
        (["launch"], "invalid choice: 'launch'"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_bad_options_are_usage_errors(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "usage: taskqueue-harness" in err
    assert expected in err
