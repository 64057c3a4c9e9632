"""Statuses, event types, the terminal set and the legal transitions (docs/spec.md 2.2, 2.3, 3.2, 4.2)."""

from __future__ import annotations

import enum

from taskqueue_proto import taskqueue_pb2 as pb

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "LEGAL_TRANSITIONS",
    "MAX_MAX_ATTEMPTS",
    "REACHABLE",
    "TERMINAL",
    "EventType",
    "Status",
    "effective_max_attempts",
    "event_name",
    "event_type_from_name",
    "status_from_name",
    "status_name",
]


class Status(enum.IntEnum):
    """A task's status; the values are the proto's ``TaskStatus`` numbers."""

    PENDING = pb.TASK_STATUS_PENDING
    PROCESSING = pb.TASK_STATUS_PROCESSING
    RETRYING = pb.TASK_STATUS_RETRYING
    COMPLETED = pb.TASK_STATUS_COMPLETED
    DEAD = pb.TASK_STATUS_DEAD


class EventType(enum.IntEnum):
    """A history event's type; the values are the proto's ``TaskEventType`` numbers."""

    SUBMITTED = pb.TASK_EVENT_TYPE_SUBMITTED
    PROCESSING = pb.TASK_EVENT_TYPE_PROCESSING
    COMPLETED = pb.TASK_EVENT_TYPE_COMPLETED
    FAILED = pb.TASK_EVENT_TYPE_FAILED
    DEAD = pb.TASK_EVENT_TYPE_DEAD


TERMINAL: frozenset[int] = frozenset({Status.COMPLETED, Status.DEAD})
"""The statuses no transition leaves (spec 2.3)."""

LEGAL_TRANSITIONS: frozenset[tuple[int, int]] = frozenset(
    {
        (Status.PENDING, Status.PROCESSING),
        (Status.PROCESSING, Status.COMPLETED),
        (Status.PROCESSING, Status.RETRYING),
        (Status.PROCESSING, Status.DEAD),
        (Status.RETRYING, Status.PROCESSING),
        (Status.PROCESSING, Status.PROCESSING),
    }
)
"""The table of spec 2.2 (a new task starts PENDING)."""

DEFAULT_MAX_ATTEMPTS = 5
"""The effective max_attempts of a submit that says 0 (spec 3.2)."""

MAX_MAX_ATTEMPTS = 100
"""The largest max_attempts a submit may ask for (spec 3.2, 9)."""


def _reachable() -> dict[int, frozenset[int]]:
    closure: dict[int, set[int]] = {status: {status} for status in Status}
    changed = True
    while changed:
        changed = False
        for origin, targets in closure.items():
            grown = targets | {after for before, after in LEGAL_TRANSITIONS if before in targets}
            if grown != targets:
                closure[origin] = grown
                changed = True
    return {status: frozenset(targets) for status, targets in closure.items()}


REACHABLE: dict[int, frozenset[int]] = _reachable()
"""For each status, every status a chain of legal transitions leads to (itself included).

Observers may see changes coalesced (spec 8.2), so two successive snapshots need only be linked by
such a chain.
"""


def effective_max_attempts(requested: int) -> int:
    """The max_attempts a submit asking for ``requested`` gets: the default for 0 (spec 3.2)."""
    return requested or DEFAULT_MAX_ATTEMPTS


def status_name(status: int) -> str:
    """``COMPLETED`` for TASK_STATUS_COMPLETED; ``<status N>`` for values the contract does not define."""
    try:
        return Status(status).name
    except ValueError:
        return f"<status {status}>"


def event_name(event_type: int) -> str:
    """``FAILED`` for TASK_EVENT_TYPE_FAILED; ``<event N>`` for values the contract does not define."""
    try:
        return EventType(event_type).name
    except ValueError:
        return f"<event {event_type}>"


def status_from_name(name: str) -> int:
    """``"COMPLETED"`` -> Status.COMPLETED; a name the contract does not define -> 0 (unspecified)."""
    member = Status.__members__.get(name)
    return int(member) if member is not None else pb.TASK_STATUS_UNSPECIFIED


def event_type_from_name(name: str) -> int:
    """``"FAILED"`` -> EventType.FAILED; a name the contract does not define -> 0 (unspecified)."""
    member = EventType.__members__.get(name)
    return int(member) if member is not None else pb.TASK_EVENT_TYPE_UNSPECIFIED
