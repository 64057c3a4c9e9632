"""Every error code of the contract (spec section 9), and that a rejected submit creates nothing."""

from __future__ import annotations

import aioboto3
import grpc
import pytest

from taskqueue_proto import taskqueue_pb2 as pb

from ._client import Stub, key, rpc_code, submit, wait_terminal
from .conftest import Stack

INVALID_SUBMITS = {
    "empty key": pb.SubmitTaskRequest(idempotency_key="", task_type="noop"),
    "257-byte key": pb.SubmitTaskRequest(idempotency_key="k" * 257, task_type="noop"),
    "key over 256 bytes in UTF-8": pb.SubmitTaskRequest(idempotency_key="é" * 129, task_type="noop"),
    "empty task_type": pb.SubmitTaskRequest(idempotency_key="bad-1", task_type=""),
    "unknown task_type": pb.SubmitTaskRequest(idempotency_key="bad-2", task_type="no_such_type"),
    "payload over the limit": pb.SubmitTaskRequest(
        idempotency_key="bad-3", task_type="echo", payload=b"x" * 262145
    ),
    "max_attempts < 0": pb.SubmitTaskRequest(idempotency_key="bad-4", task_type="noop", max_attempts=-1),
    "max_attempts > 100": pb.SubmitTaskRequest(idempotency_key="bad-5", task_type="noop", max_attempts=101),
    "sleep without JSON": pb.SubmitTaskRequest(idempotency_key="bad-6", task_type="sleep", payload=b"soon"),
    "sleep with a negative ms": pb.SubmitTaskRequest(
        idempotency_key="bad-7", task_type="sleep", payload=b'{"ms": -1}'
    ),
    "sleep with a string ms": pb.SubmitTaskRequest(
        idempotency_key="bad-8", task_type="sleep", payload=b'{"ms": "10"}'
    ),
    "fail_times without times": pb.SubmitTaskRequest(
        idempotency_key="bad-9", task_type="fail_times", payload=b'{"n": 1}'
    ),
    "fail_times with a float": pb.SubmitTaskRequest(
        idempotency_key="bad-10", task_type="fail_times", payload=b'{"times": 1.5}'
    ),
    "fail_times that is not an object": pb.SubmitTaskRequest(
        idempotency_key="bad-11", task_type="fail_times", payload=b"[1]"
    ),
}

#: The field each rejection's message must name.
NAMED_FIELD = {
    "empty key": "idempotency_key",
    "257-byte key": "idempotency_key",
    "key over 256 bytes in UTF-8": "idempotency_key",
    "empty task_type": "task_type",
    "unknown task_type": "task_type",
    "payload over the limit": "payload",
    "max_attempts < 0": "max_attempts",
    "max_attempts > 100": "max_attempts",
}


@pytest.mark.parametrize("case", sorted(INVALID_SUBMITS))
async def test_invalid_submit_is_invalid_argument_and_names_the_field(api: Stub, case: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await api.SubmitTask(INVALID_SUBMITS[case], timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    assert NAMED_FIELD.get(case, "payload") in (caught.value.details() or "")


async def test_rejected_submits_store_nothing(api: Stub, shared_stack: Stack) -> None:
    """A rejected call creates no task: no idempotency item, task or event for its key exists."""
    for request in INVALID_SUBMITS.values():
        assert await rpc_code(api.SubmitTask(request, timeout=30)) == grpc.StatusCode.INVALID_ARGUMENT
    session = aioboto3.Session(
        region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
    async with session.client("dynamodb", endpoint_url=shared_stack.endpoints.dynamodb) as dynamodb:
        for request in INVALID_SUBMITS.values():
            if not request.idempotency_key:
                continue
            item = await dynamodb.get_item(
                TableName=shared_stack.names["table"],
                Key={"pk": {"S": f"IDEM#{request.idempotency_key}"}, "sk": {"S": "IDEM"}},
                ConsistentRead=True,
            )
            assert "Item" not in item, request


async def test_limits_are_inclusive(api: Stub) -> None:
    """A 256-byte key (also in multi-byte UTF-8), a 262144-byte payload and max_attempts 100 are fine."""
    for idempotency_key in ("k" * 256, "é" * 128):
        answer = await submit(api, "noop", idempotency_key=idempotency_key)
        assert answer.created
        task = await api.GetTask(pb.GetTaskRequest(task_id=answer.task_id))
        assert task.idempotency_key == idempotency_key
    answer = await submit(api, "noop", b"\x01" * 262144, max_attempts=100)
    task = await wait_terminal(api, answer.task_id)
    assert task.max_attempts == 100 and task.status == pb.TASK_STATUS_COMPLETED


async def test_empty_task_id_is_invalid_argument(api: Stub) -> None:
    assert await rpc_code(api.GetTask(pb.GetTaskRequest(task_id=""))) == grpc.StatusCode.INVALID_ARGUMENT
    assert (
        await rpc_code(api.ListTaskEvents(pb.ListTaskEventsRequest(task_id="")))
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    watch = api.WatchTask(pb.WatchTaskRequest(task_id=""))
    assert await rpc_code(watch.read()) == grpc.StatusCode.INVALID_ARGUMENT


async def test_unknown_task_id_is_not_found(api: Stub) -> None:
    missing = "no-such-task-" + key()
    assert await rpc_code(api.GetTask(pb.GetTaskRequest(task_id=missing))) == grpc.StatusCode.NOT_FOUND
    assert (
        await rpc_code(api.ListTaskEvents(pb.ListTaskEventsRequest(task_id=missing)))
        == grpc.StatusCode.NOT_FOUND
    )
    watch = api.WatchTask(pb.WatchTaskRequest(task_id=missing))
    assert await rpc_code(watch.read()) == grpc.StatusCode.NOT_FOUND


async def test_unavailable_when_dynamodb_is_down(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Stop the DynamoDB stand-in under a running server: calls answer UNAVAILABLE, not INTERNAL."""
    from ._procs import start_moto

    moto, dynamodb = start_moto(tmp_path_factory.mktemp("private-moto"))
    try:
        server = await stack.start("serve", dynamodb=dynamodb)
        async with grpc.aio.insecure_channel(server.target) as channel:
            from taskqueue_proto import taskqueue_pb2_grpc

            stub = taskqueue_pb2_grpc.TaskQueueStub(channel)
            created = await submit(stub, "noop")
            moto.stop()
            for call in (
                stub.SubmitTask(pb.SubmitTaskRequest(idempotency_key=key(), task_type="noop"), timeout=30),
                stub.GetTask(pb.GetTaskRequest(task_id=created.task_id), timeout=30),
                stub.ListTaskEvents(pb.ListTaskEventsRequest(task_id=created.task_id), timeout=30),
            ):
                assert await rpc_code(call) == grpc.StatusCode.UNAVAILABLE
            watch = stub.WatchTask(pb.WatchTaskRequest(task_id=created.task_id), timeout=30)
            assert await rpc_code(watch.read()) == grpc.StatusCode.UNAVAILABLE
            # Validation still comes first: bad input is INVALID_ARGUMENT even with DynamoDB down.
            bad = stub.SubmitTask(pb.SubmitTaskRequest(idempotency_key="", task_type="noop"), timeout=30)
            assert await rpc_code(bad) == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        moto.stop()
