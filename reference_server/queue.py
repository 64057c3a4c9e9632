"""SQS: the work queue and the dead-letter queue.

A message's body is ``{"task_id": "..."}`` and nothing else: the task item in DynamoDB is the truth,
the message only says "look at this task". That makes duplicates and redeliveries harmless.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from reference_server.backends import error_code, translated

#: Error codes of a receipt handle that is stale because the message was received again elsewhere.
_STALE_RECEIPT_CODES = frozenset(
    {
        "ReceiptHandleIsInvalid",
        "MessageNotInflight",
        "AWS.SimpleQueueService.MessageNotInflight",
        "InvalidParameterValue",
    }
)


@dataclass(frozen=True, slots=True)
class Message:
    """A received message: its task id (None for a body we cannot read) and receipt handle."""

    task_id: str | None
    receipt_handle: str
    body: str


def message_body(task_id: str) -> str:
    """The body of a task's message."""
    return json.dumps({"task_id": task_id}, separators=(",", ":"))


def _task_id_of(body: str) -> str | None:
    try:
        document = json.loads(body)
    except json.JSONDecodeError:
        return None
    if isinstance(document, dict) and isinstance(document.get("task_id"), str) and document["task_id"]:
        return str(document["task_id"])
    return None


class Queues:
    """The work queue and dead-letter queue of one deployment; call ``ensure`` before anything else."""

    def __init__(self, client: Any, queue: str, dead_letter_queue: str, visibility_timeout: int) -> None:
        self._sqs = client
        self._names = (queue, dead_letter_queue)
        self._visibility_timeout = visibility_timeout
        self.queue_url = ""
        self.dead_letter_queue_url = ""

    async def ensure(self, create: bool) -> None:
        """Resolve both queue URLs, creating the queues if allowed; BackendUnavailable if not yet possible."""
        queue, dead = self._names
        self.dead_letter_queue_url = await self._ensure_one(
            dead, {"MessageRetentionPeriod": str(14 * 24 * 3600)}, create
        )
        self.queue_url = await self._ensure_one(
            queue, {"VisibilityTimeout": str(self._visibility_timeout)}, create
        )

    async def _ensure_one(self, name: str, attributes: dict[str, str], create: bool) -> str:
        with translated(f"SQS queue {name}"):
            if create:
                try:
                    answer = await self._sqs.create_queue(QueueName=name, Attributes=attributes)
                    return str(answer["QueueUrl"])
                except ClientError as exc:
                    # It exists with other attributes: use it as it is (receives pass their own timeout).
                    if error_code(exc) not in ("QueueNameExists", "QueueAlreadyExists"):
                        raise
            answer = await self._sqs.get_queue_url(QueueName=name)
            return str(answer["QueueUrl"])

    async def send(self, task_id: str) -> None:
        """Queue the task's message for a worker."""
        with translated("SQS SendMessage"):
            await self._sqs.send_message(QueueUrl=self.queue_url, MessageBody=message_body(task_id))

    async def send_dead(self, task_id: str) -> None:
        """Put the task's message in the dead-letter queue."""
        with translated("SQS SendMessage (dead-letter queue)"):
            await self._sqs.send_message(
                QueueUrl=self.dead_letter_queue_url, MessageBody=message_body(task_id)
            )

    async def receive(self, max_messages: int, wait_seconds: int) -> list[Message]:
        """Long-poll for up to ``max_messages`` (1..10) messages, invisible for the visibility timeout."""
        with translated("SQS ReceiveMessage"):
            answer = await self._sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=max(1, min(10, max_messages)),
                WaitTimeSeconds=wait_seconds,
                VisibilityTimeout=self._visibility_timeout,
            )
        return [
            Message(_task_id_of(str(m.get("Body", ""))), str(m["ReceiptHandle"]), str(m.get("Body", "")))
            for m in answer.get("Messages", [])
        ]

    async def delete(self, receipt_handle: str) -> bool:
        """Delete a handled message; False if the handle went stale (someone received it again)."""
        with translated("SQS DeleteMessage"):
            try:
                await self._sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=receipt_handle)
            except ClientError as exc:
                if error_code(exc) in _STALE_RECEIPT_CODES:
                    return False
                raise
        return True

    async def set_visibility(self, receipt_handle: str, seconds: int) -> bool:
        """Make the message invisible for ``seconds`` more (0: visible now); False if the handle is stale."""
        with translated("SQS ChangeMessageVisibility"):
            try:
                await self._sqs.change_message_visibility(
                    QueueUrl=self.queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=max(0, seconds)
                )
            except ClientError as exc:
                if error_code(exc) in _STALE_RECEIPT_CODES:
                    return False
                raise
        return True
