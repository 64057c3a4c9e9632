"""Client-side helpers of the reference-server tests: submits, waits on WatchTask, history, the DLQ."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any, TypeAlias

import aioboto3
import grpc

from taskqueue_proto import taskqueue_pb2 as pb
from taskqueue_proto import taskqueue_pb2_grpc

Stub: TypeAlias = "taskqueue_pb2_grpc.TaskQueueAsyncStub"  # exists for type checkers only

TERMINAL = (pb.TASK_STATUS_COMPLETED, pb.TASK_STATUS_DEAD)


def key() -> str:
    """A fresh idempotency key."""
    return f"key-{uuid.uuid4()}"


async def submit(
    stub: Stub,
    task_type: str,
    payload: bytes = b"",
    max_attempts: int = 0,
    idempotency_key: str | None = None,
) -> pb.SubmitTaskResponse:
    """SubmitTask with a fresh key unless one is given."""
    request = pb.SubmitTaskRequest(
        idempotency_key=idempotency_key or key(),
        task_type=task_type,
        payload=payload,
        max_attempts=max_attempts,
    )
    return await stub.SubmitTask(request, timeout=30)


async def events(stub: Stub, task_id: str) -> list[pb.TaskEvent]:
    """The task's history."""
    answer = await stub.ListTaskEvents(pb.ListTaskEventsRequest(task_id=task_id), timeout=30)
    return list(answer.events)


def shape(history: list[pb.TaskEvent]) -> list[tuple[str, int]]:
    """History as (event type name without prefix, attempt) pairs, for readable assertions."""
    return [(pb.TaskEventType.Name(e.type).removeprefix("TASK_EVENT_TYPE_"), e.attempt) for e in history]


async def describe(stub: Stub, task_id: str) -> str:
    """Status and history of a task, for timeout messages."""
    try:
        task = await stub.GetTask(pb.GetTaskRequest(task_id=task_id), timeout=10)
        history = await events(stub, task_id)
    except grpc.aio.AioRpcError as exc:
        return f"(could not read task {task_id}: {exc.code()} {exc.details()})"
    return (
        f"task {task_id}: {pb.TaskStatus.Name(task.status)} attempts={task.attempts} history={shape(history)}"
    )


async def wait_terminal(stub: Stub, task_id: str, within: float = 60.0) -> pb.Task:
    """Follow WatchTask until the stream closes after a terminal snapshot; returns that snapshot."""
    last: pb.Task | None = None
    try:
        async with asyncio.timeout(within):
            async for snapshot in stub.WatchTask(pb.WatchTaskRequest(task_id=task_id)):
                last = snapshot
    except TimeoutError:
        raise AssertionError(f"not terminal within {within}s: {await describe(stub, task_id)}") from None
    assert last is not None and last.status in TERMINAL, await describe(stub, task_id)
    return last


async def wait_status(
    stub: Stub, task_id: str, status: pb.TaskStatus.ValueType, within: float = 60.0
) -> pb.Task:
    """Follow WatchTask until the task shows ``status``; returns that snapshot."""
    try:
        async with asyncio.timeout(within):
            async for snapshot in stub.WatchTask(pb.WatchTaskRequest(task_id=task_id)):
                if snapshot.status == status:
                    return snapshot
    except TimeoutError:
        pass
    raise AssertionError(
        f"never {pb.TaskStatus.Name(status)} within {within}s: {await describe(stub, task_id)}"
    )


async def rpc_code(call: Any) -> grpc.StatusCode:
    """Await a unary call expected to fail; returns its status code."""
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    raise AssertionError("the call succeeded")


async def dead_letter_task_ids(
    sqs_endpoint: str, queue_name: str, wanted: str, within: float = 30.0
) -> list[str]:
    """Read the dead-letter queue until a message for ``wanted`` shows up; returns the task ids seen."""
    session = aioboto3.Session(
        region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
    seen: list[str] = []
    async with session.client("sqs", endpoint_url=sqs_endpoint) as sqs:
        url = (await sqs.get_queue_url(QueueName=queue_name))["QueueUrl"]
        async with asyncio.timeout(within):
            while wanted not in seen:
                answer = await sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=30
                )
                seen.extend(json.loads(m["Body"])["task_id"] for m in answer.get("Messages", []))
    return seen
