"""The rules of docs/spec.md over histories, task snapshots and successive reads.

Each function returns the ``Violation`` list of what it judges (empty when every rule holds).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from taskqueue_contract._names import (
    MAX_MAX_ATTEMPTS,
    REACHABLE,
    TERMINAL,
    EventType,
    Status,
    status_name,
)
from taskqueue_contract._values import Event, EventLike, Task, TaskLike, Violation, as_event, as_task
from taskqueue_proto import taskqueue_pb2 as pb

__all__ = [
    "RULES",
    "HistoryWalk",
    "State",
    "history_violations",
    "observed_violations",
    "prefix_violations",
    "snapshot_violations",
    "state_index",
    "task_field_violations",
    "task_history_violations",
    "walk_history",
]

RULES: dict[str, str] = {
    "bad_history_shape": "empty, not starting with SUBMITTED, sequence not rising, `at` going back (4.1/4.3)",
    "bad_event_field": "an event without `at`, a FAILED without detail, a negative attempt (4.1, 4.2)",
    "illegal_transition": "an event that cannot follow the previous one (2.2, 4.3)",
    "attempt_numbering": "attempts not 1, 2, 3, ..., an outcome of another attempt, beyond max (4.3, 5.4)",
    "dead_without_max_failures": "DEAD not right after FAILED(max_attempts), or all failed and no DEAD (5.3)",
    "double_completed": "two COMPLETED events (7.1)",
    "event_after_terminal": "an event after COMPLETED or DEAD (2.3)",
    "status_mismatch": "status or attempts disagree with the history (2.2, 4.5)",
    "bad_task_field": "task_id empty, timestamps unset or out of order, last_error empty after a failure, "
    "max_attempts not the effective value (2.1, 2.4, 3.2)",
    "read_went_back": "a later read shows an earlier state than one already seen (8.4)",
}
"""Every rule id a ``Violation`` carries, with what it means."""

_S, _P, _C, _F, _D = (
    EventType.SUBMITTED,
    EventType.PROCESSING,
    EventType.COMPLETED,
    EventType.FAILED,
    EventType.DEAD,
)


@dataclass(frozen=True)
class State:
    """A point of a history a reader may observe: status and attempts after its first ``events`` events.

    ``failed`` counts the FAILED events up to that point (``last_error`` must then be set, 2.4).
    """

    status: int
    attempts: int
    events: int
    failed: int


@dataclass
class HistoryWalk:
    """What walking one history learned: its violations and the facts other rules need."""

    violations: list[Violation] = field(default_factory=list)
    processing: int = 0
    """Every PROCESSING event, also after a terminal one (spec 4.5 counts them all)."""
    failed: list[Event] = field(default_factory=list)
    """The FAILED events before the terminal one."""
    unrecorded_abandoned: list[int] = field(default_factory=list)
    """Attempts whose PROCESSING was directly followed by the next PROCESSING (spec 7.2)."""
    completed_attempts: list[int] = field(default_factory=list)
    """Attempt of each COMPLETED (a COMPLETED carrying 0 counts as its PROCESSING's attempt)."""
    terminal: Event | None = None
    last: Event | None = None
    states: list[State] = field(default_factory=list)
    """Every observable state, in order (spec 2.2)."""


def _v(section: str, rule: str, message: str) -> Violation:
    return Violation(section, message, rule)


def _event_field_violations(event: Event) -> list[Violation]:
    """spec 4.1/4.2: `at` set, FAILED's detail non-empty, COMPLETED's attempt its own or 0."""
    where = event.label()
    problems = []
    if event.at_ns is None:
        problems.append(_v("4.1", "bad_event_field", f"{where} has no `at` time"))
    if event.type == _F and not event.detail:
        problems.append(_v("4.2", "bad_event_field", f"{where} has an empty detail, must carry the error"))
    if event.type == _C and event.attempt < 0:
        problems.append(_v("4.2", "bad_event_field", f"{where} has attempt {event.attempt}"))
    return problems


def walk_history(
    events: Sequence[EventLike], max_attempts: int | None = None, *, final: bool = False
) -> HistoryWalk:
    """Walk a history once: spec 4.1-4.3, 2.3, 5.3, 5.4, 7.1 (``max_attempts`` None: 5.4 unchecked).

    Accepts an unfinished history and abandoned attempts (PROCESSING(n) directly followed by
    PROCESSING(n+1), 7.2). ``final``: the history is the task's last (the task should be over),
    so every attempt failed without DEAD is a violation too.
    """
    walk = HistoryWalk()
    found = walk.violations
    history = [as_event(event) for event in events]
    if not history:
        found.append(_v("3.1/4.3", "bad_history_shape", "the history is empty, it must start with SUBMITTED"))
        return walk
    open_attempt: int | None = None
    highest = 0
    after_terminal_reported = False
    for index, event in enumerate(history):
        previous = history[index - 1] if index else None
        where = event.label()
        found.extend(_event_field_violations(event))
        if previous is not None and event.sequence <= previous.sequence:
            found.append(
                _v(
                    "4.1",
                    "bad_history_shape",
                    f"sequence {event.sequence} follows {previous.sequence} (must increase)",
                )
            )
        if previous is not None and event.at_ns is not None and previous.at_ns is not None:
            if event.at_ns < previous.at_ns:
                found.append(
                    _v(
                        "4.1",
                        "bad_history_shape",
                        f"event #{event.sequence} has `at` earlier than event #{previous.sequence} "
                        f"(by {previous.at_ns - event.at_ns} ns)",
                    )
                )
        walk.last = event
        if walk.terminal is not None:
            walk.processing += event.type == _P
            if event.type == _C and walk.terminal.type == _C:
                found.append(
                    _v(
                        "7.1",
                        "double_completed",
                        f"a second COMPLETED {where} follows the terminal COMPLETED",
                    )
                )
            elif not after_terminal_reported:
                after_terminal_reported = True
                found.append(
                    _v("2.3", "event_after_terminal", f"{where} follows the terminal {walk.terminal.label()}")
                )
            continue
        if index == 0 and event.type != _S:
            found.append(
                _v("4.3", "bad_history_shape", f"the history starts with {where}, must start with SUBMITTED")
            )
        if event.type == _S:
            if index:
                found.append(_v("4.3", "illegal_transition", f"a second SUBMITTED {where}"))
            else:
                walk.states.append(State(Status.PENDING, 0, 1, 0))
        elif event.type == _P:
            if event.attempt != highest + 1:
                found.append(
                    _v(
                        "4.3",
                        "attempt_numbering",
                        f"{where} is attempt {event.attempt}, expected {highest + 1} "
                        "(attempt numbers run from 1, rising by one)",
                    )
                )
            if max_attempts is not None and event.attempt > max_attempts:
                found.append(
                    _v(
                        "5.4",
                        "attempt_numbering",
                        f"{where} starts attempt {event.attempt} beyond max_attempts {max_attempts}",
                    )
                )
            if open_attempt is not None:
                walk.unrecorded_abandoned.append(open_attempt)
            open_attempt = event.attempt
            highest = max(highest, event.attempt)
            walk.processing += 1
            walk.states.append(State(Status.PROCESSING, walk.processing, index + 1, len(walk.failed)))
        elif event.type in (_C, _F):
            attempt = event.attempt
            if open_attempt is None:
                after = previous.label() if previous is not None else "nothing"
                found.append(
                    _v(
                        "4.3",
                        "illegal_transition",
                        f"{where} follows {after}, must follow the PROCESSING of its attempt",
                    )
                )
            elif event.attempt != open_attempt and not (event.type == _C and event.attempt == 0):
                found.append(
                    _v(
                        "4.2",
                        "attempt_numbering",
                        f"{where} carries attempt {event.attempt}, its PROCESSING was attempt {open_attempt}",
                    )
                )
            elif event.type == _C:
                attempt = open_attempt
            open_attempt = None
            if event.type == _F:
                walk.failed.append(event)
                if max_attempts is None or attempt < max_attempts:
                    walk.states.append(State(Status.RETRYING, walk.processing, index + 1, len(walk.failed)))
            else:
                walk.completed_attempts.append(attempt)
                walk.terminal = event
                walk.states.append(State(Status.COMPLETED, walk.processing, index + 1, len(walk.failed)))
        elif event.type == _D:
            if previous is None or previous.type != _F:
                after = previous.label() if previous is not None else "nothing"
                found.append(
                    _v(
                        "5.3",
                        "dead_without_max_failures",
                        f"{where} follows {after}, must follow the last FAILED",
                    )
                )
            elif max_attempts is not None and previous.attempt != max_attempts:
                found.append(
                    _v(
                        "4.3/5.4",
                        "dead_without_max_failures",
                        f"{where} follows {previous.label()}, "
                        f"must follow FAILED(max_attempts={max_attempts})",
                    )
                )
            walk.terminal = event
            walk.states.append(State(Status.DEAD, walk.processing, index + 1, len(walk.failed)))
        else:
            found.append(_v("4.2", "bad_history_shape", f"{where} is not an event type of the contract"))
    last = walk.last
    if (
        final
        and walk.terminal is None
        and last is not None
        and last.type == _F
        and max_attempts is not None
        and last.attempt >= max_attempts
    ):
        found.append(
            _v(
                "5.3",
                "dead_without_max_failures",
                f"all {max_attempts} attempts failed ({last.label()}) but no DEAD follows",
            )
        )
    return walk


def history_violations(
    events: Sequence[EventLike], *, max_attempts: int | None = None, final: bool = False
) -> list[Violation]:
    """Every way ``events`` breaks spec 4.1-4.3, 2.3, 5.3, 7.1 (and 5.4 when ``max_attempts`` is given)."""
    return walk_history(events, max_attempts, final=final).violations


def task_field_violations(task: TaskLike) -> list[Violation]:
    """The rules one snapshot must keep on its own (spec 2.1, 2.2, 2.4, 3.2, 4.5)."""
    snap = as_task(task)
    problems = []
    if not snap.task_id:
        problems.append(_v("2.1", "bad_task_field", "task_id is empty"))
    if snap.status not in REACHABLE:
        problems.append(
            _v("2.2", "bad_task_field", f"status {status_name(snap.status)} is not a task status")
        )
    if snap.created_at_ns is None or snap.updated_at_ns is None:
        problems.append(_v("2.1", "bad_task_field", "created_at and updated_at must be set"))
    elif snap.updated_at_ns < snap.created_at_ns:
        problems.append(
            _v(
                "2.4",
                "bad_task_field",
                f"updated_at is {snap.created_at_ns - snap.updated_at_ns} ns earlier than created_at",
            )
        )
    if not 1 <= snap.max_attempts <= MAX_MAX_ATTEMPTS:
        problems.append(
            _v(
                "3.2",
                "bad_task_field",
                f"max_attempts {snap.max_attempts} is not an effective value (1..100)",
            )
        )
    if snap.attempts < 0:
        problems.append(_v("4.5", "status_mismatch", f"attempts={snap.attempts} is negative"))
    elif (snap.status == Status.PENDING) != (snap.attempts == 0) and snap.status in REACHABLE:
        problems.append(
            _v(
                "4.5",
                "status_mismatch",
                f"{snap.label()}: a task is PENDING exactly while no attempt has started",
            )
        )
    return problems


def task_history_violations(
    task: TaskLike, events: Sequence[EventLike], *, walk: HistoryWalk | None = None
) -> list[Violation]:
    """A snapshot agrees with a history of the task read at the same time or later (2.2, 2.4, 4.5).

    A terminal task must match the history's end: the status of its terminal event and
    ``attempts`` = the PROCESSING events. A task not yet terminal must be one of the history's
    states (``State``), so ``attempts`` equals the PROCESSING events at every read. Either way
    ``last_error`` is set once an attempt failed.
    """
    snap = as_task(task)
    seen = walk or walk_history(events, snap.max_attempts if snap.max_attempts > 0 else None)
    problems: list[Violation] = []
    if seen.last is None:
        return problems
    failed = 0
    if snap.status in TERMINAL:
        decided = seen.terminal or seen.last
        status_of = {int(_C): Status.COMPLETED, int(_D): Status.DEAD}
        if status_of.get(decided.type) != snap.status:
            problems.append(
                _v(
                    "2.2/4.3",
                    "status_mismatch",
                    f"the task is {status_name(snap.status)} but its last event is not "
                    f"{status_name(snap.status)}: {decided.label()}",
                )
            )
        if snap.attempts != seen.processing:
            problems.append(
                _v(
                    "4.5",
                    "status_mismatch",
                    f"attempts={snap.attempts} but the history has {seen.processing} PROCESSING events",
                )
            )
        failed = len(seen.failed)
    else:
        match = next((s for s in seen.states if (s.status, s.attempts) == (snap.status, snap.attempts)), None)
        if match is None:
            states = ", ".join(f"{status_name(s.status)}/{s.attempts}" for s in seen.states) or "none"
            problems.append(
                _v(
                    "2.2/4.5",
                    "status_mismatch",
                    f"{snap.label()} is no state of the history read with or after it "
                    f"(its states, status/attempts: {states})",
                )
            )
        else:
            failed = match.failed
    if failed and not snap.last_error:
        problems.append(_v("2.4", "bad_task_field", "last_error is empty although an attempt failed"))
    return problems


def _same(a: Event, b: Event) -> bool:
    return (a.sequence, a.type, a.attempt, a.at_ns, a.detail) == (
        b.sequence,
        b.type,
        b.attempt,
        b.at_ns,
        b.detail,
    )


def prefix_violations(earlier: Sequence[EventLike], later: Sequence[EventLike]) -> list[Violation]:
    """A history read earlier is a prefix of one read later: events are only appended (4.1, 8.4)."""
    before = [as_event(event) for event in earlier]
    after = [as_event(event) for event in later]
    for index, event in enumerate(before):
        if index >= len(after):
            return [
                _v(
                    "8.4",
                    "read_went_back",
                    f"a history of {len(before)} events was read, a later read has only {len(after)}",
                )
            ]
        if not _same(event, after[index]):
            return [
                _v(
                    "8.4",
                    "read_went_back",
                    f"event {index + 1} was read as {event.label()} and later as {after[index].label()} "
                    "(an earlier history must be a prefix of a later one)",
                )
            ]
    return []


def snapshot_violations(snapshots: Sequence[TaskLike], *, stream: bool = False) -> list[Violation]:
    """Successive snapshots of one task seen by one reader move only forward (2.2, 2.3, 2.4, 8.2, 8.4).

    Changes may be coalesced (8.2), so two snapshots need only be linked by legal transitions;
    created_at never changes, updated_at and attempts never go back. A terminal task never changes
    (2.3); ``stream``: the snapshots are one WatchTask stream, which ends with its terminal snapshot (8.2).
    """
    snaps = [as_task(snapshot) for snapshot in snapshots]
    problems = []
    for index, snap in enumerate(snaps, start=1):
        if snap.status not in REACHABLE:
            problems.append(
                _v(
                    "2.2",
                    "bad_task_field",
                    f"snapshot {index}: status {status_name(snap.status)} is not a task status",
                )
            )
        if snap.created_at_ns is None or snap.updated_at_ns is None:
            problems.append(
                _v("2.1", "bad_task_field", f"snapshot {index}: created_at and updated_at must be set")
            )
        elif snap.updated_at_ns < snap.created_at_ns:
            problems.append(
                _v("2.4", "bad_task_field", f"snapshot {index}: updated_at is earlier than created_at")
            )
    for index, (before, after) in enumerate(itertools.pairwise(snaps), start=2):
        if before.status in TERMINAL and stream:
            problems.append(
                _v("2.3/8.2", "read_went_back", f"snapshot {index} follows the terminal snapshot {index - 1}")
            )
        elif before.status in TERMINAL and (after.attempts, after.updated_at_ns) != (
            before.attempts,
            before.updated_at_ns,
        ):
            problems.append(
                _v(
                    "2.3",
                    "event_after_terminal",
                    f"snapshot {index} changed the terminal task of snapshot {index - 1}",
                )
            )
        elif before.status in REACHABLE and after.status not in REACHABLE[before.status]:
            problems.append(
                _v(
                    "2.2",
                    "read_went_back",
                    f"snapshot {index} moves {status_name(before.status)} -> {status_name(after.status)}, "
                    "which no chain of legal transitions allows",
                )
            )
        if after.created_at_ns != before.created_at_ns:
            problems.append(
                _v("2.4", "bad_task_field", f"created_at changed between snapshots {index - 1} and {index}")
            )
        if (after.updated_at_ns or 0) < (before.updated_at_ns or 0):
            problems.append(_v("2.4", "read_went_back", f"updated_at went backwards at snapshot {index}"))
        if after.attempts < before.attempts:
            problems.append(
                _v(
                    "8.4",
                    "read_went_back",
                    f"attempts went from {before.attempts} to {after.attempts} at snapshot {index}",
                )
            )
    return problems


def state_index(read: Task | list[Event], walk: HistoryWalk) -> int | None:
    """Index in ``walk.states`` of the state a read shows (None when it shows none of them).

    A snapshot shows the state with its status and attempts; a history read shows the last state
    its events reach.
    """
    if isinstance(read, Task):
        return next(
            (i for i, s in enumerate(walk.states) if (s.status, s.attempts) == (read.status, read.attempts)),
            None,
        )
    length = len(read)
    return max((i for i, s in enumerate(walk.states) if s.events <= length), default=None)


def observed_violations(
    reads: Sequence[TaskLike | Sequence[EventLike]],
    final: Sequence[EventLike],
    *,
    max_attempts: int | None = None,
) -> list[Violation]:
    """One reader's reads of a task, in the order it made them, against the task's final history.

    Each read is a snapshot (GetTask, a WatchTask message) or a history (ListTaskEvents). Every
    history read must be a prefix of ``final``, every snapshot a state of it (at every read,
    attempts = PROCESSING events, 4.5), and no read may show an earlier state than a read before
    it (8.4).
    """
    walk = walk_history(final, max_attempts)
    problems: list[Violation] = []
    furthest: tuple[int, str] | None = None
    for number, read in enumerate(reads, start=1):
        shown: Task | list[Event]
        if isinstance(read, (Task, pb.Task)):
            snap = as_task(read)
            shown, label = snap, f"read {number} ({snap.label()})"
            own = task_history_violations(snap, final, walk=walk)
        else:
            history = [as_event(event) for event in read]
            shown, label = history, f"read {number} ({len(history)} events)"
            own = prefix_violations(history, final)
        problems.extend(Violation(v.section, f"{label}: {v.message}", v.rule) for v in own)
        position = state_index(shown, walk)
        if position is None:
            continue
        if furthest is not None and position < furthest[0]:
            problems.append(
                _v("8.4", "read_went_back", f"{label} shows an earlier state than {furthest[1]} before it")
            )
        if furthest is None or position >= furthest[0]:
            furthest = (position, label)
    return problems
