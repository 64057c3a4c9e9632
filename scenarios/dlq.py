"""Queue messages (spec 5.3, 10.2): a task's message is JSON with its task_id, in the work queue and,
once the task is DEAD, in the SQS dead-letter queue.

Harness-owned only: the scenarios read the queues the harness's backends hold, with its SQS client.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from typing import Any

import pytest

from pytest_taskqueue import TestHarness
from scenarios._checks import require, violated
from scenarios._support import MID_ATTEMPT_SLEEP_MS, finished
from taskqueue_proto import taskqueue_pb2 as pb

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.dlq]

_PEEK_VISIBILITY_S = 2
"""How long a message this scenario looked at (and left) stays hidden: long enough to page past it."""


def _task_id_of(body: str) -> str | None:
    """The string ``task_id`` member of a JSON object body (spec 10.2), else None."""
    try:
        decoded = json.loads(body)
    except ValueError:
        return None
    task_id = decoded.get("task_id") if isinstance(decoded, dict) else None
    return task_id if isinstance(task_id, str) else None


@dataclasses.dataclass
class _Peek:
    """What long-polling a queue for one task's message received."""

    found: dict[str, Any] | None = None
    others: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def bodies(self) -> list[str]:
        """A sample of the other bodies, for failure messages."""
        return [str(message.get("Body", ""))[:120] for message in self.others[:5]]


async def _peek_for(harness: TestHarness, queue_url: str, task_id: str, limit_s: float) -> _Peek:
    """Long-poll ``queue_url`` until a message naming ``task_id`` (spec 10.2) arrives or ``limit_s`` pass.

    Every message received stays invisible for ``_PEEK_VISIBILITY_S`` (so the next receive pages
    past it); the caller deletes or hands back what it wants.
    """
    sqs: Any = harness.sqs
    peek = _Peek()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while peek.found is None and (remaining := deadline - loop.time()) > 0:
        response = await sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=max(1, min(int(remaining), 5)),
            VisibilityTimeout=_PEEK_VISIBILITY_S,
        )
        for message in response.get("Messages", []):
            if peek.found is None and _task_id_of(str(message.get("Body", ""))) == task_id:
                peek.found = message
            else:
                peek.others.append(message)
    return peek


@pytest.mark.required
@pytest.mark.spec("5.3", "10.2")
@pytest.mark.harness_only
async def test_dead_task_message_is_in_the_dead_letter_queue(harness: TestHarness) -> None:
    """spec 5.3, 10.2: when a task becomes DEAD its message, a JSON object with its task_id, is in the DLQ."""
    answer = await harness.submit("fail_always", max_attempts=1)
    task, events = await finished(harness, answer.task_id)
    require(task.status == pb.TASK_STATUS_DEAD, "spec 5.3: fail_always ends DEAD", task=task, events=events)
    peek = await _peek_for(harness, harness.dead_letter_queue_url, answer.task_id, harness.timeout)
    others = peek.bodies()
    if peek.found is not None:  # the one found is deleted; others reappear for their own tests
        await harness.sqs.delete_message(
            QueueUrl=harness.dead_letter_queue_url, ReceiptHandle=peek.found["ReceiptHandle"]
        )
    else:
        violated(
            'spec 5.3/10.2: the DEAD task\'s message {"task_id": ...} is in the dead-letter queue',
            seen=f"no message with task_id {answer.task_id!r} within {harness.timeout:g}s; "
            f"other bodies seen: {others or 'none'}",
            task=task,
            events=events,
        )


@pytest.mark.required
@pytest.mark.harness_only
@pytest.mark.spec("10.2")
async def test_task_message_in_the_work_queue_is_json_with_its_task_id(harness: TestHarness) -> None:
    """spec 10.2: "The SQS message of a task MUST be a JSON object with a string member task_id."

    The worker is killed (SIGKILL) and a task submitted, so its message waits in the work queue,
    visible. The scenario receives it, checks its body, hands it back (visibility 0) and starts the
    worker again; the task (an ``echo``) then completes. When the work runs in the API process
    (spec 10.3), that process is killed right after the answer instead; the task is then a short
    ``sleep`` so that it cannot finish first, and its message is visible again once its visibility
    timeout passes if the attempt had started.
    """
    worker = harness.worker
    peek = _Peek()
    answer = pb.SubmitTaskResponse()
    if not harness.worker_is_server:
        worker.kill()
    try:
        answer = (
            await harness.submit("sleep", json.dumps({"ms": MID_ATTEMPT_SLEEP_MS}).encode())
            if harness.worker_is_server
            else await harness.submit("echo", b"in the work queue")
        )
        if harness.worker_is_server:
            worker.kill()
        limit_s = harness.visibility_timeout + harness.timeout
        peek = await _peek_for(harness, harness.queue_url, answer.task_id, limit_s)
    finally:
        received = peek.others + ([peek.found] if peek.found is not None else [])
        for message in received:  # every message looked at goes back, visible at once
            # A handle goes stale when its message was received again meanwhile: it is visible then.
            with contextlib.suppress(Exception):
                await harness.sqs.change_message_visibility(
                    QueueUrl=harness.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
        if not worker.running:
            worker.start()
    await worker.wait_ready()
    require(
        peek.found is not None,
        'spec 10.2: the task\'s message in the work queue is a JSON object {"task_id": "<its id>", ...}',
        seen=f"task {answer.task_id}; other bodies received: {peek.bodies() or 'none'}",
    )
    task, events = await finished(harness, answer.task_id)
    require(task.status == pb.TASK_STATUS_COMPLETED, "spec 7.2: the task completes", task=task, events=events)
