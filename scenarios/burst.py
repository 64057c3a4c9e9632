"""A burst of concurrent submits (spec 7.1, 3.1): every task completes, exactly once."""

from __future__ import annotations

import asyncio

import pytest

from pytest_taskqueue import TestHarness
from scenarios._checks import count, finished_task_violations, format_events, require, require_none
from taskqueue_proto import taskqueue_pb2 as pb

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.lifecycle]

BURST = 200
"""How many tasks the burst submits at once."""

_READ_CONCURRENCY = 16
"""At most this many history reads at a time, to spare a target's backend."""


def _request(index: int) -> tuple[str, bytes]:
    """Alternating noop and echo tasks; echo payloads are unique so results can be matched."""
    return ("echo", f"burst-{index}".encode()) if index % 2 else ("noop", b"")


@pytest.mark.required
@pytest.mark.spec("7.1", "3.1")
async def test_burst_of_tasks_all_complete_exactly_once(harness: TestHarness) -> None:
    """spec 7.1, 3.1: 200 tasks submitted at once each get their own task and complete exactly once."""
    requests = [_request(index) for index in range(BURST)]
    answers = await asyncio.gather(*(harness.submit_tracked(kind, payload) for kind, payload in requests))
    ids = [answer.task_id for answer in answers]
    require(
        all(answer.created_as_expected for answer in answers) and len(set(ids)) == BURST,
        f"spec 3.1: {BURST} submits with distinct keys create {BURST} distinct tasks",
        seen=f"{sum(a.answer.created for a in answers)} created, {len(set(ids))} distinct task_ids, "
        f"{sum(a.retries > 0 for a in answers)} retried after UNAVAILABLE",
    )
    for task_id in ids:  # one at a time: most are terminal by the time they are reached
        await harness.wait_for_terminal(task_id)

    gate = asyncio.Semaphore(_READ_CONCURRENCY)

    async def read(task_id: str) -> tuple[pb.Task, list[pb.TaskEvent]]:
        async with gate:
            return await harness.get(task_id), await harness.events(task_id)

    finals = await asyncio.gather(*(read(task_id) for task_id in ids))
    problems = []
    for (kind, payload), (task, events) in zip(requests, finals, strict=True):
        completions = count(events, pb.TASK_EVENT_TYPE_COMPLETED)
        if (
            task.status != pb.TASK_STATUS_COMPLETED
            or completions != 1
            or finished_task_violations(task, events)
        ):
            problems.append(f"{task.task_id} ({kind}): {completions} COMPLETED; {format_events(events)}")
        elif kind == "echo" and task.result != payload:
            problems.append(f"{task.task_id}: echo result {task.result!r} is not its payload {payload!r}")
    require_none(
        problems[:10], f"spec 7.1: each of the {BURST} tasks completes exactly once ({len(problems)} not)"
    )
