"""Tasks, their event histories and the idempotency index, kept in this process's memory.

One asyncio event loop owns the store, so every synchronous method is atomic: that is what makes
the conforming submit race-free without a lock. Watchers wait on a per-task ``asyncio.Event``
that is replaced on every change.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field

from google.protobuf.timestamp_pb2 import Timestamp

from taskqueue_proto import taskqueue_pb2 as pb

TERMINAL: frozenset[int] = frozenset({pb.TASK_STATUS_COMPLETED, pb.TASK_STATUS_DEAD})

Fingerprint = tuple[str, bytes, int]
"""What makes two submits "the same request": task_type, payload, max_attempts (spec 3.3)."""


@dataclass
class TaskRecord:
    """One task: its current snapshot, its events and a change signal for WatchTask."""

    task: pb.Task
    fingerprint: Fingerprint
    events: list[pb.TaskEvent] = field(default_factory=list)
    version: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    before: pb.Task | None = None
    """The task as it was before its last change (for the ``stale_reads`` break)."""
    shown: pb.Task | None = None
    """The task as of its last change."""

    @property
    def terminal(self) -> bool:
        return self.task.status in TERMINAL

    def snapshot(self, breaks: frozenset[str] = frozenset()) -> pb.Task:
        """A copy of the task, safe to send while the record keeps changing."""
        copy = pb.Task()
        copy.CopyFrom(self.task)
        if "attempts_zero_until_terminal" in breaks and not self.terminal:
            copy.attempts = 0
        return copy


@dataclass(frozen=True)
class NewEvent:
    """An event to append: its type, attempt number and detail."""

    type: pb.TaskEventType.ValueType
    attempt: int = 0
    detail: str = ""


class Store:
    """Tasks by id and by idempotency key."""

    def __init__(self, breaks: frozenset[str] = frozenset()) -> None:
        self._breaks = breaks
        self._by_id: dict[str, TaskRecord] = {}
        self._by_key: dict[str, TaskRecord] = {}
        self._ids = itertools.count(1)
        self._last_ns = 0

    def now(self) -> Timestamp:
        """Wall-clock time that never goes backwards, so event times are non-decreasing (spec 4.1)."""
        self._last_ns = max(time.time_ns(), self._last_ns)
        stamp = Timestamp()
        stamp.FromNanoseconds(self._last_ns)
        return stamp

    def by_key(self, key: str) -> TaskRecord | None:
        return self._by_key.get(key)

    def get(self, task_id: str) -> TaskRecord | None:
        return self._by_id.get(task_id)

    def insert(
        self, request: pb.SubmitTaskRequest, fingerprint: Fingerprint, max_attempts: int
    ) -> TaskRecord:
        """Create a PENDING task with its SUBMITTED event and index it under its key."""
        stamp = self.now()
        task = pb.Task(
            task_id=f"mem-{next(self._ids):06d}",
            idempotency_key=request.idempotency_key,
            task_type=request.task_type,
            payload=request.payload,
            status=pb.TASK_STATUS_PENDING,
            attempts=0,
            max_attempts=max_attempts,
            created_at=stamp,
            updated_at=stamp,
        )
        if "updated_before_created" in self._breaks:
            task.created_at.FromNanoseconds(stamp.ToNanoseconds() + 1_000_000_000)
        record = TaskRecord(task=task, fingerprint=fingerprint)
        self._by_id[task.task_id] = record
        self._by_key[request.idempotency_key] = record
        first = 1 if "submitted_attempt_1" in self._breaks else 0
        self.record(record, [NewEvent(pb.TASK_EVENT_TYPE_SUBMITTED, first)])
        return record

    def record(self, record: TaskRecord, events: list[NewEvent]) -> None:
        """Append events (in order, with fresh sequences), bump updated_at and wake the watchers.

        The caller sets the task's fields before calling, so one call is one atomic change.
        """
        stamp = self.now()
        for new in events:
            sequence = record.events[-1].sequence + 1 if record.events else 1
            event = pb.TaskEvent(sequence=sequence, type=new.type, attempt=new.attempt, detail=new.detail)
            if "no_event_time" not in self._breaks:
                event.at.CopyFrom(stamp)
            record.events.append(event)
        record.task.updated_at.CopyFrom(stamp)
        record.before, record.shown = record.shown, record.snapshot()
        record.version += 1
        signal, record.changed = record.changed, asyncio.Event()
        signal.set()
