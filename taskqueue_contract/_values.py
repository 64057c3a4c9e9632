"""Plain values the rules judge: an ``Event``, a ``Task`` snapshot and a ``Violation``.

The rules take these, or the proto messages themselves (``as_event``/``as_task`` convert), so the
scenarios (proto messages) and the chaos checker (recorded JSON) feed them the same facts.
"""

from __future__ import annotations

from dataclasses import dataclass

from taskqueue_contract._names import event_name, status_name
from taskqueue_proto import taskqueue_pb2 as pb

__all__ = ["Event", "EventLike", "Task", "TaskLike", "Violation", "as_event", "as_task"]


@dataclass(frozen=True)
class Violation:
    """One broken rule: the spec section, what was wrong, and a short rule id (see ``RULES``)."""

    section: str
    message: str
    rule: str

    def __str__(self) -> str:
        return f"spec {self.section}: {self.message}"


@dataclass(frozen=True)
class Event:
    """One TaskEvent; ``at_ns`` is None when the event carries no time."""

    sequence: int
    type: int
    attempt: int
    at_ns: int | None
    detail: str = ""

    def label(self) -> str:
        """``FAILED(2)#5``: type, attempt where it matters, sequence."""
        shown = self.attempt or self.type in (2, 3, 4)  # PROCESSING, COMPLETED, FAILED
        return f"{event_name(self.type)}{f'({self.attempt})' if shown else ''}#{self.sequence}"


@dataclass(frozen=True)
class Task:
    """One snapshot of a task (GetTask, a WatchTask message); timestamps None when not set."""

    task_id: str
    status: int
    attempts: int
    max_attempts: int
    idempotency_key: str = ""
    task_type: str = ""
    payload: bytes = b""
    result: bytes = b""
    last_error: str = ""
    created_at_ns: int | None = None
    updated_at_ns: int | None = None

    def label(self) -> str:
        """``COMPLETED attempts=2``."""
        return f"{status_name(self.status)} attempts={self.attempts}"


EventLike = Event | pb.TaskEvent
TaskLike = Task | pb.Task


def as_event(event: EventLike) -> Event:
    """An ``Event`` from a proto ``TaskEvent`` (or the ``Event`` itself)."""
    if isinstance(event, Event):
        return event
    at_ns = event.at.ToNanoseconds() if event.HasField("at") else None
    return Event(event.sequence, int(event.type), event.attempt, at_ns or None, event.detail)


def as_task(task: TaskLike) -> Task:
    """A ``Task`` from a proto ``Task`` (or the ``Task`` itself)."""
    if isinstance(task, Task):
        return task
    return Task(
        task_id=task.task_id,
        status=int(task.status),
        attempts=task.attempts,
        max_attempts=task.max_attempts,
        idempotency_key=task.idempotency_key,
        task_type=task.task_type,
        payload=bytes(task.payload),
        result=bytes(task.result),
        last_error=task.last_error,
        created_at_ns=task.created_at.ToNanoseconds() if task.HasField("created_at") else None,
        updated_at_ns=task.updated_at.ToNanoseconds() if task.HasField("updated_at") else None,
    )
