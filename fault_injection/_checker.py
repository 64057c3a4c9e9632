"""The history checker: a pure function from a recorded ``History`` to a list of anomalies.

It knows the contract (docs/spec.md sections 2 to 7), not any implementation: the rules over one
task's history and snapshot are ``taskqueue_contract``'s, the same the conformance scenarios use;
this module adds the rules over a run's operations (keys, acknowledgements, reads). Every anomaly
names a rule by a short id (see ``RULES``), the task and key concerned, and the evidence (the
operations or the rendered event history), so a report can be read without the raw history.

Answers: INTERNAL or UNKNOWN to any call is an anomaly (9.1, 9.2) naming the call and the fault
active then; so is a definite error to a valid request (anything but ALREADY_EXISTS for a
conflicting submit, NOT_FOUND for a read of a task not yet acknowledged). A submit's OK answer
carries a task_id; created=true comes with PENDING (3.1), created=false with a status the task
had (3.3); a key whose submits were all answered has one created=true, and none after the task
was acknowledged. Reads are checked by ``fault_injection._reads``, liveness by
``fault_injection._liveness``.

Abandoned attempts (spec 6.3, 7.2): an attempt whose PROCESSING is followed directly by the next
PROCESSING was abandoned and not recorded; a FAILED whose detail mentions "abandon" is an
abandoned attempt recorded as FAILED. Both count as failed attempts toward max_attempts, and
neither is held against a task type that never fails; but only a worker that died or lost its
connection abandons an attempt, so each must overlap a fault or crash window of the history
(one not on the client's own ``api`` link). Elsewhere it is an anomaly.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import taskqueue_contract as contract
from fault_injection._history import Event, History, Operation, TaskSnapshot, Window, fingerprint
from fault_injection._liveness import liveness
from fault_injection._reads import check_reads

__all__ = ["RULES", "Anomaly", "check"]

RULES: dict[str, str] = {
    **contract.RULES,
    "lost_submit": "an acknowledged submit's task is NOT_FOUND at the end (spec 7.3)",
    "duplicate_task_for_key": "one idempotency key maps to more than one task (spec 3.3)",
    "created_twice": "more than one submit answered created=true for one key (spec 3.3)",
    "task_mismatch": "the task differs from the submitted request (key, type, payload, max_attempts)",
    "not_terminal": "a task not COMPLETED or DEAD after the faults healed and the queue drained (7.2, 7.3)",
    "wrong_outcome_for_type": "an outcome the task type cannot produce (spec 6)",
    "not_collected": "an acknowledged task whose final snapshot or events were not collected",
    "already_exists_for_same_request": "ALREADY_EXISTS for a resubmit of the very same request (spec 3.3)",
    "read_not_found": "a read answered NOT_FOUND for a task acknowledged before the read began (7.3)",
    "unhealthy_after_fault": "the target did not report SERVING after a fault was healed",
    "forbidden_code": "INTERNAL or UNKNOWN answered to a call (spec 9.1, 9.2)",
    "failed_valid_request": "a valid request failed with a definite error (spec 3, 9)",
    "bad_submit_answer": "an OK submit without task_id, created=true not PENDING, or a status the "
    "task never had (spec 3.1, 3.3)",
    "never_created": "every submit of a key was answered and none said created=true (spec 3.3)",
    "created_for_existing": "created=true for a key whose task was already acknowledged (spec 3.3)",
    "abandoned_without_fault": "an attempt abandoned while no fault or crash was active (spec 6.3, 7.2)",
    "watch_ended_early": "a WatchTask stream closed OK without the task's terminal snapshot (spec 8.2)",
    "no_progress": "too few operations got an answer while no fault was active (liveness)",
    "final_submit_failed": "the submit made after every link was healed did not succeed (liveness)",
    "unresolved_unknown": "a submit with an unknown outcome stayed unresolved after healing (3.6, 7.3)",
}
"""Every rule id ``check`` can report, with what it means (the contract's own rules included)."""

_NEVER_FAILING = ("noop", "echo", "sleep")


@dataclass(frozen=True)
class Anomaly:
    """One broken rule: which (a ``RULES`` id), where (task, key) and why (evidence)."""

    rule: str
    task_id: str | None
    idempotency_key: str | None
    evidence: str

    def to_json(self) -> dict[str, str | None]:
        """The one JSON shape of an anomaly (``check --json``, chaos reports): ``rule``, its
        ``meaning`` (from ``RULES``), ``task_id``, ``idempotency_key``, ``evidence``."""
        return {
            "rule": self.rule,
            "meaning": RULES.get(self.rule, ""),
            "task_id": self.task_id,
            "idempotency_key": self.idempotency_key,
            "evidence": self.evidence,
        }

    def line(self) -> str:
        """``rule: task T key K: evidence`` on one line (the evidence cut at 300 characters)."""
        evidence = " ".join(self.evidence.split())[:300]
        return f"{self.rule}: task {self.task_id or '-'} key {self.idempotency_key or '-'}: {evidence}"


def check(history: History, *, min_ack_fraction: float | None = None) -> list[Anomaly]:
    """Check a history against the contract; return every anomaly found (empty when clean).

    ``min_ack_fraction``: the liveness threshold (default: the run's own, else 0.5).
    """
    found: list[Anomaly] = []
    submits = [op for op in history.operations if op.kind == "submit"]
    _check_keys(history, submits, found)
    _check_reads_and_health(history, submits, found)
    owner_ops = _ops_by_task(submits)
    _check_answers(history, owner_ops, found)
    for task_id in _task_ids(history, submits):
        _check_task(history, task_id, owner_ops.get(task_id, []), submits, found)
    key_of = {op.task_id: op.idempotency_key for op in submits if op.task_id}

    def report(rule: str, task_id: str | None, evidence: str) -> None:
        found.append(Anomaly(rule, task_id, key_of.get(task_id or ""), evidence))

    check_reads(history, report)
    _check_liveness(history, min_ack_fraction, found)
    return found


_FORBIDDEN_CODES = ("INTERNAL", "UNKNOWN")
_MAX_KEY_BYTES = 256


def _faults_during(history: History, op: Operation) -> str:
    """``during latency on api (window 3)`` or ``while no fault was active``."""
    windows = history.active_windows(op.invoke_ns, op.complete_ns)
    if not windows:
        return "while no fault was active"
    return "during " + ", ".join(f"{w.kind} on {w.target} (window {w.id})" for w in windows)


def _describe_call(op: Operation) -> str:
    what = f"op {op.id} {op.kind}"
    if op.idempotency_key is not None:
        what += f" key={op.idempotency_key!r}"
    if op.task_id and op.kind != "submit":
        what += f" task={op.task_id}"
    return what


def _valid_submit(op: Operation) -> bool:
    """Whether a recorded submit was a valid request (spec 9): a key of 1..256 bytes, a known type."""
    key = op.idempotency_key or ""
    task_type = (op.fingerprint or "").split(":", 1)[0]
    return 0 < len(key.encode()) <= _MAX_KEY_BYTES and task_type in (
        "noop",
        "echo",
        "sleep",
        "fail_always",
        "fail_times",
    )


def _check_answers(history: History, owner_ops: dict[str, list[Operation]], found: list[Anomaly]) -> None:
    """Forbidden codes and definite failures of valid requests (spec 3, 9.1, 9.2)."""
    for op in history.operations:
        if op.kind == "submit" and op.outcome == "ok":
            _check_submit_answer(op, found)
        code = op.code or (op.value or {}).get("end") if op.kind == "watch" else op.code
        if op.kind.startswith("health") or code is None:
            continue
        call = _describe_call(op)
        task = op.task_id if op.kind != "submit" else None
        owners = owner_ops.get(task or "", [])
        key = op.idempotency_key or (owners[0].idempotency_key if owners else None)
        if code in _FORBIDDEN_CODES:
            found.append(
                Anomaly(
                    "forbidden_code",
                    task,
                    key,
                    f"{call} answered {code} {op.detail[:160]!r} {_faults_during(history, op)}; "
                    "spec 9.1/9.2: never INTERNAL or UNKNOWN (UNAVAILABLE when a backend fails)",
                )
            )
        elif op.outcome == "fail":
            if op.kind == "submit":
                expected = op.code == "ALREADY_EXISTS" or not _valid_submit(op)
            else:
                expected = op.code == "NOT_FOUND" or (op.code == "INVALID_ARGUMENT" and not op.task_id)
            if not expected:
                found.append(
                    Anomaly(
                        "failed_valid_request",
                        task,
                        key,
                        f"{call} failed {op.code} {op.detail[:160]!r} {_faults_during(history, op)}; "
                        "a valid request fails only as the spec's table says (spec 9)",
                    )
                )


def _check_submit_answer(op: Operation, found: list[Anomaly]) -> None:
    """An OK submit names its task; created=true comes with PENDING (spec 3.1)."""
    value = op.value or {}
    if not value.get("task_id"):
        found.append(
            Anomaly(
                "bad_submit_answer",
                None,
                op.idempotency_key,
                f"op {op.id} submit answered OK without a task_id: {value}; spec 2.1/3.1: it names the task",
            )
        )
    elif value.get("created") is True and value.get("status", "PENDING") != "PENDING":
        found.append(
            Anomaly(
                "bad_submit_answer",
                op.task_id,
                op.idempotency_key,
                f"op {op.id} submit answered created=true with status {value.get('status')}; "
                "spec 3.1: a submit that creates a task answers PENDING",
            )
        )


def _check_liveness(history: History, min_ack_fraction: float | None, found: list[Anomaly]) -> None:
    live = liveness(history, min_ack_fraction)
    if not live.progress_ok:
        found.append(
            Anomaly(
                "no_progress",
                None,
                None,
                f"{live.acknowledged_fault_free} of {live.offered_fault_free} operations made while no "
                f"fault was active got an answer; at least {live.min_ack_fraction:.0%} must",
            )
        )
    if live.final_submit not in ("ok", "not made"):
        op = history.operations[int(history.meta["final_submit_op"])]
        found.append(
            Anomaly(
                "final_submit_failed",
                op.task_id,
                op.idempotency_key,
                f"op {op.id}, a submit made after every link was healed, ended {live.final_submit} "
                f"{op.detail[:160]!r}",
            )
        )
    ops = history.operations
    for op_id in live.unresolved or []:
        op = ops[op_id]
        tries = [o for o in ops if o.kind == "submit" and o.idempotency_key == op.idempotency_key]
        found.append(
            Anomaly(
                "unresolved_unknown",
                None,
                op.idempotency_key,
                f"op {op.id} submit ended {op.outcome or 'in flight'} {op.code or ''} and no resubmit of the "
                f"same request got an answer: {_describe_ops(tries)}",
            )
        )


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
        same = [op for op in ops if op.fingerprint == established or op.fingerprint is None]
        if acked and not created and same and all(op.outcome == "ok" for op in same):
            found.append(
                Anomaly(
                    "never_created",
                    task_ids[0] if task_ids else None,
                    key,
                    f"every submit of the key was answered and none said created=true: {_describe_ops(same)}",
                )
            )
        for op in created:
            before = [
                other
                for other in acked
                if other is not op and other.complete_ns is not None and other.complete_ns < op.invoke_ns
            ]
            if before and not any(other in created for other in before):  # else: created_twice
                found.append(
                    Anomaly(
                        "created_for_existing",
                        op.task_id,
                        key,
                        f"op {op.id} answered created=true after {_describe_ops(before[:1])} had answered "
                        "for the key",
                    )
                )
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


def _render(events: list[Event]) -> str:
    return " ".join(event.to_contract().label() for event in events) or "(no events)"


def _is_abandoned(event: contract.Event | Event) -> bool:
    return "abandon" in event.detail.lower()


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
    task = snap.to_contract()
    timeline = [event.to_contract() for event in events]
    valid_max = 1 <= snap.max_attempts <= contract.MAX_MAX_ATTEMPTS
    walk = contract.walk_history(
        timeline, snap.max_attempts if valid_max else contract.DEFAULT_MAX_ATTEMPTS, final=True
    )
    for violation in [
        *walk.violations,
        *contract.task_field_violations(task),
        *contract.task_history_violations(task, timeline, walk=walk),
    ]:
        report(violation.rule, str(violation))
    if task.status not in contract.TERMINAL:
        report("not_terminal", f"final status {snap.status}, attempts={snap.attempts}")
    _check_type_outcome(snap, walk, report)
    _check_resubmit_answers(owner_ops, walk, report)
    _check_abandoned(history.windows, timeline, report)


def _check_resubmit_answers(
    owner_ops: list[Operation], walk: contract.HistoryWalk, report: _Reporter
) -> None:
    """created=false answers the task's current status (spec 3.3): one its history passed through."""
    had = {contract.status_name(state.status) for state in walk.states}
    for op in owner_ops:
        value = op.value or {}
        status = value.get("status")
        if value.get("created") is False and status is not None and status not in had:
            report(
                "bad_submit_answer",
                f"op {op.id} answered created=false with status {status}, which the task never had "
                f"({', '.join(sorted(had))}); spec 3.3: the task's current status",
            )


def _abandoned_spans(timeline: list[contract.Event]) -> list[tuple[int, int, int, bool]]:
    """(attempt, from ns, until ns, recorded) of every abandoned attempt of a history."""
    spans = []
    for index, event in enumerate(timeline):
        if event.type != contract.EventType.PROCESSING or index + 1 >= len(timeline):
            continue
        after = timeline[index + 1]
        recorded = after.type == contract.EventType.FAILED and _is_abandoned(after)
        if after.type != contract.EventType.PROCESSING and not recorded:
            continue
        until = timeline[index + 2] if recorded and index + 2 < len(timeline) else after
        if event.at_ns is not None and until.at_ns is not None:
            spans.append((event.attempt, event.at_ns, until.at_ns, recorded))
    return spans


def _check_abandoned(windows: list[Window], timeline: list[contract.Event], report: _Reporter) -> None:
    """Only a worker that died or lost its connection abandons an attempt (spec 6.3, 7.2)."""
    excusing = [window for window in windows if window.target != "api"]
    unexcused = [
        (attempt, recorded)
        for attempt, start_ns, end_ns, recorded in _abandoned_spans(timeline)
        if not any(window.overlaps(start_ns, end_ns) for window in excusing)
    ]
    if unexcused:
        attempts = ", ".join(f"{a}{' (recorded as FAILED)' if recorded else ''}" for a, recorded in unexcused)
        report(
            "abandoned_without_fault",
            f"attempt(s) {attempts} abandoned while no fault or crash was active (windows recorded: "
            f"{len(windows)}); spec 6.3: only an attempt whose worker died or lost its connection "
            "is abandoned",
        )


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


def _check_type_outcome(snap: TaskSnapshot, walk: contract.HistoryWalk, report: _Reporter) -> None:
    """Judge each outcome by what the conformance task type can do (spec 6)."""
    real_failures = [ev for ev in walk.failed if not _is_abandoned(ev)]
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
