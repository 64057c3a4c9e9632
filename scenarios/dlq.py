"""The dead-letter queue (spec 5.3, 10.2): a DEAD task's message is in the SQS dead-letter queue.

Harness-owned only: the scenario reads the DLQ the harness created, with the harness's SQS client.
"""

from __future__ import annotations

import asyncio
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
