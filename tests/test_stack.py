"""The reference stack on real processes: ElasticMQ, moto, Toxiproxy, the reference server and worker."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pytest_taskqueue._procs import BackendStartError, ProcessRecord
from pytest_taskqueue._stack import PROXY_NAMES, Stack, StackConfig, reference_stack
from taskqueue_proto import taskqueue_pb2 as pb
from taskqueue_proto import taskqueue_pb2_grpc as pb_grpc
from tests.process_tools import descendants, poll_until, still_running


def health(target: str) -> int:
    with grpc.insecure_channel(target) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10, wait_for_ready=True
        )
    return int(answer.status)


def run_noop(target: str, key: str) -> pb.Task:
    """Submit a ``noop`` task and return it once COMPLETED (watched with WatchTask)."""
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.TaskQueueStub(channel)
        submitted = stub.SubmitTask(pb.SubmitTaskRequest(idempotency_key=key, task_type="noop"), timeout=10)
        for task in stub.WatchTask(pb.WatchTaskRequest(task_id=submitted.task_id), timeout=30):
            if task.status == pb.TASK_STATUS_COMPLETED:
                return task
    raise AssertionError(f"task {submitted.task_id} ended without completing")


def family() -> list[ProcessRecord]:
    """Every live process this test process started, directly or not."""
    return [record for record in descendants(os.getpid()) if still_running(record)]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with reference_stack(StackConfig(prefix="stacktest")) as started:
        yield started


def test_endpoints_resources_and_a_task_through_the_proxy(stack: Stack) -> None:
    info = stack.as_dict()
    assert info["target"] == stack.target and stack.target != stack.direct_target
    assert list(info)[:8] == [
        "target",
        "dynamodb",
        "sqs",
        "toxiproxy",
        "table",
        "queue",
        "dead_letter_queue",
        "region",
    ]
    assert (stack.table, stack.queue, stack.dead_letter_queue) == ("stacktest", "stacktest", "stacktest-dlq")
    assert health(stack.target) == health_pb2.HealthCheckResponse.SERVING
    assert health(stack.direct_target) == health_pb2.HealthCheckResponse.SERVING
    assert set(stack.toxiproxy_client().proxies()) == set(PROXY_NAMES)
    credentials: dict[str, Any] = {
        "region_name": stack.region,
        "aws_access_key_id": "test",
        "aws_secret_access_key": "test",
    }
    db = boto3.client("dynamodb", endpoint_url=stack.dynamodb_endpoint, **credentials)
    assert stack.table in db.list_tables()["TableNames"]
    sqs = boto3.client("sqs", endpoint_url=stack.sqs_endpoint, **credentials)
    attributes = sqs.get_queue_attributes(QueueUrl=stack.queue_url, AttributeNames=["VisibilityTimeout"])
    assert attributes["Attributes"]["VisibilityTimeout"] == str(stack.visibility_timeout)
    assert sqs.get_queue_url(QueueName=stack.dead_letter_queue)["QueueUrl"] == stack.dead_letter_queue_url
    assert run_noop(stack.target, "stack-noop-1").attempts == 1


def test_worker_kill_start_and_server_restart(stack: Stack) -> None:
    worker = stack.worker
    old_pid = worker.pid
    worker.kill()
    assert worker.returncode == -signal.SIGKILL
    assert stack.crashed() is None  # a deliberate kill is not a crash
    worker.start()
    assert worker.running and worker.pid != old_pid
    assert run_noop(stack.target, "stack-after-worker-kill").status == pb.TASK_STATUS_COMPLETED
    server_pid = stack.server.pid
    stack.server.restart()
    assert stack.server.pid != server_pid
    assert health(stack.target) == health_pb2.HealthCheckResponse.SERVING
    assert run_noop(stack.target, "stack-after-server-restart").status == pb.TASK_STATUS_COMPLETED


def test_a_second_api_process_on_the_same_backends_serves_the_same_tasks(stack: Stack) -> None:
    extra = stack.api_process("second")
    extra.process.start()
    assert extra.target != stack.direct_target
    assert health(extra.target) == health_pb2.HealthCheckResponse.SERVING
    assert extra.process.name in stack.processes()
    first = run_noop(extra.target, "stack-second-api")
    assert run_noop(stack.target, "stack-second-api").task_id == first.task_id  # one key, one task (3.5)
    extra.process.kill()
    assert extra.process.returncode == -signal.SIGKILL
    assert health(stack.target) == health_pb2.HealthCheckResponse.SERVING  # the first one is untouched


def test_a_backend_that_dies_is_reported_as_crashed(tmp_path: Path) -> None:
    with reference_stack(StackConfig(prefix="crash", log_dir=tmp_path)) as crashing:
        moto = crashing.backends["dynamodb"]
        assert moto.pid is not None
        os.kill(moto.pid, signal.SIGKILL)
        poll_until(lambda: crashing.crashed() is not None, 10, "crash noticed")
        crashed = crashing.crashed()
        assert crashed is not None and crashed.name == "moto (DynamoDB)"


def test_stop_leaves_no_process_and_removes_its_temporary_logs() -> None:
    before = {record.pid for record in family()}
    stack = reference_stack(StackConfig(prefix="leaks"))
    stack.start()
    started = [record for record in family() if record.pid not in before]
    pids = {process.pid for process in stack.processes().values()}
    assert len(pids) == 5 and pids <= {record.pid for record in started}
    log_dir = stack.log_dir
    assert log_dir is not None and (log_dir / "reference-worker.log").is_file()
    stack.stop()
    stack.stop()  # idempotent
    assert not [record for record in started if still_running(record)]
    assert not log_dir.exists()


def test_a_start_that_fails_half_way_stops_everything(tmp_path: Path) -> None:
    before = {record.pid for record in family()}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        stack = reference_stack(StackConfig(prefix="halfway", api_port=port, log_dir=tmp_path))
        with pytest.raises(BackendStartError) as caught:
            stack.start()
    summary = caught.value.summary
    assert summary.startswith("Toxiproxy: cannot create proxy 'api'")
    assert f"127.0.0.1:{port}" in summary and "toxiproxy.log" in summary
    assert not [record for record in family() if record.pid not in before]
    assert (tmp_path / "toxiproxy.log").is_file()  # kept: the error names it


def test_a_stopped_stack_can_start_again(tmp_path: Path) -> None:
    stack = reference_stack(StackConfig(prefix="again", log_dir=tmp_path))
    with stack:
        first = {process.pid for process in stack.processes().values()}
    with stack:
        assert health(stack.target) == health_pb2.HealthCheckResponse.SERVING
        assert not first & {process.pid for process in stack.processes().values()}  # all new processes
