"""Delivery and shutdown (spec 1.2 and 7): a killed worker, SIGTERM of the API and of a worker."""

from __future__ import annotations

import asyncio
import signal

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from taskqueue_proto import SERVICE_NAME, taskqueue_pb2_grpc
from taskqueue_proto import taskqueue_pb2 as pb

from ._client import events, shape, submit, wait_status, wait_terminal
from .conftest import Stack


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
