"""The history checker: a pure function from a recorded ``History`` to a list of anomalies.

It knows the contract (docs/spec.md sections 2 to 7), not any implementation. Every anomaly
names a rule by a short id (see ``RULES``), the task and key concerned, and the evidence (the
operations or the rendered event history), so a report can be read without the raw history.

Abandoned attempts (spec 7.2): an attempt whose PROCESSING is followed directly by the next
PROCESSING was abandoned and not recorded; a FAILED whose detail mentions "abandon" is an
abandoned attempt recorded as FAILED. Both count as failed attempts toward max_attempts, and
neither is held against a task type that never fails.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace

from fault_injection._history import Event, History, Operation, TaskSnapshot, fingerprint

__all__ = ["RULES", "Anomaly", "check"]

RULES: dict[str, str] = {
    "lost_submit": "an acknowledged submit's task is NOT_FOUND at the end (spec 7.3)",
    "duplicate_task_for_key": "one idempotency key maps to more than one task (spec 3.3)",
    "created_twice": "more than one submit answered created=true for one key (spec 3.3)",
    "task_mismatch": "the task differs from the submitted request (key, type, payload, max_attempts)",
    "bad_history_shape": "not starting with SUBMITTED, sequence not rising, time going back (4.1, 4.3)",
    "illegal_transition": "an event that cannot follow the previous one (spec 2.2, 4.3)",
    "attempt_numbering": "attempts not 1, 2, 3, ... or an outcome for another attempt (4.2, 4.3, 5.4)",
    "dead_without_max_failures": "DEAD without max_attempts failed attempts, or all failed and no DEAD (5.3)",
    "double_completed": "two COMPLETED events (spec 7.1)",
    "event_after_terminal": "an event after COMPLETED or DEAD (spec 2.3)",
    "not_terminal": "a task not COMPLETED or DEAD after the faults healed and the queue drained (7.2, 7.3)",
    "status_mismatch": "final status disagrees with the last event, or attempts with PROCESSING count (4.5)",
    "wrong_outcome_for_type": "an outcome the task type cannot produce (spec 6)",
    "not_collected": "an acknowledged task whose final snapshot or events were not collected",
    "already_exists_for_same_request": "ALREADY_EXISTS for a resubmit of the very same request (spec 3.3)",
    "read_not_found": "a read answered NOT_FOUND for a task acknowledged before the read began (7.3)",
    "unhealthy_after_fault": "the target did not report SERVING after a fault was healed",
}
"""Every rule id ``check`` can report, with what it means."""

_TERMINAL = ("COMPLETED", "DEAD")
_STATUS_AFTER = {
    "SUBMITTED": "PENDING",
    "PROCESSING": "PROCESSING",
    "FAILED": "RETRYING",
    "COMPLETED": "COMPLETED",
    "DEAD": "DEAD",
}
_NEVER_FAILING = ("noop", "echo", "sleep")


@dataclass(frozen=True)
class Anomaly:
    """One broken rule: which (a ``RULES`` id), where (task, key) and why (evidence)."""

    rule: str
    task_id: str | None
    idempotency_key: str | None
    evidence: str

    def to_json(self) -> dict[str, str | None]:
        """A JSON-ready dict."""
        return asdict(self)


def check(history: History) -> list[Anomaly]:
    """Check a history against the contract; return every anomaly found (empty when clean)."""
    found: list[Anomaly] = []
    submits = [op for op in history.operations if op.kind == "submit"]
    _check_keys(history, submits, found)
    _check_reads_and_health(history, submits, found)
    owner_ops = _ops_by_task(submits)
    for task_id in _task_ids(history, submits):
        _check_task(history, task_id, owner_ops.get(task_id, []), submits, found)
    return found


def _task_ids(history: History, submits: list[Operation]) -> list[str]:
    """Every task id the history knows, in first-seen order."""
    ids: dict[str, None] = {}
    for op in submits:
        if op.outcome == "ok" and op.task_id:
            ids.setdefault(op.task_id, None)
    for task_id in [*history.tasks, *history.events]:
        ids.setdefault(task_id, None)
    return list(ids)


def _ops_by_task(submits: list[Operation]) -> dict[str, list[Operation]]:
    by_task: dict[str, list[Operation]] = defaultdict(list)
    for op in submits:
        if op.outcome == "ok" and op.task_id:
            by_task[op.task_id].append(op)
    return by_task


def _describe_ops(ops: Iterable[Operation]) -> str:
    parts = []
    for op in ops:
        if op.outcome == "ok" and op.value is not None:
            parts.append(f"op {op.id} ok task_id={op.value.get('task_id')} created={op.value.get('created')}")
        else:
            parts.append(f"op {op.id} {op.outcome or 'in flight'} {op.code or ''}".rstrip())
    return "; ".join(parts)


def _check_keys(history: History, submits: list[Operation], found: list[Anomaly]) -> None:
    """Rules over submits grouped by idempotency key."""
    by_key: dict[str, list[Operation]] = defaultdict(list)
    for op in submits:
        if op.idempotency_key is not None:
            by_key[op.idempotency_key].append(op)
    snapshot_ids_by_key: dict[str, list[str]] = defaultdict(list)
    for snap in history.tasks.values():
        if snap is not None:
            snapshot_ids_by_key[snap.idempotency_key].append(snap.task_id)

    for key in [*by_key, *(k for k in snapshot_ids_by_key if k not in by_key)]:
        ops = by_key.get(key, [])
        acked = [op for op in ops if op.outcome == "ok"]
        task_ids = list(
            dict.fromkeys([*(op.task_id for op in acked if op.task_id), *snapshot_ids_by_key[key]])
        )
        if len(task_ids) > 1:
            found.append(
                Anomaly(
                    "duplicate_task_for_key",
                    task_ids[1],
                    key,
                    f"key maps to tasks {', '.join(task_ids)}; "
                    f"submits: {_describe_ops(ops) or 'none recorded'}",
                )
            )
        established = _established_fingerprint(history, acked)
        for op in ops:
            if op.outcome == "fail" and op.code == "ALREADY_EXISTS" and op.fingerprint == established:
                found.append(
                    Anomaly(
                        "already_exists_for_same_request",
                        task_ids[0] if task_ids else None,
                        key,
                        f"op {op.id} resubmitted {op.fingerprint} and got ALREADY_EXISTS: {op.detail}",
                    )
                )
        created = [op for op in acked if op.value and op.value.get("created") is True]
        if len(created) > 1:
            found.append(
                Anomaly(
                    "created_twice",
                    created[1].task_id,
                    key,
                    f"{len(created)} submits answered created=true: {_describe_ops(created)}",
                )
            )


def _established_fingerprint(history: History, acked: list[Operation]) -> str | None:
    """The request a key stands for: its task's, else the first acknowledged submit's."""
    for op in acked:
        snap = history.tasks.get(op.task_id or "")
        if snap is not None:
            return fingerprint(snap.task_type, snap.payload, snap.max_attempts)
    return next((op.fingerprint for op in acked if op.fingerprint), None)


def _check_reads_and_health(history: History, submits: list[Operation], found: list[Anomaly]) -> None:
    acked_at: dict[str, Operation] = {}
    for op in submits:
        if op.outcome == "ok" and op.task_id and op.complete_ns is not None:
            first = acked_at.get(op.task_id)
            if first is None or (first.complete_ns or 0) > op.complete_ns:
                acked_at[op.task_id] = op
    for op in history.operations:
        if op.kind.startswith("health_after") and op.outcome != "ok":
            found.append(
                Anomaly(
                    "unhealthy_after_fault",
                    None,
                    None,
                    f"op {op.id} {op.kind}: {op.outcome or 'in flight'} {op.code or ''} {op.detail}".rstrip(),
                )
            )
        ack = acked_at.get(op.task_id or "")
        if (
            op.kind != "submit"
            and op.outcome == "fail"
            and op.code == "NOT_FOUND"
            and ack is not None
            and ack.complete_ns is not None
            and ack.complete_ns < op.invoke_ns
        ):
            found.append(
                Anomaly(
                    "read_not_found",
                    op.task_id,
                    ack.idempotency_key,
                    f"op {op.id} {op.kind} answered NOT_FOUND after op {ack.id} acknowledged the task",
                )
            )


@dataclass
class _Walk:
    """What walking one event history learned."""

    processing: int = 0
    failed_recorded: int = 0
    abandoned_unrecorded: int = 0
    abandoned_recorded: int = 0
    highest_attempt: int = 0
    completed_attempts: list[int] = field(default_factory=list)
    failed_events: list[Event] = field(default_factory=list)
    terminal_event: Event | None = None
    last: Event | None = None

    @property
    def terminal(self) -> str | None:
        return self.terminal_event.type if self.terminal_event else None


def _render(events: list[Event]) -> str:
    parts = []
    for ev in events:
        attempt = f"({ev.attempt})" if ev.type in ("PROCESSING", "FAILED", "COMPLETED") or ev.attempt else ""
        parts.append(f"{ev.type}{attempt}#{ev.sequence}")
    return " ".join(parts) or "(no events)"


def _is_abandoned(event: Event) -> bool:
    return "abandon" in event.detail.lower()


def _walk(events: list[Event], max_attempts: int, report: _Reporter) -> _Walk:
    """Check the shape, ordering, attempt numbers and terminal rules of one history."""
    walk = _Walk()
    open_attempt: int | None = None
    after_terminal_reported = False
    if not events:
        report("bad_history_shape", "no events at all (SUBMITTED is required)")
        return walk
    for index, ev in enumerate(events):
        prev = events[index - 1] if index else None
        if index == 0 and ev.type != "SUBMITTED":
            report("bad_history_shape", f"first event is {ev.type}, not SUBMITTED")
        if prev is not None and ev.sequence <= prev.sequence:
            report("bad_history_shape", f"sequence {ev.sequence} after {prev.sequence} (must rise)")
        if prev is not None and ev.at_ns < prev.at_ns:
            report(
                "bad_history_shape",
                f"{ev.type}#{ev.sequence} is {prev.at_ns - ev.at_ns} ns before the previous event",
            )
        walk.last = ev
        if walk.terminal is not None:
            walk.processing += ev.type == "PROCESSING"  # spec 4.5 counts every PROCESSING event
            if ev.type == "COMPLETED" and walk.terminal == "COMPLETED":
                walk.completed_attempts.append(ev.attempt)
                report("double_completed", f"second COMPLETED({ev.attempt})#{ev.sequence}")
            elif not after_terminal_reported:
                after_terminal_reported = True
                report("event_after_terminal", f"{ev.type}#{ev.sequence} after {walk.terminal}")
            continue
        if ev.type == "SUBMITTED":
            if index != 0:
                report("illegal_transition", f"SUBMITTED again at #{ev.sequence}")
        elif ev.type == "PROCESSING":
            expected = walk.highest_attempt + 1
            if ev.attempt != expected:
                report(
                    "attempt_numbering",
                    f"PROCESSING({ev.attempt})#{ev.sequence}, expected attempt {expected}",
                )
            if max_attempts and ev.attempt > max_attempts:
                report(
                    "attempt_numbering", f"attempt {ev.attempt} started beyond max_attempts={max_attempts}"
                )
            if open_attempt is not None:
                walk.abandoned_unrecorded += 1
            open_attempt = ev.attempt
            walk.processing += 1
            walk.highest_attempt = max(walk.highest_attempt, ev.attempt)
        elif ev.type in ("FAILED", "COMPLETED"):
            if open_attempt is None:
                after = prev.type if prev is not None else "nothing"
                report(
                    "illegal_transition",
                    f"{ev.type}({ev.attempt})#{ev.sequence} after {after}, no attempt running",
                )
            elif ev.attempt != open_attempt and not (ev.type == "COMPLETED" and ev.attempt == 0):
                # spec 4.2: COMPLETED may carry 0 instead of its attempt
                report(
                    "attempt_numbering",
                    f"{ev.type}({ev.attempt})#{ev.sequence} ends attempt {open_attempt}",
                )
            if ev.type == "COMPLETED" and ev.attempt == 0 and open_attempt is not None:
                ev = replace(ev, attempt=open_attempt)
            open_attempt = None
            if ev.type == "FAILED":
                walk.failed_recorded += 1
                walk.failed_events.append(ev)
                if _is_abandoned(ev):
                    walk.abandoned_recorded += 1
            else:
                walk.completed_attempts.append(ev.attempt)
                walk.terminal_event = ev
        elif ev.type == "DEAD":
            failed = walk.failed_recorded + walk.abandoned_unrecorded
            after_failed = prev is not None and prev.type == "FAILED"
            if not (after_failed and failed == max_attempts and walk.highest_attempt == max_attempts):
                report(
                    "dead_without_max_failures",
                    f"DEAD#{ev.sequence} after {failed} failed attempt(s) "
                    f"(last attempt {walk.highest_attempt}, "
                    f"previous event {prev.type if prev else 'none'}), max_attempts={max_attempts}",
                )
            walk.terminal_event = ev
        else:
            report("bad_history_shape", f"unknown event type {ev.type!r} at #{ev.sequence}")
    last = walk.last
    failed = walk.failed_recorded + walk.abandoned_unrecorded
    if (
        walk.terminal is None
        and last is not None
        and last.type == "FAILED"
        and max_attempts
        and last.attempt >= max_attempts
        and failed >= max_attempts
    ):
        report(
            "dead_without_max_failures",
            f"{failed} failed attempts of max_attempts={max_attempts} but no DEAD",
        )
    return walk


class _Reporter:
    """Collects anomalies for one task, each carrying the rendered history as context."""

    def __init__(self, found: list[Anomaly], task_id: str, key: str | None, events: list[Event]) -> None:
        self._found = found
        self._task_id = task_id
        self._key = key
        self._events = events

    def __call__(self, rule: str, why: str) -> None:
        self._found.append(
            Anomaly(rule, self._task_id, self._key, f"{why}; history: {_render(self._events)}")
        )


def _check_task(
    history: History,
    task_id: str,
    owner_ops: list[Operation],
    submits: list[Operation],
    found: list[Anomaly],
) -> None:
    key = owner_ops[0].idempotency_key if owner_ops else None
    if task_id not in history.tasks:
        if owner_ops:
            found.append(Anomaly("not_collected", task_id, key, "no final GetTask recorded for this task"))
        return
    snap = history.tasks[task_id]
    if snap is None:
        if owner_ops:
            resolved = [op for op in submits if op.idempotency_key == key and op.outcome != "ok"]
            extra = f"; earlier unresolved submits of the key: {_describe_ops(resolved)}" if resolved else ""
            found.append(
                Anomaly(
                    "lost_submit",
                    task_id,
                    key,
                    "GetTask answered NOT_FOUND at the end; "
                    f"acknowledged by {_describe_ops(owner_ops)}{extra}",
                )
            )
        return
    key = key or snap.idempotency_key
    events = history.events.get(task_id)
    if events is None:
        found.append(Anomaly("not_collected", task_id, key, "no ListTaskEvents recorded for this task"))
        return
    report = _Reporter(found, task_id, key, events)
    _check_request_identity(snap, owner_ops, report)
    walk = _walk(events, snap.max_attempts, report)
    _check_snapshot(snap, walk, report)
    _check_type_outcome(snap, walk, report)


def _check_request_identity(snap: TaskSnapshot, owner_ops: list[Operation], report: _Reporter) -> None:
    actual = fingerprint(snap.task_type, snap.payload, snap.max_attempts)
    for op in owner_ops:
        if op.idempotency_key is not None and op.idempotency_key != snap.idempotency_key:
            report(
                "task_mismatch",
                f"op {op.id} used key {op.idempotency_key!r}, task has {snap.idempotency_key!r}",
            )
        if op.fingerprint is not None and op.fingerprint != actual:
            report("task_mismatch", f"op {op.id} submitted {op.fingerprint}, task is {actual}")


def _check_snapshot(snap: TaskSnapshot, walk: _Walk, report: _Reporter) -> None:
    if snap.status not in _TERMINAL:
        report("not_terminal", f"final status {snap.status}, attempts={snap.attempts}")
    # The event that decided the status: the terminal one if any (later events are reported apart).
    last = walk.terminal_event or walk.last
    if last is None:
        return
    # GetTask and ListTaskEvents are two reads: only compare when one side says the task is over.
    expected = _STATUS_AFTER.get(last.type)
    if (snap.status in _TERMINAL or last.type in _TERMINAL) and expected != snap.status:
        report("status_mismatch", f"status {snap.status} but last event is {last.type}#{last.sequence}")
    if snap.status in _TERMINAL and snap.attempts != walk.processing:
        report("status_mismatch", f"attempts={snap.attempts} but {walk.processing} PROCESSING events")


def _check_type_outcome(snap: TaskSnapshot, walk: _Walk, report: _Reporter) -> None:
    """Judge each outcome by what the conformance task type can do (spec 6)."""
    real_failures = [ev for ev in walk.failed_events if not _is_abandoned(ev)]
    kind = snap.task_type
    problem: str | None = None
    if kind in _NEVER_FAILING:
        if real_failures:
            first = real_failures[0]
            problem = f"{kind} failed attempt {first.attempt} ({first.detail!r}); it never fails"
        elif kind == "echo" and snap.status == "COMPLETED" and snap.result != snap.payload:
            problem = f"echo result {snap.result[:64]!r} differs from payload {snap.payload[:64]!r}"
        elif kind == "noop" and snap.status == "COMPLETED" and snap.result:
            problem = f"noop result is not empty: {snap.result[:64]!r}"
    elif kind == "fail_always":
        if walk.completed_attempts or snap.status == "COMPLETED":
            problem = "fail_always completed"
    elif kind == "fail_times":
        times = _times(snap.payload)
        if times is not None:
            early = [a for a in walk.completed_attempts if a <= times]
            late_failures = [ev for ev in real_failures if ev.attempt > times]
            if early:
                problem = f"fail_times(times={times}) completed on attempt {early[0]}"
            elif late_failures:
                late = late_failures[0]
                problem = f"fail_times(times={times}) failed attempt {late.attempt} ({late.detail!r})"
    if problem is not None:
        report("wrong_outcome_for_type", f"{problem}; final status {snap.status}")


def _times(payload: bytes) -> int | None:
    try:
        value = json.loads(payload)
    except ValueError:
        return None
    times = value.get("times") if isinstance(value, dict) else None
    return times if isinstance(times, int) and not isinstance(times, bool) else None
