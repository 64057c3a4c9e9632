"""Lifecycle of each conformance task type, history rules, WatchTask, server info, health, reflection."""

from __future__ import annotations

import json

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from taskqueue_proto import SERVICE_NAME
from taskqueue_proto import taskqueue_pb2 as pb

from ._client import Stub, events, shape, submit, wait_terminal
from .conftest import Stack


def assert_history_rules(history: list[pb.TaskEvent]) -> None:
    """Sequence strictly increases from 1, ``at`` never goes backwards."""
    assert [e.sequence for e in history] == list(range(1, len(history) + 1))
    times = [e.at.ToNanoseconds() for e in history]
    assert times == sorted(times)


async def test_noop_history_is_submitted_processing_completed(api: Stub) -> None:
    answer = await submit(api, "noop")
    assert answer.created and answer.status == pb.TASK_STATUS_PENDING and answer.task_id
    task = await wait_terminal(api, answer.task_id)
    assert task.status == pb.TASK_STATUS_COMPLETED
    assert task.attempts == 1 and task.max_attempts == 5 and task.result == b"" and task.last_error == ""
    assert task.created_at.ToNanoseconds() <= task.updated_at.ToNanoseconds()
    history = await events(api, answer.task_id)
    assert shape(history) == [("SUBMITTED", 0), ("PROCESSING", 1), ("COMPLETED", 1)]
    assert_history_rules(history)


async def test_echo_result_equals_payload_even_at_the_size_limit(api: Stub) -> None:
    for payload in (b"hello \x00\xff", bytes(range(256)) * 1024):  # the second is exactly 262144 bytes
        answer = await submit(api, "echo", payload)
        task = await wait_terminal(api, answer.task_id)
        assert task.status == pb.TASK_STATUS_COMPLETED
        assert task.result == payload and task.payload == payload
        fetched = await api.GetTask(pb.GetTaskRequest(task_id=answer.task_id))
        assert fetched.result == payload


async def test_sleep_completes(api: Stub) -> None:
    answer = await submit(api, "sleep", json.dumps({"ms": 200}).encode())
    task = await wait_terminal(api, answer.task_id)
    assert task.status == pb.TASK_STATUS_COMPLETED
    assert shape(await events(api, answer.task_id)) == [("SUBMITTED", 0), ("PROCESSING", 1), ("COMPLETED", 1)]


async def test_fail_times_retries_then_completes(api: Stub) -> None:
    answer = await submit(api, "fail_times", b'{"times": 2}')
    task = await wait_terminal(api, answer.task_id)
    assert task.status == pb.TASK_STATUS_COMPLETED and task.attempts == 3
    assert "attempt 2" in task.last_error
    history = await events(api, answer.task_id)
    assert shape(history) == [
        ("SUBMITTED", 0),
        ("PROCESSING", 1),
        ("FAILED", 1),
        ("PROCESSING", 2),
        ("FAILED", 2),
        ("PROCESSING", 3),
        ("COMPLETED", 3),
    ]
    assert all(e.detail for e in history if e.type == pb.TASK_EVENT_TYPE_FAILED)
    assert_history_rules(history)


async def test_watch_sends_snapshot_first_then_changes_and_closes_ok(api: Stub) -> None:
    answer = await submit(api, "sleep", b'{"ms": 300}')
    call = api.WatchTask(pb.WatchTaskRequest(task_id=answer.task_id))
    snapshots = [snapshot async for snapshot in call]
    assert await call.code() == grpc.StatusCode.OK
    assert snapshots[0].status in (pb.TASK_STATUS_PENDING, pb.TASK_STATUS_PROCESSING)
    assert snapshots[-1].status == pb.TASK_STATUS_COMPLETED
    assert all(s.status != pb.TASK_STATUS_COMPLETED for s in snapshots[:-1])
    versions = [(s.updated_at.ToNanoseconds(), s.status) for s in snapshots]
    assert len(set(versions)) == len(versions), "every snapshot after the first is a change"
    # Watching a terminal task sends one snapshot and closes.
    again = [snapshot async for snapshot in api.WatchTask(pb.WatchTaskRequest(task_id=answer.task_id))]
    assert [s.status for s in again] == [pb.TASK_STATUS_COMPLETED]


async def test_server_info(api: Stub) -> None:
    info = await api.GetServerInfo(pb.GetServerInfoRequest())
    assert info.implementation == "pytest-taskqueue-reference" and info.version
    assert set(info.task_types) >= {"noop", "echo", "sleep", "fail_always", "fail_times"}
    assert info.default_max_attempts == 5 and info.max_payload_bytes == 262144
    assert "reflection" in info.capabilities


async def test_health_and_reflection(shared_stack: Stack, api: Stub) -> None:
    target = shared_stack.processes[0].target
    async with grpc.aio.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE_NAME):
            answer = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        call = stub.ServerReflectionInfo()
        await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
        answer = await call.read()
        await call.done_writing()
        names = {s.name for s in answer.list_services_response.service}
        assert {SERVICE_NAME, "grpc.health.v1.Health"} <= names
