"""SQS: the work queue and the dead-letter queue.

A message's body is ``{"task_id": "..."}``, sent at submission with the task's submitted state
(``"submitted": {...}``, see ``store.submitted_state``) when its payload is small. The task item in
DynamoDB is the truth; the message says "look at this task", and on its first delivery lets the worker
try the claim of the first attempt without reading the task first (the claim is conditional, so a
stale guess only costs a refused write). That makes duplicates and redeliveries harmless.

Sends, deletes and visibility changes on the work queue go out in SQS batch calls (``_Batcher``):
the first of a kind goes at once, alone, and those that come while it is in flight go together in
the next call. An idle process waits for nothing; a busy one makes one call per up to ten messages,
which is what bounds the CPU that each task costs the process and SQS.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from reference_server.backends import BackendUnavailable, error_code, translated

log = logging.getLogger(__name__)

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
    """A received message: its task id (None for a body we cannot read), receipt handle, and on its
    first delivery the submitted state it carries (``submitted``, else None)."""

    task_id: str | None
    receipt_handle: str
    body: str
    submitted: object = None


def message_body(task_id: str, submitted: dict[str, Any] | None = None) -> str:
    """The body of a task's message, with its submitted state if given."""
    document: dict[str, Any] = {"task_id": task_id}
    if submitted is not None:
        document["submitted"] = submitted
    return json.dumps(document, separators=(",", ":"))


def _submitted_of(body: str) -> object:
    """The ``submitted`` member of a message body, or None."""
    try:
        document = json.loads(body)
    except json.JSONDecodeError:
        return None
    return document.get("submitted") if isinstance(document, dict) else None


def _task_id_of(body: str) -> str | None:
    try:
        document = json.loads(body)
    except json.JSONDecodeError:
        return None
    if isinstance(document, dict) and isinstance(document.get("task_id"), str) and document["task_id"]:
        return str(document["task_id"])
    return None


#: Entries per SQS batch call (the SQS limit).
BATCH_LIMIT = 10
#: Batch calls of one kind in flight at once; a full batch waits while this many are.
_BATCHES_IN_FLIGHT = 4
#: How long a message to delete waits for others to share its DeleteMessageBatch call, seconds.
DELETE_LINGER_S = 0.05


@dataclass(frozen=True, slots=True)
class EntryFailure:
    """An entry that SQS refused inside a batch call."""

    code: str
    sender_fault: bool
    message: str


BatchCall = Callable[[list[dict[str, Any]]], Awaitable[Any]]


class _Batcher:
    """Coalesces one kind of single-message SQS call into batch calls.

    ``submit(entry)`` queues the entry (a batch call's entry without its ``Id``). When no call of
    this batcher is in flight, the queued entries go at once (after ``linger`` seconds, if set, to
    gather more); while one is, they gather, and a full batch goes at once too, up to
    ``_BATCHES_IN_FLIGHT`` calls. Each caller gets its own entry's outcome: None when it
    succeeded, an ``EntryFailure`` when SQS refused it, or the exception of a batch call that failed
    as a whole. An entry whose caller was cancelled before it went is dropped. ``flush()`` sends
    what is queued without lingering.
    """

    def __init__(self, call: BatchCall, what: str, *, linger: float = 0.0) -> None:
        self._call = call
        self._what = what
        self._linger = linger
        self._pending: list[tuple[dict[str, Any], asyncio.Future[EntryFailure | None]]] = []
        self._in_flight = 0
        self._due = False
        self._timer: asyncio.TimerHandle | None = None
        self._calls: set[asyncio.Task[None]] = set()

    def queue(self, entry: dict[str, Any]) -> asyncio.Future[EntryFailure | None]:
        """Queue ``entry`` for the next batch call; the future of its outcome."""
        future: asyncio.Future[EntryFailure | None] = asyncio.get_running_loop().create_future()
        self._pending.append((entry, future))
        self._dispatch()
        return future

    async def submit(self, entry: dict[str, Any]) -> EntryFailure | None:
        """Send ``entry`` in the next batch call; its outcome (see the class docstring)."""
        return await self.queue(entry)

    def flush(self) -> None:
        """Send the queued entries as soon as no call is in flight, without lingering."""
        self._due = True
        self._dispatch()

    def _expire(self) -> None:
        self._timer = None
        self.flush()

    def _dispatch(self) -> None:
        while self._pending:
            full = len(self._pending) >= BATCH_LIMIT
            if self._in_flight >= (_BATCHES_IN_FLIGHT if full else 1):
                return
            if not full and self._linger > 0 and not self._due:
                if self._timer is None:
                    self._timer = asyncio.get_running_loop().call_later(self._linger, self._expire)
                return
            self._due = False
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            batch: list[tuple[dict[str, Any], asyncio.Future[EntryFailure | None]]] = []
            while self._pending and len(batch) < BATCH_LIMIT:
                entry, future = self._pending.pop(0)
                if not future.done():  # not cancelled meanwhile
                    batch.append((entry, future))
            if not batch:
                continue
            self._in_flight += 1
            call = asyncio.create_task(self._send(batch), name=f"sqs-batch-{self._what}")
            self._calls.add(call)
            call.add_done_callback(self._calls.discard)

    async def _send(self, batch: list[tuple[dict[str, Any], asyncio.Future[EntryFailure | None]]]) -> None:
        try:
            entries = [{"Id": str(index), **entry} for index, (entry, _) in enumerate(batch)]
            try:
                with translated(f"SQS {self._what}"):
                    answer = await self._call(entries)
            except Exception as exc:  # the whole call failed: every entry of it did
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                return
            failed = {
                str(item.get("Id")): EntryFailure(
                    str(item.get("Code", "")), bool(item.get("SenderFault")), str(item.get("Message", ""))
                )
                for item in answer.get("Failed", [])
            }
            for index, (_, future) in enumerate(batch):
                if not future.done():
                    future.set_result(failed.get(str(index)))
        finally:
            for _, future in batch:  # only if this call itself was cancelled (shutdown)
                if not future.done():
                    future.cancel()
            self._in_flight -= 1
            self._dispatch()


def _raise_for(failure: EntryFailure, what: str) -> None:
    """An entry refused for a reason other than a stale receipt handle: transient or a bug."""
    text = f"SQS {what}: {failure.code}: {failure.message}"
    if failure.sender_fault:
        raise RuntimeError(text)
    raise BackendUnavailable(text)


class Queues:
    """The work queue and dead-letter queue of one deployment; call ``ensure`` before anything else."""

    def __init__(self, client: Any, queue: str, dead_letter_queue: str, visibility_timeout: int) -> None:
        self._sqs = client
        self._names = (queue, dead_letter_queue)
        self._visibility_timeout = visibility_timeout
        self.queue_url = ""
        self.dead_letter_queue_url = ""
        self._sends = _Batcher(
            lambda entries: self._sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries),
            "SendMessageBatch",
        )
        self._deletes = _Batcher(
            lambda entries: self._sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries),
            "DeleteMessageBatch",
            linger=DELETE_LINGER_S,
        )
        self._discards: set[asyncio.Future[EntryFailure | None]] = set()
        self._visibility_changes = _Batcher(
            lambda entries: self._sqs.change_message_visibility_batch(
                QueueUrl=self.queue_url, Entries=entries
            ),
            "ChangeMessageVisibilityBatch",
        )

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

    async def send(self, task_id: str, submitted: dict[str, Any] | None = None) -> None:
        """Queue the task's message for a worker (with the task's submitted state, if given)."""
        failure = await self._sends.submit({"MessageBody": message_body(task_id, submitted)})
        if failure is not None:
            _raise_for(failure, "SendMessageBatch")

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
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
        messages = []
        for m in answer.get("Messages", []):
            body = str(m.get("Body", ""))
            first = str(m.get("Attributes", {}).get("ApproximateReceiveCount", "")) == "1"
            submitted = _submitted_of(body) if first and '"submitted"' in body else None
            messages.append(Message(_task_id_of(body), str(m["ReceiptHandle"]), body, submitted))
        return messages

    async def delete(self, receipt_handle: str) -> bool:
        """Delete a handled message; False if the handle went stale (someone received it again)."""
        return self._stale_or_done(
            await self._deletes.submit({"ReceiptHandle": receipt_handle}), "DeleteMessageBatch"
        )

    def discard(self, receipt_handle: str) -> None:
        """Delete a handled message in the background, sharing a batch call with others (the message
        is deleted within ``DELETE_LINGER_S`` plus a call). A failure is logged: the message comes
        back after its visibility timeout, and the worker deletes it then. ``drain`` waits for these."""
        future = self._deletes.queue({"ReceiptHandle": receipt_handle})
        self._discards.add(future)
        future.add_done_callback(self._discarded)

    def _discarded(self, future: asyncio.Future[EntryFailure | None]) -> None:
        self._discards.discard(future)
        if future.cancelled():
            return
        error = future.exception()
        failure = future.result() if error is None else None
        if error is not None or (failure is not None and failure.code not in _STALE_RECEIPT_CODES):
            log.warning(
                "a handled message was not deleted (it will come back and be deleted then): %s",
                error or failure,
            )

    async def drain(self, within: float) -> None:
        """Send the deletes of ``discard`` still waiting and wait up to ``within`` seconds for them."""
        self._deletes.flush()
        if self._discards:
            await asyncio.wait(set(self._discards), timeout=within)

    async def set_visibility(self, receipt_handle: str, seconds: int) -> bool:
        """Make the message invisible for ``seconds`` more (0: visible now); False if the handle is stale."""
        failure = await self._visibility_changes.submit(
            {"ReceiptHandle": receipt_handle, "VisibilityTimeout": max(0, seconds)}
        )
        return self._stale_or_done(failure, "ChangeMessageVisibilityBatch")

    @staticmethod
    def _stale_or_done(failure: EntryFailure | None, what: str) -> bool:
        if failure is None:
            return True
        if failure.code in _STALE_RECEIPT_CODES:
            return False
        _raise_for(failure, what)
        return False  # pragma: no cover - _raise_for always raises
