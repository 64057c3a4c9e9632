"""DynamoDB storage: tasks, their event history and idempotency keys, in one table.

Layout (docs/architecture.md, "Storage layout"), keys ``pk``/``sk``:

- ``IDEM#<key>`` / ``IDEM``: the task_id the key was first used for, and the request's fingerprint.
- ``TASK#<id>`` / ``TASK``: the task's current state, ``seq`` (last event number), lease and flags.
- ``TASK#<id>`` / ``EVENT#<seq, 20 digits>``: one history event.
- ``TASK#<id>`` / ``RESULT``: the result, only when payload plus result would not fit in one item
  (DynamoDB items hold at most 400 KB; an ``echo`` of a 256 KiB payload needs twice that).

Every change of state is a single ``TransactWriteItems``: the task item is updated on condition that
its status and ``seq`` are the ones the caller read, and the new events are put on condition that they
do not exist. So two processes racing on one task cannot both win, and history and state never
disagree; a refused transition comes back with the task item as it is
(``ReturnValuesOnConditionCheckFailure``), so the loser decides again without reading it. Submission
puts the idempotency item, the task and its SUBMITTED event in one transaction, conditional on the
idempotency item not existing, which makes concurrent identical submits safe across any number of
server processes without a lock in memory.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import random
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError

from reference_server.backends import BackendUnavailable, error_code, translated

TASK_SK = "TASK"
RESULT_SK = "RESULT"
IDEM_SK = "IDEM"
EVENT_PREFIX = "EVENT#"

#: Payload plus result above this many bytes moves the result to its own item.
INLINE_LIMIT_BYTES = 300_000
#: FAILED details are cut to this many characters (the item must stay small).
MAX_DETAIL_CHARS = 4096
#: Attempts at a submit transaction that DynamoDB cancels for a concurrent transaction.
_SUBMIT_TRIES = 8

AttributeMap = dict[str, dict[str, Any]]


class Status(StrEnum):
    """Task status as stored; the names match the proto's ``TASK_STATUS_<NAME>``."""

    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    RETRYING = "RETRYING"
    COMPLETED = "COMPLETED"
    DEAD = "DEAD"

    @property
    def terminal(self) -> bool:
        """COMPLETED and DEAD are final: no transition leaves them."""
        return self in (Status.COMPLETED, Status.DEAD)


class EventType(StrEnum):
    """History event type as stored; the names match the proto's ``TASK_EVENT_TYPE_<NAME>``."""

    SUBMITTED = "SUBMITTED"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    DEAD = "DEAD"


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """A task as read from (or just written to) its item. Times: µs (created/updated), ms (lease)."""

    task_id: str
    idempotency_key: str
    task_type: str
    payload: bytes
    status: Status
    attempts: int
    max_attempts: int
    seq: int
    created_at_us: int
    updated_at_us: int
    result: bytes = b""
    result_external: bool = False
    last_error: str = ""
    lease_until_ms: int = 0
    not_before_ms: int = 0
    dead_lettered: bool = False

    @property
    def version(self) -> tuple[int, str, int]:
        """What changes on every transition; watchers compare it to detect a change."""
        return (self.seq, self.status.value, self.updated_at_us)


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One history event."""

    seq: int
    type: EventType
    attempt: int
    at_us: int
    detail: str


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """What makes two submits with one idempotency key "the same request"."""

    task_type: str
    payload_sha256: str
    max_attempts: int

    @staticmethod
    def of(task_type: str, payload: bytes, max_attempts: int) -> Fingerprint:
        """Fingerprint of a request; ``max_attempts`` must already be the effective value."""
        return Fingerprint(task_type, hashlib.sha256(payload).hexdigest(), max_attempts)

    def differences(self, requested: Fingerprint) -> list[str]:
        """Human-readable list of the fields in which ``requested`` differs from this (stored) one."""
        found: list[str] = []
        if self.task_type != requested.task_type:
            found.append(f"task_type (existing {self.task_type!r}, requested {requested.task_type!r})")
        if self.payload_sha256 != requested.payload_sha256:
            found.append("payload (the bytes differ)")
        if self.max_attempts != requested.max_attempts:
            found.append(
                f"max_attempts (existing {self.max_attempts}, requested {requested.max_attempts}, "
                "after 0 is replaced by the default)"
            )
        return found


class IdempotencyConflict(Exception):
    """The idempotency key belongs to a task created by a different request."""

    def __init__(self, key: str, task_id: str, differences: list[str]) -> None:
        self.key = key
        self.task_id = task_id
        self.differences = differences
        super().__init__(
            f"idempotency_key {key!r} was already used for task {task_id} with a different request: "
            + "; ".join(differences)
        )


class TransitionConflict(Exception):
    """The task changed since it was read (another process moved it first); decide again on ``current``,
    the task's state as DynamoDB refused the write with (None when not known: re-read it)."""

    def __init__(self, message: str, current: TaskRecord | None = None) -> None:
        super().__init__(message)
        self.current = current


def now_us() -> int:
    """Wall-clock time in microseconds since the epoch (what history timestamps are made of)."""
    return time.time_ns() // 1000


def now_ms() -> int:
    """Wall-clock time in milliseconds since the epoch (what leases and backoffs are made of)."""
    return time.time_ns() // 1_000_000


def task_pk(task_id: str) -> str:
    """Partition key of a task's items."""
    return f"TASK#{task_id}"


def event_sk(seq: int) -> str:
    """Sort key of event number ``seq``; zero-padded so string order is numeric order."""
    return f"{EVENT_PREFIX}{seq:020d}"


def _s(value: str) -> dict[str, Any]:
    return {"S": value}


def _n(value: int) -> dict[str, Any]:
    return {"N": str(value)}


def _get_s(item: AttributeMap, name: str, default: str = "") -> str:
    value = item.get(name)
    return str(value["S"]) if value else default


def _get_n(item: AttributeMap, name: str, default: int = 0) -> int:
    value = item.get(name)
    return int(value["N"]) if value else default


def _get_b(item: AttributeMap, name: str) -> bytes:
    value = item.get(name)
    return bytes(value["B"]) if value else b""


def _get_bool(item: AttributeMap, name: str) -> bool:
    value = item.get(name)
    return bool(value["BOOL"]) if value else False


#: Payloads up to this many bytes travel in the task's message (``submitted_state``).
SUBMITTED_STATE_PAYLOAD_BYTES = 1024


def submitted_state(task: TaskRecord) -> dict[str, Any] | None:
    """What a worker needs to claim a just-submitted task without reading it first, to travel in its
    message; None when the task is past its submission or its payload is large."""
    if task.status != Status.PENDING or task.seq != 1 or len(task.payload) > SUBMITTED_STATE_PAYLOAD_BYTES:
        return None
    return {
        "idempotency_key": task.idempotency_key,
        "task_type": task.task_type,
        "payload": base64.b64encode(task.payload).decode("ascii"),
        "max_attempts": task.max_attempts,
        "created_at_us": task.created_at_us,
    }


def from_submitted_state(task_id: str, state: object) -> TaskRecord | None:
    """The task as ``submitted_state`` described it at its submission; None for anything malformed.

    Only a guess: the task may have moved on since. Transitions are conditional on the status and
    ``seq`` they start from, so acting on a stale guess fails with TransitionConflict, never wrongly.
    """
    if not isinstance(state, dict):
        return None
    try:
        key, kind, encoded = state["idempotency_key"], state["task_type"], state["payload"]
        max_attempts, created = state["max_attempts"], state["created_at_us"]
        if not (isinstance(key, str) and isinstance(kind, str) and isinstance(encoded, str)):
            return None
        if type(max_attempts) is not int or type(created) is not int:
            return None
        payload = base64.b64decode(encoded, validate=True)
    except (KeyError, ValueError, binascii.Error):
        return None
    return _submitted(task_id, key, kind, payload, max_attempts, created)


def _submitted(
    task_id: str, key: str, task_type: str, payload: bytes, max_attempts: int, created_at_us: int
) -> TaskRecord:
    """A task as its submission creates it: PENDING, no attempt yet, its SUBMITTED event as ``seq`` 1."""
    return TaskRecord(
        task_id=task_id,
        idempotency_key=key,
        task_type=task_type,
        payload=payload,
        status=Status.PENDING,
        attempts=0,
        max_attempts=max_attempts,
        seq=1,
        created_at_us=created_at_us,
        updated_at_us=created_at_us,
    )


def _record_from_item(item: AttributeMap) -> TaskRecord:
    return TaskRecord(
        task_id=_get_s(item, "task_id"),
        idempotency_key=_get_s(item, "idem_key"),
        task_type=_get_s(item, "task_type"),
        payload=_get_b(item, "payload"),
        status=Status(_get_s(item, "status")),
        attempts=_get_n(item, "attempts"),
        max_attempts=_get_n(item, "max_attempts"),
        seq=_get_n(item, "seq"),
        created_at_us=_get_n(item, "created_at"),
        updated_at_us=_get_n(item, "updated_at"),
        result=_get_b(item, "result"),
        result_external=_get_bool(item, "result_external"),
        last_error=_get_s(item, "last_error"),
        lease_until_ms=_get_n(item, "lease_until"),
        not_before_ms=_get_n(item, "not_before"),
        dead_lettered=_get_bool(item, "dead_lettered"),
    )


def _task_item(record: TaskRecord) -> AttributeMap:
    item: AttributeMap = {
        "pk": _s(task_pk(record.task_id)),
        "sk": _s(TASK_SK),
        "task_id": _s(record.task_id),
        "idem_key": _s(record.idempotency_key),
        "task_type": _s(record.task_type),
        "status": _s(record.status.value),
        "attempts": _n(record.attempts),
        "max_attempts": _n(record.max_attempts),
        "seq": _n(record.seq),
        "created_at": _n(record.created_at_us),
        "updated_at": _n(record.updated_at_us),
    }
    if record.payload:  # empty binary attributes are omitted: absent reads back as b""
        item["payload"] = {"B": record.payload}
    return item


def _event_item(task_id: str, event: EventRecord) -> AttributeMap:
    item: AttributeMap = {
        "pk": _s(task_pk(task_id)),
        "sk": _s(event_sk(event.seq)),
        "seq": _n(event.seq),
        "type": _s(event.type.value),
        "attempt": _n(event.attempt),
        "at": _n(event.at_us),
    }
    if event.detail:
        item["detail"] = _s(event.detail)
    return item


def _event_from_item(item: AttributeMap) -> EventRecord:
    return EventRecord(
        seq=_get_n(item, "seq"),
        type=EventType(_get_s(item, "type")),
        attempt=_get_n(item, "attempt"),
        at_us=_get_n(item, "at"),
        detail=_get_s(item, "detail"),
    )


def _cancellation_codes(exc: ClientError) -> list[str]:
    reasons = exc.response.get("CancellationReasons") or []
    return [str(reason.get("Code", "None")) for reason in reasons]


#: Attributes a watcher needs to see a change (everything but payload and result, which can be large).
_STATE_ATTRIBUTES = (
    "task_id",
    "idem_key",
    "task_type",
    "status",
    "attempts",
    "max_attempts",
    "seq",
    "created_at",
    "updated_at",
    "last_error",
    "result_external",
    "lease_until",
    "not_before",
    "dead_lettered",
)


class Store:
    """Tasks, events and idempotency keys in one DynamoDB table (see the module docstring)."""

    def __init__(self, client: Any, table: str) -> None:
        self._db = client
        self.table = table

    # ----------------------------------------------------------------- resources

    async def ensure_table(self, create: bool) -> None:
        """Make sure the table exists and is ACTIVE; create it (on-demand billing) if allowed.

        Raises BackendUnavailable while DynamoDB does not answer, the table is missing (when not
        creating) or still being created: start-up retries until its deadline.
        """
        with translated(f"DynamoDB DescribeTable {self.table}"):
            try:
                described = await self._db.describe_table(TableName=self.table)
            except ClientError as exc:
                if error_code(exc) != "ResourceNotFoundException" or not create:
                    raise
                described = None
        if described is None:
            with translated(f"DynamoDB CreateTable {self.table}"):
                try:
                    await self._db.create_table(
                        TableName=self.table,
                        KeySchema=[
                            {"AttributeName": "pk", "KeyType": "HASH"},
                            {"AttributeName": "sk", "KeyType": "RANGE"},
                        ],
                        AttributeDefinitions=[
                            {"AttributeName": "pk", "AttributeType": "S"},
                            {"AttributeName": "sk", "AttributeType": "S"},
                        ],
                        BillingMode="PAY_PER_REQUEST",
                    )
                except ClientError as exc:
                    if error_code(exc) != "ResourceInUseException":  # created concurrently: fine
                        raise
            with translated(f"DynamoDB DescribeTable {self.table}"):
                described = await self._db.describe_table(TableName=self.table)
        status = described["Table"]["TableStatus"]
        if status != "ACTIVE":
            raise BackendUnavailable(f"DynamoDB table {self.table} is {status}, not ACTIVE yet")

    # ------------------------------------------------------------------- submit

    async def create_task(
        self, key: str, task_type: str, payload: bytes, max_attempts: int
    ) -> tuple[TaskRecord, bool]:
        """Create the task for ``key``, or return the one that already exists for it.

        Returns ``(task, created)``. Raises IdempotencyConflict when the key was used for a different
        request, BackendUnavailable when DynamoDB cannot be reached.
        """
        fingerprint = Fingerprint.of(task_type, payload, max_attempts)
        for attempt in range(_SUBMIT_TRIES):
            created_at = now_us()
            record = _submitted(str(uuid.uuid4()), key, task_type, payload, max_attempts, created_at)
            idem_item: AttributeMap = {
                "pk": _s(f"IDEM#{key}"),
                "sk": _s(IDEM_SK),
                "task_id": _s(record.task_id),
                "task_type": _s(task_type),
                "payload_sha256": _s(fingerprint.payload_sha256),
                "max_attempts": _n(max_attempts),
                "created_at": _n(created_at),
            }
            submitted = EventRecord(1, EventType.SUBMITTED, 0, created_at, "")
            items = [
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": idem_item,
                        "ConditionExpression": "attribute_not_exists(pk)",
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    }
                },
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": _task_item(record),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": _event_item(record.task_id, submitted),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ]
            with translated("DynamoDB TransactWriteItems (submit)"):
                try:
                    await self._db.transact_write_items(TransactItems=items)
                    return record, True
                except ClientError as exc:
                    if error_code(exc) != "TransactionCanceledException":
                        raise
                    codes = _cancellation_codes(exc)
                    reasons = exc.response.get("CancellationReasons") or []
            if codes and codes[0] == "ConditionalCheckFailed":
                existing_idem = reasons[0].get("Item") or await self._get_item(f"IDEM#{key}", IDEM_SK)
                if existing_idem is None:  # vanished meanwhile (cannot happen: we never delete)
                    continue
                if _get_s(existing_idem, "task_id") == record.task_id:
                    # Our own write, applied by a try whose answer was lost and then retried by botocore.
                    return record, True
                return await self._existing(key, existing_idem, fingerprint), False
            if "TransactionConflict" in codes:
                # Another transaction on the same key is in flight: let it finish, then look again.
                await asyncio.sleep(random.uniform(0.005, 0.02) * (attempt + 1))
                continue
            raise BackendUnavailable(f"DynamoDB cancelled the submit transaction: {codes}")
        raise BackendUnavailable(f"DynamoDB kept cancelling the submit of idempotency_key {key!r}")

    async def _existing(self, key: str, idem: AttributeMap, requested: Fingerprint) -> TaskRecord:
        stored = Fingerprint(
            _get_s(idem, "task_type"), _get_s(idem, "payload_sha256"), _get_n(idem, "max_attempts")
        )
        task_id = _get_s(idem, "task_id")
        differences = stored.differences(requested)
        if differences:
            raise IdempotencyConflict(key, task_id, differences)
        task = await self.get_task(task_id, with_result=False)
        if task is None:  # written in the same transaction as the key: only a damaged table lacks it
            raise BackendUnavailable(f"task {task_id} of idempotency_key {key!r} is missing")
        return task

    async def mark_dead_lettered(self, task_id: str) -> None:
        """Record that the task's message reached the dead-letter queue."""
        await self._set_flag(task_id, "dead_lettered")

    async def _set_flag(self, task_id: str, flag: str) -> None:
        with translated(f"DynamoDB UpdateItem ({flag})"):
            try:
                await self._db.update_item(
                    TableName=self.table,
                    Key={"pk": _s(task_pk(task_id)), "sk": _s(TASK_SK)},
                    UpdateExpression="SET #f = :t",
                    ConditionExpression="attribute_exists(pk)",
                    ExpressionAttributeNames={"#f": flag},
                    ExpressionAttributeValues={":t": {"BOOL": True}},
                )
            except ClientError as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise

    # --------------------------------------------------------------------- reads

    async def _get_item(self, pk: str, sk: str) -> AttributeMap | None:
        with translated("DynamoDB GetItem"):
            answer = await self._db.get_item(
                TableName=self.table, Key={"pk": _s(pk), "sk": _s(sk)}, ConsistentRead=True
            )
        item: AttributeMap | None = answer.get("Item")
        return item

    async def get_task(self, task_id: str, *, with_result: bool = True) -> TaskRecord | None:
        """The task's current state (consistent read), or None if there is no such task."""
        item = await self._get_item(task_pk(task_id), TASK_SK)
        if item is None:
            return None
        record = _record_from_item(item)
        if with_result and record.result_external:
            result_item = await self._get_item(task_pk(task_id), RESULT_SK)
            record = replace(record, result=_get_b(result_item or {}, "result"))
        return record

    async def get_states(self, task_ids: Iterable[str]) -> dict[str, TaskRecord]:
        """Current state of many tasks in few requests, without payload and result (for watchers).

        Missing tasks are absent from the answer; keys DynamoDB leaves unprocessed are asked again
        once and otherwise left for the caller's next poll.
        """
        ids = list(dict.fromkeys(task_ids))
        names = {f"#a{i}": name for i, name in enumerate(_STATE_ATTRIBUTES)}
        found: dict[str, TaskRecord] = {}
        for start in range(0, len(ids), 100):
            keys = [{"pk": _s(task_pk(i)), "sk": _s(TASK_SK)} for i in ids[start : start + 100]]
            for _ in range(2):
                request = {
                    self.table: {
                        "Keys": keys,
                        "ConsistentRead": True,
                        "ProjectionExpression": ", ".join(names),
                        "ExpressionAttributeNames": names,
                    }
                }
                with translated("DynamoDB BatchGetItem"):
                    answer = await self._db.batch_get_item(RequestItems=request)
                for item in answer.get("Responses", {}).get(self.table, []):
                    record = _record_from_item(item)
                    found[record.task_id] = record
                keys = answer.get("UnprocessedKeys", {}).get(self.table, {}).get("Keys", [])
                if not keys:
                    break
        return found

    async def list_events(self, task_id: str) -> list[EventRecord]:
        """Every event of the task in sequence order (consistent); empty if there is no such task."""
        events: list[EventRecord] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": _s(task_pk(task_id)), ":prefix": _s(EVENT_PREFIX)},
            "ConsistentRead": True,
        }
        while True:
            with translated("DynamoDB Query (events)"):
                page = await self._db.query(**kwargs)
            events.extend(_event_from_item(item) for item in page.get("Items", []))
            last = page.get("LastEvaluatedKey")
            if not last:
                return events
            kwargs["ExclusiveStartKey"] = last

    # --------------------------------------------------------------- transitions

    async def claim(self, task: TaskRecord, lease_ms: int) -> TaskRecord:
        """Start the next attempt: PENDING/RETRYING -> PROCESSING(n+1) with a lease of ``lease_ms``."""
        if task.status not in (Status.PENDING, Status.RETRYING):
            raise TransitionConflict(f"cannot start an attempt of a {task.status} task")
        attempt = task.attempts + 1
        at = max(now_us(), task.updated_at_us)
        new = replace(
            task,
            status=Status.PROCESSING,
            attempts=attempt,
            seq=task.seq + 1,
            updated_at_us=at,
            lease_until_ms=at // 1000 + lease_ms,
            not_before_ms=0,
        )
        await self._transition(task, new, [EventRecord(new.seq, EventType.PROCESSING, attempt, at, "")])
        return new

    async def extend_lease(self, task: TaskRecord, lease_ms: int) -> TaskRecord:
        """Push the running attempt's lease to now + ``lease_ms``; TransitionConflict if it was lost."""
        lease_until = now_ms() + lease_ms
        with translated("DynamoDB UpdateItem (lease)"):
            try:
                await self._db.update_item(
                    TableName=self.table,
                    Key={"pk": _s(task_pk(task.task_id)), "sk": _s(TASK_SK)},
                    UpdateExpression="SET #lease = :lease",
                    ConditionExpression="#status = :processing AND #seq = :seq",
                    ExpressionAttributeNames={"#lease": "lease_until", "#status": "status", "#seq": "seq"},
                    ExpressionAttributeValues={
                        ":lease": _n(lease_until),
                        ":processing": _s(Status.PROCESSING.value),
                        ":seq": _n(task.seq),
                    },
                )
            except ClientError as exc:
                if error_code(exc) == "ConditionalCheckFailedException":
                    raise TransitionConflict(f"task {task.task_id} is no longer in this attempt") from None
                raise
        return replace(task, lease_until_ms=lease_until)

    async def complete(self, task: TaskRecord, result: bytes) -> TaskRecord:
        """The running attempt succeeded: PROCESSING(n) -> COMPLETED(n) with ``result``."""
        self._expect(task, Status.PROCESSING)
        at = max(now_us(), task.updated_at_us)
        external = len(task.payload) + len(result) > INLINE_LIMIT_BYTES
        new = replace(
            task,
            status=Status.COMPLETED,
            seq=task.seq + 1,
            updated_at_us=at,
            result=result,
            result_external=external,
            lease_until_ms=0,
        )
        event = EventRecord(new.seq, EventType.COMPLETED, task.attempts, at, "")
        await self._transition(task, new, [event], result=result, result_external=external)
        return new

    async def fail(self, task: TaskRecord, error: str, backoff_ms: int) -> TaskRecord:
        """The running attempt failed: FAILED(n), then RETRYING (after ``backoff_ms``) or, at the
        last attempt, DEAD. Both events of a death are written in one transaction."""
        self._expect(task, Status.PROCESSING)
        detail = error[:MAX_DETAIL_CHARS] or "attempt failed"
        at = max(now_us(), task.updated_at_us)
        failed = EventRecord(task.seq + 1, EventType.FAILED, task.attempts, at, detail)
        if task.attempts >= task.max_attempts:
            dead = EventRecord(task.seq + 2, EventType.DEAD, 0, at, "")
            new = replace(
                task, status=Status.DEAD, seq=dead.seq, updated_at_us=at, last_error=detail, lease_until_ms=0
            )
            await self._transition(task, new, [failed, dead])
        else:
            new = replace(
                task,
                status=Status.RETRYING,
                seq=failed.seq,
                updated_at_us=at,
                last_error=detail,
                lease_until_ms=0,
                not_before_ms=at // 1000 + backoff_ms,
            )
            await self._transition(task, new, [failed])
        return new

    @staticmethod
    def _expect(task: TaskRecord, status: Status) -> None:
        if task.status != status:
            raise TransitionConflict(f"task {task.task_id} is {task.status}, expected {status}")

    async def _transition(
        self,
        old: TaskRecord,
        new: TaskRecord,
        events: Sequence[EventRecord],
        *,
        result: bytes | None = None,
        result_external: bool = False,
    ) -> None:
        """Write ``old`` -> ``new`` plus ``events`` atomically, if the task is still as ``old`` says."""
        names = {
            "#status": "status",
            "#attempts": "attempts",
            "#seq": "seq",
            "#updated": "updated_at",
            "#lease": "lease_until",
            "#nb": "not_before",
            "#err": "last_error",
        }
        values: dict[str, Any] = {
            ":status": _s(new.status.value),
            ":attempts": _n(new.attempts),
            ":seq": _n(new.seq),
            ":updated": _n(new.updated_at_us),
            ":lease": _n(new.lease_until_ms),
            ":nb": _n(new.not_before_ms),
            ":err": _s(new.last_error),
            ":old_status": _s(old.status.value),
            ":old_seq": _n(old.seq),
        }
        sets = [f"{n} = {n.replace('#', ':')}" for n in names if n != "#err" or new.last_error]
        items: list[dict[str, Any]] = []
        if result is not None:
            if result_external:
                names["#ext"] = "result_external"
                values[":ext"] = {"BOOL": True}
                sets.append("#ext = :ext")
                items.append(
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": {
                                "pk": _s(task_pk(old.task_id)),
                                "sk": _s(RESULT_SK),
                                "result": {"B": result},
                            },
                        }
                    }
                )
            elif result:
                names["#result"] = "result"
                values[":result"] = {"B": result}
                sets.append("#result = :result")
        if not new.last_error:
            del values[":err"]
            del names["#err"]
        update = {
            "Update": {
                "TableName": self.table,
                "Key": {"pk": _s(task_pk(old.task_id)), "sk": _s(TASK_SK)},
                "UpdateExpression": "SET " + ", ".join(sets),
                "ConditionExpression": "#status = :old_status AND #seq = :old_seq",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }
        puts = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": _event_item(old.task_id, event),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
            for event in events
        ]
        with translated("DynamoDB TransactWriteItems (transition)"):
            try:
                await self._db.transact_write_items(TransactItems=[update, *puts, *items])
            except ClientError as exc:
                if error_code(exc) != "TransactionCanceledException":
                    raise
                codes = _cancellation_codes(exc)
                if any(code in ("ConditionalCheckFailed", "TransactionConflict") for code in codes):
                    reasons = exc.response.get("CancellationReasons") or [{}]
                    found = reasons[0].get("Item") if codes[0] == "ConditionalCheckFailed" else None
                    raise TransitionConflict(
                        f"task {old.task_id} changed since it was read ({', '.join(codes)})",
                        _record_from_item(found) if found else None,
                    ) from None
                raise BackendUnavailable(
                    f"DynamoDB cancelled a transition of {old.task_id}: {codes}"
                ) from None
