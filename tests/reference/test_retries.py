"""Retries and the dead-letter queue (spec section 5)."""

from __future__ import annotations

from taskqueue_proto import taskqueue_pb2 as pb

from ._client import Stub, dead_letter_task_ids, events, shape, submit, wait_terminal
from .conftest import Stack


def expected_death(max_attempts: int) -> list[tuple[str, int]]:
    """History of a task whose every attempt fails."""
    history = [("SUBMITTED", 0)]
    for attempt in range(1, max_attempts + 1):
        history += [("PROCESSING", attempt), ("FAILED", attempt)]
    return [*history, ("DEAD", 0)]


async def test_fail_always_dies_after_five_attempts_into_the_dlq(api: Stub, shared_stack: Stack) -> None:
    answer = await submit(api, "fail_always")
    task = await wait_terminal(api, answer.task_id)
    assert task.status == pb.TASK_STATUS_DEAD and task.attempts == 5 and task.max_attempts == 5
    assert task.last_error == "fail_always: attempt 5 failed"
    history = await events(api, answer.task_id)
    assert shape(history) == expected_death(5)
    failed = [e for e in history if e.type == pb.TASK_EVENT_TYPE_FAILED]
    assert [e.detail for e in failed] == [f"fail_always: attempt {n} failed" for n in range(1, 6)]
    seen = await dead_letter_task_ids(shared_stack.endpoints.sqs, shared_stack.names["dlq"], answer.task_id)
    assert answer.task_id in seen


async def test_custom_max_attempts(api: Stub, shared_stack: Stack) -> None:
    for max_attempts in (1, 2):
        answer = await submit(api, "fail_always", max_attempts=max_attempts)
        task = await wait_terminal(api, answer.task_id)
        assert task.status == pb.TASK_STATUS_DEAD and task.attempts == max_attempts
        assert task.max_attempts == max_attempts
        assert shape(await events(api, answer.task_id)) == expected_death(max_attempts)
        dlq = shared_stack.names["dlq"]
        assert answer.task_id in await dead_letter_task_ids(shared_stack.endpoints.sqs, dlq, answer.task_id)


async def test_fail_times_at_the_limit_completes_and_beyond_dies(api: Stub) -> None:
    completes = await submit(api, "fail_times", b'{"times": 2}', max_attempts=3)
    dies = await submit(api, "fail_times", b'{"times": 3}', max_attempts=3)
    assert (await wait_terminal(api, completes.task_id)).status == pb.TASK_STATUS_COMPLETED
    dead = await wait_terminal(api, dies.task_id)
    assert dead.status == pb.TASK_STATUS_DEAD
    assert shape(await events(api, dies.task_id)) == expected_death(3)
