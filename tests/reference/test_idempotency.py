"""Idempotency (spec section 3): repeats, 32 racing submits, conflicts, several server processes,
and the re-send of a task whose first submit died before its message was sent."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from reference_server.backends import Backends
from reference_server.config import Config
from reference_server.store import Store
from taskqueue_proto import taskqueue_pb2 as pb
from taskqueue_proto import taskqueue_pb2_grpc

from ._client import Stub, events, key, shape, submit, wait_terminal
from ._procs import AWS_ENV
from .conftest import Stack


async def test_repeat_returns_same_task_without_new_events_at_any_stage(api: Stub) -> None:
    idempotency_key = key()
    first = await submit(api, "sleep", b'{"ms": 300}', idempotency_key=idempotency_key)
    assert first.created
    repeat = await submit(api, "sleep", b'{"ms": 300}', idempotency_key=idempotency_key)
    assert repeat.task_id == first.task_id and not repeat.created
    assert repeat.status in (pb.TASK_STATUS_PENDING, pb.TASK_STATUS_PROCESSING)
    await wait_terminal(api, first.task_id)
    before = await events(api, first.task_id)
    late = await submit(api, "sleep", b'{"ms": 300}', idempotency_key=idempotency_key)
    assert late.task_id == first.task_id and not late.created and late.status == pb.TASK_STATUS_COMPLETED
    assert await events(api, first.task_id) == before
    assert shape(before) == [("SUBMITTED", 0), ("PROCESSING", 1), ("COMPLETED", 1)]


async def test_zero_and_five_max_attempts_are_the_same_request(api: Stub) -> None:
    idempotency_key = key()
    first = await submit(api, "noop", max_attempts=0, idempotency_key=idempotency_key)
    second = await submit(api, "noop", max_attempts=5, idempotency_key=idempotency_key)
    assert second.task_id == first.task_id and not second.created


@pytest.mark.parametrize(
    ("field", "changed"),
    [
        ("task_type", {"task_type": "echo"}),
        ("payload", {"payload": b"other"}),
        ("max_attempts", {"max_attempts": 3}),
    ],
)
async def test_same_key_different_request_is_already_exists(
    api: Stub, field: str, changed: dict[str, object]
) -> None:
    idempotency_key = key()
    original = {"task_type": "noop", "payload": b"same", "max_attempts": 0}
    first = await submit(api, idempotency_key=idempotency_key, **original)  # type: ignore[arg-type]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await submit(api, idempotency_key=idempotency_key, **{**original, **changed})  # type: ignore[arg-type]
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert field in (caught.value.details() or "")
    await wait_terminal(api, first.task_id)
    assert shape(await events(api, first.task_id)) == [("SUBMITTED", 0), ("PROCESSING", 1), ("COMPLETED", 1)]


async def test_32_racing_identical_submits_make_one_task_that_runs_once(stack: Stack) -> None:
    """32 identical submits race, spread over two API processes: one created, one task, one run."""
    servers = [await stack.start("serve"), await stack.start("serve")]
    await stack.start("worker")
    channels = [grpc.aio.insecure_channel(s.target) for s in servers]
    try:
        stubs = [taskqueue_pb2_grpc.TaskQueueStub(c) for c in channels]
        idempotency_key = key()
        answers = await asyncio.gather(
            *(
                submit(stubs[i % 2], "sleep", b'{"ms": 100}', idempotency_key=idempotency_key)
                for i in range(32)
            )
        )
        assert sum(a.created for a in answers) == 1
        assert len({a.task_id for a in answers}) == 1
        task_id = answers[0].task_id
        task = await wait_terminal(stubs[0], task_id)
        assert task.status == pb.TASK_STATUS_COMPLETED and task.attempts == 1
        assert shape(await events(stubs[1], task_id)) == [
            ("SUBMITTED", 0),
            ("PROCESSING", 1),
            ("COMPLETED", 1),
        ]
    finally:
        for channel in channels:
            await channel.close()


async def test_task_stored_but_never_queued_is_queued_by_a_repeat(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A submit that died between its DynamoDB write and SendMessage: the repeat sends the message."""
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    server = await stack.start("all")
    config = Config(
        dynamodb_endpoint=stack.endpoints.dynamodb,
        sqs_endpoint=stack.endpoints.sqs,
        table=stack.names["table"],
    )
    idempotency_key = key()
    async with Backends(config) as backends:  # write the task as a crashed server would have left it
        stranded, created = await Store(backends.dynamodb, config.table).create_task(
            idempotency_key, "noop", b"", 5
        )
    assert created
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = taskqueue_pb2_grpc.TaskQueueStub(channel)
        repeat = await submit(stub, "noop", idempotency_key=idempotency_key)
        assert repeat.task_id == stranded.task_id and not repeat.created
        task = await wait_terminal(stub, stranded.task_id)
        assert task.status == pb.TASK_STATUS_COMPLETED
        assert shape(await events(stub, stranded.task_id)) == [
            ("SUBMITTED", 0),
            ("PROCESSING", 1),
            ("COMPLETED", 1),
        ]
