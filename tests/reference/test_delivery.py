"""Delivery and shutdown (spec 1.2 and 7): a killed worker, SIGTERM of the API and of a worker."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from taskqueue_proto import SERVICE_NAME, taskqueue_pb2_grpc
from taskqueue_proto import taskqueue_pb2 as pb

from ._client import events, shape, submit, wait_status, wait_terminal
from .conftest import Stack


@pytest.fixture
def slow_dynamodb(stack: Stack, tmp_path: Path) -> Iterator[str]:
    """The stack's DynamoDB behind a Toxiproxy link whose every answer comes 1.2 s late."""
    from fault_injection import Toxiproxy
    from pytest_taskqueue._backends import ToxiproxyServer
    from pytest_taskqueue._procs import free_port

    upstream = stack.endpoints.dynamodb.removeprefix("http://")
    with ToxiproxyServer(log_dir=tmp_path) as server:
        proxy = Toxiproxy(server.endpoint).create_proxy("dynamodb", f"127.0.0.1:{free_port()}", upstream)
        proxy.add_toxic("latency", attributes={"latency": 1200})
        yield f"http://{proxy.listen}"


async def test_worker_killed_mid_attempt_is_retried_once_by_a_fresh_worker(stack: Stack) -> None:
    server = await stack.start("serve")
    worker = await stack.start("worker")
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = taskqueue_pb2_grpc.TaskQueueStub(channel)
        answer = await submit(stub, "sleep", b'{"ms": 3000}')
        await wait_status(stub, answer.task_id, pb.TASK_STATUS_PROCESSING)
        worker.kill()  # SIGKILL: no chance to release anything
        assert worker.wait(10) == -signal.SIGKILL
        await stack.start("worker")
        task = await wait_terminal(stub, answer.task_id)
        assert task.status == pb.TASK_STATUS_COMPLETED and task.attempts == 2
        history = await events(stub, answer.task_id)
        assert shape(history) == [
            ("SUBMITTED", 0),
            ("PROCESSING", 1),
            ("FAILED", 1),
            ("PROCESSING", 2),
            ("COMPLETED", 2),
        ]
        assert history[2].detail.startswith("attempt abandoned")


async def test_sigterm_server_goes_not_serving_then_exits_zero(stack: Stack) -> None:
    server = await stack.start("serve")
    async with grpc.aio.insecure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        watch = health.Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        server.signal(signal.SIGTERM)
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()
    assert await asyncio.to_thread(server.wait, 30) == 0


async def test_sigterm_worker_finishes_the_running_attempt_within_grace(stack: Stack) -> None:
    server = await stack.start("serve")
    worker = await stack.start("worker", "--shutdown-grace", "20")
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = taskqueue_pb2_grpc.TaskQueueStub(channel)
        answer = await submit(stub, "sleep", b'{"ms": 1000}')
        await wait_status(stub, answer.task_id, pb.TASK_STATUS_PROCESSING)
        worker.signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.wait, 30) == 0
        task = await stub.GetTask(pb.GetTaskRequest(task_id=answer.task_id))
        assert task.status == pb.TASK_STATUS_COMPLETED and task.attempts == 1


async def test_sigterm_worker_past_grace_releases_the_attempt_to_the_next_worker(stack: Stack) -> None:
    server = await stack.start("serve")
    worker = await stack.start("worker", "--shutdown-grace", "0.2")
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = taskqueue_pb2_grpc.TaskQueueStub(channel)
        answer = await submit(stub, "sleep", b'{"ms": 60000}')
        await wait_status(stub, answer.task_id, pb.TASK_STATUS_PROCESSING)
        worker.signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.wait, 30) == 0
        released = await stub.GetTask(pb.GetTaskRequest(task_id=answer.task_id))
        assert released.status == pb.TASK_STATUS_RETRYING
        history = await events(stub, answer.task_id)
        assert shape(history) == [("SUBMITTED", 0), ("PROCESSING", 1), ("FAILED", 1)]
        assert history[-1].detail == "attempt abandoned: worker shutting down"
        # The message was made visible at once: a new worker starts attempt 2 (then is stopped too).
        await stack.start("worker", "--shutdown-grace", "0.2")
        await wait_status(stub, answer.task_id, pb.TASK_STATUS_PROCESSING)
        assert (await stub.GetTask(pb.GetTaskRequest(task_id=answer.task_id))).attempts == 2


async def test_a_loaded_worker_keeps_its_own_attempt_past_short_timeouts(
    stack: Stack, slow_dynamodb: str
) -> None:
    """spec 6.3: with a 1 s visibility timeout and every DynamoDB answer to the worker 1.2 s late, the
    lease the worker writes is already over when it lands and SQS hands the message back mid-attempt;
    the worker still runs the task once, with no abandoned attempt (its heartbeat and its redelivered
    message both belong to the running attempt)."""
    server = await stack.start("serve")
    await stack.start("worker", dynamodb=slow_dynamodb)
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = taskqueue_pb2_grpc.TaskQueueStub(channel)
        answer = await submit(stub, "sleep", b'{"ms": 2500}')
        task = await wait_terminal(stub, answer.task_id)
        history = shape(await events(stub, answer.task_id))
    assert task.status == pb.TASK_STATUS_COMPLETED, history
    assert history == [("SUBMITTED", 0), ("PROCESSING", 1), ("COMPLETED", 1)]
