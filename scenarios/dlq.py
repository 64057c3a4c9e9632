"""Queue messages (spec 5.3, 10.2): a task's message is JSON with its task_id, in the work queue and,
once the task is DEAD, in the SQS dead-letter queue.

Harness-owned only: the scenarios read the queues the harness's backends hold, with its SQS client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest

from pytest_taskqueue import TestHarness
from scenarios._checks import require, violated
from scenarios._support import finished
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


async def _find_in_dlq(harness: TestHarness, task_id: str) -> tuple[bool, list[str]]:
    """Long-poll the DLQ until a message for ``task_id`` shows up or the deadline passes.

    Messages of other tests are left in the queue (they reappear after a short visibility
    timeout); the one found is deleted. Returns whether it was found and a sample of other bodies.
    """
    sqs: Any = harness.sqs
    others: list[str] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + harness.timeout
    while (remaining := deadline - loop.time()) > 0:
        response = await sqs.receive_message(
            QueueUrl=harness.dead_letter_queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=max(1, min(int(remaining), 5)),
            VisibilityTimeout=_PEEK_VISIBILITY_S,
        )
        for message in response.get("Messages", []):
            body = message.get("Body", "")
            if _task_id_of(body) == task_id:
                await sqs.delete_message(
                    QueueUrl=harness.dead_letter_queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
                return True, others
            if len(others) < 5:
                others.append(body[:120])
    return False, others


@pytest.mark.required
@pytest.mark.spec("5.3", "10.2")
@pytest.mark.harness_only
async def test_dead_task_message_is_in_the_dead_letter_queue(harness: TestHarness) -> None:
    """spec 5.3, 10.2: when a task becomes DEAD its message, a JSON object with its task_id, is in the DLQ."""
    answer = await harness.submit("fail_always", max_attempts=1)
    task, events = await finished(harness, answer.task_id)
    require(task.status == pb.TASK_STATUS_DEAD, "spec 5.3: fail_always ends DEAD", task=task, events=events)
    found, others = await _find_in_dlq(harness, answer.task_id)
    if not found:
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

    A task is submitted and the process running the work is killed at once (SIGKILL), so its
    message stays in the work queue: visible, or visible again once its visibility timeout passes
    if the attempt had started. The scenario receives it, checks its body, hands it back
    (visibility 0) and starts the worker again; the task then completes.
    """
    sqs: Any = harness.sqs
    worker = harness.worker
    answer = await harness.submit(
        "sleep", json.dumps({"ms": int(harness.visibility_timeout * 2000)}).encode()
    )
    worker.kill()
    bodies: list[str] = []
    handles: list[str] = []
    found = False
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + harness.visibility_timeout + harness.timeout
        while not found and (remaining := deadline - loop.time()) > 0:
            response = await sqs.receive_message(
                QueueUrl=harness.queue_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=max(1, min(int(remaining), 5)),
                VisibilityTimeout=_PEEK_VISIBILITY_S,
            )
            for message in response.get("Messages", []):
                body = message.get("Body", "")
                bodies.append(body[:120])
                handles.append(message["ReceiptHandle"])
                found = found or _task_id_of(body) == answer.task_id
    finally:
        for handle in handles:  # every message looked at goes back, visible at once
            # A handle goes stale when its message was received again meanwhile: it is visible then.
            with contextlib.suppress(Exception):
                await sqs.change_message_visibility(
                    QueueUrl=harness.queue_url, ReceiptHandle=handle, VisibilityTimeout=0
                )
        worker.start()
    await worker.wait_ready()
    require(
        found,
        'spec 10.2: the task\'s message in the work queue is a JSON object {"task_id": "<its id>", ...}',
        seen=f"task {answer.task_id}; bodies received: {bodies[:5] or 'none'}",
    )
    task, events = await finished(harness, answer.task_id)
    require(task.status == pb.TASK_STATUS_COMPLETED, "spec 7.2: the task completes", task=task, events=events)
