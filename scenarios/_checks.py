"""Shared checks of docs/spec.md: the history grammar (4.3), legal transitions (2.2), task consistency.

The ``*_violations`` functions return human-readable problems (empty when the rule holds), each
naming the spec section, so that a scenario can fail with every problem at once. ``describe``
renders what was seen for failure messages; ``require`` fails the scenario with both.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import NoReturn

import pytest

from taskqueue_proto import taskqueue_pb2 as pb

TERMINAL: frozenset[int] = frozenset({pb.TASK_STATUS_COMPLETED, pb.TASK_STATUS_DEAD})

LEGAL_TRANSITIONS: frozenset[tuple[int, int]] = frozenset(
    {
        (pb.TASK_STATUS_PENDING, pb.TASK_STATUS_PROCESSING),
        (pb.TASK_STATUS_PROCESSING, pb.TASK_STATUS_COMPLETED),
        (pb.TASK_STATUS_PROCESSING, pb.TASK_STATUS_RETRYING),
        (pb.TASK_STATUS_PROCESSING, pb.TASK_STATUS_DEAD),
        (pb.TASK_STATUS_RETRYING, pb.TASK_STATUS_PROCESSING),
        (pb.TASK_STATUS_PROCESSING, pb.TASK_STATUS_PROCESSING),
    }
)
"""The table of spec 2.2 (a new task starts PENDING)."""

_SUBMITTED = pb.TASK_EVENT_TYPE_SUBMITTED
_PROCESSING = pb.TASK_EVENT_TYPE_PROCESSING
_COMPLETED = pb.TASK_EVENT_TYPE_COMPLETED
_FAILED = pb.TASK_EVENT_TYPE_FAILED
_DEAD = pb.TASK_EVENT_TYPE_DEAD


def _reachable() -> dict[int, frozenset[int]]:
    """For each status, every status a chain of legal transitions can lead to (itself included)."""
    statuses = {status for pair in LEGAL_TRANSITIONS for status in pair}
    closure = {status: {status} for status in statuses}
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
"""Statuses reachable through legal transitions; watchers may see coalesced changes (spec 8.2)."""


def status_name(status: int) -> str:
    """``COMPLETED`` for TASK_STATUS_COMPLETED; the raw number for values the proto does not define."""
    try:
        return pb.TaskStatus.Name(status).removeprefix("TASK_STATUS_")  # type: ignore[arg-type]
    except ValueError:
        return f"<status {status}>"


def event_name(event_type: int) -> str:
    """``FAILED`` for TASK_EVENT_TYPE_FAILED; the raw number for undefined values."""
    try:
        return pb.TaskEventType.Name(event_type).removeprefix("TASK_EVENT_TYPE_")  # type: ignore[arg-type]
    except ValueError:
        return f"<event {event_type}>"


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


def _order_violations(events: Sequence[pb.TaskEvent]) -> list[str]:
    """spec 4.1: sequence strictly increasing, ``at`` never earlier than the previous event's."""
    problems = []
    for before, after in itertools.pairwise(events):
        if after.sequence <= before.sequence:
            problems.append(f"spec 4.1: sequence {after.sequence} follows {before.sequence} (must increase)")
        if after.at.ToNanoseconds() < before.at.ToNanoseconds():
            problems.append(
                f"spec 4.1: event #{after.sequence} has `at` earlier than event #{before.sequence}"
            )
    return problems


def _event_field_violations(event: pb.TaskEvent) -> list[str]:
    """spec 4.2: PROCESSING and FAILED carry an attempt from 1, COMPLETED its attempt or 0, FAILED a detail.

    SUBMITTED's and DEAD's attempt fields SHOULD be 0 and are not checked.
    """
    name = f"{event_name(event.type)} (#{event.sequence})"
    if not event.HasField("at") or event.at.ToNanoseconds() == 0:
        return [f"spec 4.1: {name} has no `at` time"]
    if event.type in (_PROCESSING, _FAILED) and event.attempt < 1:
        return [f"spec 4.2: {name} has attempt {event.attempt}, must be the attempt number from 1"]
    if event.type == _COMPLETED and event.attempt < 0:
        return [f"spec 4.2: {name} has attempt {event.attempt}, must be its attempt number (or 0)"]
    if event.type == _FAILED and not event.detail:
        return [f"spec 4.2: {name} has an empty detail, must carry the attempt's error"]
    if event.type not in (_SUBMITTED, _PROCESSING, _COMPLETED, _FAILED, _DEAD):
        return [f"spec 4.2: {name} is not an event type of the contract"]
    return []


def _grammar_violations(events: Sequence[pb.TaskEvent], max_attempts: int | None) -> list[str]:
    """spec 4.3: SUBMITTED (PROCESSING(n) [FAILED(n) | COMPLETED(n)])* [DEAD], attempts 1, 2, 3, ..."""
    problems: list[str] = []
    previous: pb.TaskEvent | None = None
    attempt = 0
    for event in events:
        where = f"{event_name(event.type)} (#{event.sequence})"
        if previous is None:
            if event.type != _SUBMITTED:
                problems.append(f"spec 4.3: the history starts with {where}, must start with SUBMITTED")
        elif previous.type in (_COMPLETED, _DEAD):
            problems.append(
                f"spec 2.3/7.1: {where} follows the terminal "
                f"{event_name(previous.type)} (#{previous.sequence})"
            )
            break
        elif event.type == _SUBMITTED:
            problems.append(f"spec 4.3: a second SUBMITTED {where}")
        elif event.type == _PROCESSING:
            if event.attempt != attempt + 1:
                problems.append(
                    f"spec 4.3: {where} is attempt {event.attempt}, expected {attempt + 1} (rising by one)"
                )
            if max_attempts is not None and event.attempt > max_attempts:
                problems.append(
                    f"spec 5.4: {where} starts attempt {event.attempt} beyond max_attempts {max_attempts}"
                )
            attempt = event.attempt
        elif event.type in (_COMPLETED, _FAILED):
            if previous.type != _PROCESSING:
                problems.append(
                    f"spec 4.3: {where} follows {event_name(previous.type)} (#{previous.sequence}), "
                    "must follow the PROCESSING of its attempt"
                )
            elif event.attempt != previous.attempt and not (event.type == _COMPLETED and event.attempt == 0):
                problems.append(
                    f"spec 4.2: {where} carries attempt {event.attempt}, "
                    f"its PROCESSING was attempt {previous.attempt}"
                )
        elif event.type == _DEAD:
            if previous.type != _FAILED:
                problems.append(
                    f"spec 5.3: DEAD (#{event.sequence}) follows {event_name(previous.type)}, "
                    "must follow the last FAILED"
                )
            elif max_attempts is not None and previous.attempt != max_attempts:
                problems.append(
                    f"spec 4.3/5.4: DEAD (#{event.sequence}) follows FAILED({previous.attempt}), "
                    f"must follow FAILED(max_attempts={max_attempts})"
                )
        previous = event
    return problems


def history_violations(events: Sequence[pb.TaskEvent], *, max_attempts: int | None = None) -> list[str]:
    """Every way ``events`` breaks spec 4.1-4.3 (and 5.4 when ``max_attempts`` is given).

    Accepts an unfinished history (a task still running) and abandoned attempts (PROCESSING(n)
    directly followed by PROCESSING(n+1), spec 7.2): whether an attempt was really abandoned is
    not visible from outside, so exact shapes are for the scenarios to require.
    """
    if not events:
        return ["spec 3.1/4.3: the history is empty, it must start with SUBMITTED"]
    problems = _order_violations(events)
    for event in events:
        problems.extend(_event_field_violations(event))
    problems.extend(_grammar_violations(events, max_attempts))
    return problems


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
    processing = count(events, _PROCESSING)
    if task.attempts != processing:
        problems.append(
            f"spec 4.5: attempts={task.attempts} but the history has {processing} PROCESSING events"
        )
    last = events[-1].type if events else None
    if task.status == pb.TASK_STATUS_COMPLETED and last != _COMPLETED:
        problems.append("spec 4.3: the task is COMPLETED but its last event is not COMPLETED")
    if task.status == pb.TASK_STATUS_DEAD and last != _DEAD:
        problems.append("spec 5.3: the task is DEAD but its last event is not DEAD")
    if count(events, _FAILED) and not task.last_error:
        problems.append("spec 2.4: last_error is empty although an attempt failed")
    problems.extend(timestamp_violations(task))
    return problems


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


def timestamp_violations(task: pb.Task) -> list[str]:
    """spec 2.4: ``updated_at`` not earlier than ``created_at``; both set."""
    problems = []
    if not task.HasField("created_at") or not task.HasField("updated_at"):
        problems.append("spec 2.1: created_at and updated_at must be set")
    elif task.updated_at.ToNanoseconds() < task.created_at.ToNanoseconds():
        problems.append(
            f"spec 2.4: updated_at {task.updated_at.ToJsonString()} is earlier than "
            f"created_at {task.created_at.ToJsonString()}"
        )
    return problems


def snapshot_violations(snapshots: Sequence[pb.Task]) -> list[str]:
    """Successive snapshots of one task move only along spec 2.2 (changes may be coalesced, 8.2).

    Also: created_at never changes, updated_at and attempts never go backwards (spec 2.4, 2.1).
    """
    problems = []
    for index, snapshot in enumerate(snapshots):
        if snapshot.status not in REACHABLE:
            problems.append(
                f"snapshot {index + 1}: status {status_name(snapshot.status)} is not a task status"
            )
        problems.extend(f"snapshot {index + 1}: {problem}" for problem in timestamp_violations(snapshot))
    for index, (before, after) in enumerate(itertools.pairwise(snapshots), start=2):
        if before.status in REACHABLE and after.status not in REACHABLE[before.status]:
            problems.append(
                f"spec 2.2: snapshot {index} moves {status_name(before.status)} -> "
                f"{status_name(after.status)}, which no chain of legal transitions allows"
            )
        if before.status in TERMINAL:
            problems.append(f"spec 2.3/8.2: snapshot {index} follows the terminal snapshot {index - 1}")
        if after.created_at != before.created_at:
            problems.append(f"spec 2.4: created_at changed between snapshots {index - 1} and {index}")
        if after.updated_at.ToNanoseconds() < before.updated_at.ToNanoseconds():
            problems.append(f"spec 2.4: updated_at went backwards at snapshot {index}")
        if after.attempts < before.attempts:
            problems.append(
                f"spec 2.1: attempts went from {before.attempts} to {after.attempts} at snapshot {index}"
            )
    return problems


def format_statuses(snapshots: Sequence[pb.Task]) -> str:
    """``PENDING -> PROCESSING -> COMPLETED``: the statuses a watcher saw."""
    return " -> ".join(status_name(snapshot.status) for snapshot in snapshots) or "(no snapshots)"
