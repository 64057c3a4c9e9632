"""Scenario-facing checks of docs/spec.md, built on the contract's rules (``taskqueue_contract``).

The rules themselves live once, in ``taskqueue_contract``; this module renders them for
scenarios. The ``*_violations`` functions return human-readable problems (empty when the rule
holds), each starting with its spec section, so that a scenario can fail with every problem at
once. ``describe`` renders what was seen for failure messages; ``require`` fails the scenario with both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

import pytest

import taskqueue_contract as contract
from taskqueue_contract import LEGAL_TRANSITIONS, REACHABLE, TERMINAL, event_name, status_name
from taskqueue_proto import taskqueue_pb2 as pb

__all__ = [
    "LEGAL_TRANSITIONS",
    "REACHABLE",
    "TERMINAL",
    "attempts_of",
    "changed_fields",
    "count",
    "describe",
    "event_name",
    "finished_task_violations",
    "format_events",
    "format_statuses",
    "format_task",
    "history_violations",
    "require",
    "require_none",
    "snapshot_violations",
    "status_name",
    "terminal_task_violations",
    "violated",
]

_PROCESSING = pb.TASK_EVENT_TYPE_PROCESSING
_COMPLETED = pb.TASK_EVENT_TYPE_COMPLETED
_FAILED = pb.TASK_EVENT_TYPE_FAILED


def format_events(events: Sequence[pb.TaskEvent]) -> str:
    """One line per history: ``#1 SUBMITTED, #2 PROCESSING(1), #3 FAILED(1) "boom", ...``."""
    if not events:
        return "(no events)"
    parts = []
    for event in events:
        text = f"#{event.sequence} {event_name(event.type)}"
        if event.attempt or event.type in (_PROCESSING, _COMPLETED, _FAILED):
            text += f"({event.attempt})"
        if event.type == _FAILED:
            text += f" {event.detail[:60]!r}"
        parts.append(text)
    return ", ".join(parts)


def format_task(task: pb.Task) -> str:
    """The fields a conformance failure usually needs."""
    return (
        f"task_id={task.task_id!r} type={task.task_type!r} status={status_name(task.status)} "
        f"attempts={task.attempts} max_attempts={task.max_attempts} last_error={task.last_error[:60]!r}"
    )


def describe(task: pb.Task | None = None, events: Sequence[pb.TaskEvent] | None = None) -> str:
    """What was seen: the task's fields and its whole event history, for failure messages."""
    lines = []
    if task is not None:
        lines.append(f"task: {format_task(task)}")
    if events is not None:
        lines.append(f"events: {format_events(events)}")
    return "\n".join(lines)


def violated(
    rule: str,
    *,
    seen: str = "",
    task: pb.Task | None = None,
    events: Sequence[pb.TaskEvent] | None = None,
) -> NoReturn:
    """Fail the scenario: the broken rule first, then what was seen (and the task, its history)."""
    details = "\n".join(part for part in (f"seen: {seen}" if seen else "", describe(task, events)) if part)
    pytest.fail(f"{rule}\n{details}" if details else rule, pytrace=False)


def require(
    condition: object,
    rule: str,
    *,
    seen: str = "",
    task: pb.Task | None = None,
    events: Sequence[pb.TaskEvent] | None = None,
) -> None:
    """Fail the scenario with the broken rule and what was seen unless ``condition`` holds."""
    if not condition:
        violated(rule, seen=seen, task=task, events=events)


def require_none(
    problems: Sequence[str],
    rule: str,
    *,
    task: pb.Task | None = None,
    events: Sequence[pb.TaskEvent] | None = None,
) -> None:
    """Fail with the rule and every problem listed when ``problems`` is not empty."""
    require(
        not problems, rule + "".join(f"\n  - {problem}" for problem in problems), task=task, events=events
    )


def history_violations(events: Sequence[pb.TaskEvent], *, max_attempts: int | None = None) -> list[str]:
    """Every way ``events`` breaks spec 4.1-4.3 (and 5.4 when ``max_attempts`` is given).

    Accepts an unfinished history (a task still running) and abandoned attempts (PROCESSING(n)
    directly followed by PROCESSING(n+1), spec 7.2): whether an attempt was really abandoned is
    not visible from outside, so exact shapes are for the scenarios to require.
    """
    return [str(violation) for violation in contract.history_violations(events, max_attempts=max_attempts)]


def count(events: Sequence[pb.TaskEvent], event_type: int) -> int:
    """How many events of this type the history has."""
    return sum(1 for event in events if event.type == event_type)


def attempts_of(events: Sequence[pb.TaskEvent], event_type: int) -> list[int]:
    """The attempt numbers of the events of this type, in history order."""
    return [event.attempt for event in events if event.type == event_type]


def terminal_task_violations(task: pb.Task, events: Sequence[pb.TaskEvent]) -> list[str]:
    """A terminal task agrees with its history (spec 2.4, 4.3, 4.5); both read after it ended."""
    problems = []
    if task.status not in TERMINAL:
        problems.append(f"expected a terminal task, status is {status_name(task.status)}")
    found = contract.task_field_violations(task) + contract.task_history_violations(task, events)
    return problems + [str(violation) for violation in found]


def finished_task_violations(task: pb.Task, events: Sequence[pb.TaskEvent]) -> list[str]:
    """A terminal task and its history break none of spec 4.1-4.3, 5.4, 2.4 and 4.5."""
    return history_violations(events, max_attempts=task.max_attempts) + terminal_task_violations(task, events)


def changed_fields(before: pb.Task, after: pb.Task, *, ignore: Sequence[str] = ()) -> list[str]:
    """Names of the Task fields whose values differ (``ignore``: names not compared)."""
    return [
        field.name
        for field in pb.Task.DESCRIPTOR.fields
        if field.name not in ignore and getattr(before, field.name) != getattr(after, field.name)
    ]


def snapshot_violations(snapshots: Sequence[pb.Task], *, stream: bool = True) -> list[str]:
    """Successive snapshots of one task move only along spec 2.2 (changes may be coalesced, 8.2).

    Also: created_at never changes, updated_at and attempts never go backwards (spec 2.4, 8.4).
    ``stream`` (the default): one WatchTask stream, so nothing may follow a terminal snapshot;
    otherwise (separate reads) a terminal task may be read again but never changes.
    """
    return [str(violation) for violation in contract.snapshot_violations(snapshots, stream=stream)]


def format_statuses(snapshots: Sequence[pb.Task]) -> str:
    """``PENDING -> PROCESSING -> COMPLETED``: the statuses a watcher saw."""
    return " -> ".join(status_name(snapshot.status) for snapshot in snapshots) or "(no snapshots)"
