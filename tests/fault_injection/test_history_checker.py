"""The history checker on small hand-built histories: one clean, then one per anomaly.

Each broken history is minimal, and the test asserts the exact set of (rule, task) pairs
reported, so a rule that fires where it should not is caught as well as one that stays silent.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import ClassVar

import pytest

from fault_injection.history import (
    RULES,
    Event,
    History,
    Operation,
    TaskSnapshot,
    Window,
    check,
    fingerprint,
    liveness,
)

Spec = str | tuple[str, int] | tuple[str, int, str]


_STATUS_AFTER = {"SUBMITTED": "PENDING", "PROCESSING": "PROCESSING", "FAILED": "RETRYING"}


class Builder:
    """Builds a History one task at a time, from compact event lists like ``["S", ("P", 1), ("C", 1)]``."""

    _TYPES: ClassVar[dict[str, str]] = {
        "S": "SUBMITTED",
        "P": "PROCESSING",
        "F": "FAILED",
        "C": "COMPLETED",
        "D": "DEAD",
    }

    def __init__(self) -> None:
        self.history = History()
        self._clock = 1_700_000_000_000_000_000

    def op(self, kind: str = "submit", **fields: object) -> Operation:
        op = Operation(id=len(self.history.operations), kind=kind, invoke_ns=self._tick(), **fields)  # type: ignore[arg-type]
        op.complete_ns = self._tick()
        self.history.operations.append(op)
        return op

    def read(self, task_id: str, status: str, attempts: int, *, last_error: str | None = None) -> Operation:
        """A GetTask that saw ``status``/``attempts``; other fields as the final task's."""
        compact = self._compact(task_id, status, attempts, last_error)
        return self.op("get", task_id=task_id, outcome="ok", value={"task": compact})

    def _compact(
        self, task_id: str, status: str, attempts: int, last_error: str | None = None
    ) -> list[object]:
        snap = self.history.tasks[task_id]
        assert snap is not None
        error = snap.last_error if last_error is None else last_error
        return [status, attempts, snap.max_attempts, snap.created_at_ns, snap.updated_at_ns, error]

    def list_read(self, task_id: str, count: int) -> Operation:
        """A ListTaskEvents that saw the first ``count`` events of the final history."""
        events = [
            [e.sequence, e.type, e.attempt, e.at_ns, e.detail] for e in self.history.events[task_id][:count]
        ]
        return self.op("list_events", task_id=task_id, outcome="ok", value={"events": events})

    def watch(self, task_id: str, states: list[tuple[str, int]], end: str = "OK") -> Operation:
        """A WatchTask whose snapshots had these (status, attempts), closed with ``end``."""
        snapshots = [self._compact(task_id, status, attempts) for status, attempts in states]
        return self.op("watch", task_id=task_id, outcome="ok", value={"snapshots": snapshots, "end": end})

    def window_open(self, kind: str = "kill", target: str = "worker") -> Window:
        """A fault or crash begins now (close it with ``window_close``)."""
        window = Window(len(self.history.windows), kind, target, self._tick())
        self.history.windows.append(window)
        return window

    def window_close(self, window: Window) -> None:
        window.end_ns = self._tick()
        window.recovered_ns = self._tick()

    def _tick(self) -> int:
        self._clock += 1_000_000
        return self._clock

    def events(self, specs: list[Spec]) -> list[Event]:
        made = []
        for seq, spec in enumerate(specs, start=1):
            parts = (spec,) if isinstance(spec, str) else spec
            kind = self._TYPES[parts[0]]
            attempt = parts[1] if len(parts) > 1 else 0
            detail = parts[2] if len(parts) > 2 else ("boom" if kind == "FAILED" else "")
            made.append(Event(seq, kind, int(attempt), self._tick(), str(detail)))
        return made

    def task(
        self,
        task_id: str,
        task_type: str,
        specs: list[Spec],
        *,
        payload: bytes = b"",
        max_attempts: int = 5,
        key: str | None = None,
        created: bool = True,
        status: str | None = None,
        attempts: int | None = None,
        result: bytes | None = None,
        submit: bool = True,
    ) -> None:
        """An acknowledged submit for ``task_id``, its final snapshot and its events."""
        key = key or f"key-{task_id}"
        events = self.events(specs)
        if submit:
            self.op(
                idempotency_key=key,
                fingerprint=fingerprint(task_type, payload, max_attempts),
                task_id=task_id,
                outcome="ok",
                value={"task_id": task_id, "created": created, "status": "PENDING"},
            )
        last = next((ev.type for ev in reversed(events) if ev.type in ("COMPLETED", "DEAD")), events[-1].type)
        if result is None:
            result = payload if task_type == "echo" else b""
        self.history.tasks[task_id] = TaskSnapshot(
            task_id=task_id,
            idempotency_key=key,
            task_type=task_type,
            payload=payload,
            status=status or _STATUS_AFTER.get(last, last),
            attempts=attempts if attempts is not None else sum(ev.type == "PROCESSING" for ev in events),
            max_attempts=max_attempts,
            result=result if last == "COMPLETED" else b"",
            last_error="boom" if any(ev.type == "FAILED" for ev in events) else "",
            created_at_ns=events[0].at_ns,
            updated_at_ns=events[-1].at_ns,
        )
        self.history.events[task_id] = events


def _fail_always(n: int) -> list[Spec]:
    specs: list[Spec] = ["S"]
    for attempt in range(1, n + 1):
        specs += [("P", attempt), ("F", attempt)]
    return specs


def clean_history() -> History:
    b = Builder()
    b.task("noop-1", "noop", ["S", ("P", 1), ("C", 1)])
    b.task("echo-1", "echo", ["S", ("P", 1), ("C", 1)], payload=b"\x00hello")
    b.task("sleep-1", "sleep", ["S", ("P", 1), ("C", 1)], payload=b'{"ms": 10}')
    b.task("fa-1", "fail_always", [*_fail_always(5), "D"])
    b.task("fa-3", "fail_always", [*_fail_always(3), "D"], max_attempts=3)
    b.task("ft-2", "fail_times", [*_fail_always(2), ("P", 3), ("C", 3)], payload=b'{"times": 2}')
    b.task("ft-9", "fail_times", [*_fail_always(2), "D"], payload=b'{"times": 9}', max_attempts=2)
    # While the worker was killed: an abandoned attempt left unrecorded, and one recorded as
    # FAILED (spec 7.2): both legal.
    kill = b.window_open("kill", "worker")
    b.task("noop-abandoned", "noop", ["S", ("P", 1), ("P", 2), ("C", 2)])
    b.task("noop-abandoned-f", "noop", ["S", ("P", 1), ("F", 1, "attempt abandoned"), ("P", 2), ("C", 2)])
    b.task("fa-abandoned", "fail_always", ["S", ("P", 1), *_fail_always(5)[3:], "D"])
    b.window_close(kill)
    # A submit with an unknown outcome, resolved by resubmitting the same key (created=false).
    b.op(
        idempotency_key="key-lossy",
        fingerprint=fingerprint("noop", b"", 0),
        outcome="unknown",
        code="UNAVAILABLE",
    )
    b.task("lossy", "noop", ["S", ("P", 1), ("C", 1)], key="key-lossy", created=False)
    b.history.operations[-1].resolves = len(b.history.operations) - 2
    # A repeated submit, a conflicting one, and reads.
    b.op(
        idempotency_key="key-noop-1",
        task_id="noop-1",
        outcome="ok",
        value={"task_id": "noop-1", "created": False},
    )
    b.op(idempotency_key="key-noop-1", fingerprint="other", outcome="fail", code="ALREADY_EXISTS")
    b.op("get", task_id="noop-1", outcome="ok", value={"status": "COMPLETED"})
    # Reads made during the run, each a point of the final history, never going back.
    b.read("ft-2", "PENDING", 0)
    b.list_read("ft-2", 3)
    b.read("ft-2", "RETRYING", 1)
    b.watch("ft-2", [("RETRYING", 2), ("PROCESSING", 3), ("COMPLETED", 3)])
    b.read("ft-2", "COMPLETED", 3)
    b.watch("fa-3", [("PROCESSING", 1)], end="cancelled")
    b.watch("fa-3", [("DEAD", 3)], end="OK")
    b.op("get", task_id="nope", outcome="fail", code="NOT_FOUND")
    b.op("submit", idempotency_key="", outcome="fail", code="INVALID_ARGUMENT")
    b.op("health_before", outcome="fail", code="UNAVAILABLE")
    b.op("health_after", outcome="ok", value={"status": "SERVING"})
    # The final submit after healing, answered.
    b.task("final", "noop", ["S", ("P", 1), ("C", 1)])
    b.history.meta["final_submit_op"] = len(b.history.operations) - 1
    return b.history


def test_clean_history_has_no_anomalies() -> None:
    assert check(clean_history()) == []


def _lost(b: Builder) -> None:
    b.op(idempotency_key="k", task_id="t1", outcome="ok", value={"task_id": "t1", "created": True})
    b.history.tasks["t1"] = None


def _lost_after_unknown(b: Builder) -> None:
    b.op(idempotency_key="k", outcome="unknown", code="DEADLINE_EXCEEDED")
    b.op(
        idempotency_key="k", task_id="t1", outcome="ok", value={"task_id": "t1", "created": True}, resolves=0
    )
    b.history.tasks["t1"] = None


def _duplicate(b: Builder) -> None:
    b.task("t1", "noop", ["S", ("P", 1), ("C", 1)], key="k")
    b.task("t2", "noop", ["S", ("P", 1), ("C", 1)], key="k", created=False)


def _duplicate_seen_only_in_snapshots(b: Builder) -> None:
    b.task("t1", "noop", ["S", ("P", 1), ("C", 1)], key="k")
    b.task("t2", "noop", ["S", ("P", 1), ("C", 1)], key="k", submit=False)


def _created_twice(b: Builder) -> None:
    b.task("t1", "noop", ["S", ("P", 1), ("C", 1)], key="k")
    b.op(idempotency_key="k", task_id="t1", outcome="ok", value={"task_id": "t1", "created": True})


def _no_events(b: Builder) -> None:
    b.task("t1", "noop", ["S"], status="COMPLETED", attempts=1)
    b.history.events["t1"] = []


def _sequence_not_rising(b: Builder) -> None:
    b.task("t1", "noop", ["S", ("P", 1), ("C", 1)])
    evs = b.history.events["t1"]
    evs[1], evs[2] = replace(evs[1], sequence=evs[2].sequence), replace(evs[2], sequence=evs[1].sequence)


def _time_going_back(b: Builder) -> None:
    b.task("t1", "noop", ["S", ("P", 1), ("C", 1)])
    evs = b.history.events["t1"]
    evs[2] = replace(evs[2], at_ns=evs[0].at_ns - 1)


def _task_differs_from_request(b: Builder) -> None:
    b.task("t1", "echo", ["S", ("P", 1), ("C", 1)], payload=b"x")
    b.history.operations[-1].fingerprint = fingerprint("echo", b"y", 5)


def _not_collected(b: Builder) -> None:
    b.op(idempotency_key="k", task_id="t1", outcome="ok", value={"task_id": "t1", "created": True})


def _already_exists_for_same_request(b: Builder) -> None:
    b.task("t1", "noop", ["S", ("P", 1), ("C", 1)], key="k")
    b.op(idempotency_key="k", fingerprint=fingerprint("noop", b"", 0), outcome="fail", code="ALREADY_EXISTS")


def _read_not_found(b: Builder) -> None:
    b.task("t1", "noop", ["S", ("P", 1), ("C", 1)], key="k")
    b.op("get", task_id="t1", outcome="fail", code="NOT_FOUND")


def _unhealthy(b: Builder) -> None:
    b.op("health_before", outcome="ok", value={"status": "SERVING"})
    b.op("health_after", outcome="fail", code="DEADLINE_EXCEEDED", detail="after fault 0")


def _refuses_everything(b: Builder) -> None:
    for index in range(50):
        b.op(
            idempotency_key=f"k{index}",
            fingerprint=fingerprint("noop", b"", 0),
            outcome="unknown",
            code="UNAVAILABLE",
            client=index % 4,
        )


def _unknown_never_resolved(b: Builder) -> None:
    b.op(
        idempotency_key="k",
        fingerprint=fingerprint("noop", b"", 0),
        outcome="unknown",
        code="DEADLINE_EXCEEDED",
    )


def _final_submit_fails(b: Builder) -> None:
    b.op(
        idempotency_key="final",
        fingerprint=fingerprint("noop", b"", 0),
        outcome="unknown",
        code="DEADLINE_EXCEEDED",
    )
    b.history.meta["final_submit_op"] = 0


def _internal_during_outage(b: Builder) -> None:
    outage = b.window_open("down", "server_dynamodb")
    b.op(idempotency_key="k", fingerprint=fingerprint("noop", b"", 0), outcome="unknown", code="INTERNAL")
    b.window_close(outage)
    b.task("t1", "noop", ["S", ("P", 1), ("C", 1)], key="k", created=False)


def _unknown_to_a_read(b: Builder) -> None:
    b.task("t1", "noop", ["S", ("P", 1), ("C", 1)], key="k")
    b.op("get", task_id="t1", outcome="unknown", code="UNKNOWN", detail="Exception calling application")


def _failed_precondition(b: Builder) -> None:
    b.task("t1", "noop", ["S", ("P", 1), ("C", 1)], key="k")
    b.op(
        idempotency_key="k",
        fingerprint=fingerprint("noop", b"", 0),
        outcome="fail",
        code="FAILED_PRECONDITION",
    )


def _ok_without_task_id(b: Builder) -> None:
    b.op(
        idempotency_key="k",
        fingerprint=fingerprint("noop", b"", 0),
        outcome="ok",
        value={"task_id": "", "created": True, "status": "PENDING"},
    )


def _created_dead(b: Builder) -> None:
    b.task("t1", "fail_always", [*_fail_always(5), "D"], key="k")
    b.history.operations[0].value = {"task_id": "t1", "created": True, "status": "DEAD"}


def _created_after_ack(b: Builder) -> None:
    b.task("t1", "noop", ["S", ("P", 1), ("C", 1)], key="k", created=False)
    b.op(
        idempotency_key="k",
        fingerprint=fingerprint("noop", b"", 5),
        task_id="t1",
        outcome="ok",
        value={"task_id": "t1", "created": True, "status": "PENDING"},
    )


def _resubmit_status_never_had(b: Builder) -> None:
    b.task("t1", "noop", ["S", ("P", 1), ("C", 1)], key="k")
    b.op(
        idempotency_key="k",
        fingerprint=fingerprint("noop", b"", 5),
        task_id="t1",
        outcome="ok",
        value={"task_id": "t1", "created": False, "status": "RETRYING"},
    )


def _abandoned_during_api_fault(b: Builder) -> None:
    api = b.window_open("down", "api")
    b.task("t1", "noop", ["S", ("P", 1), ("P", 2), ("C", 2)])
    b.window_close(api)


def _status_regresses(b: Builder) -> None:
    b.task("t1", "noop", ["S", ("P", 1), ("C", 1)])
    b.read("t1", "COMPLETED", 1)
    b.read("t1", "PROCESSING", 1)


def _history_shrinks(b: Builder) -> None:
    b.task("t1", "noop", ["S", ("P", 1), ("C", 1)])
    b.list_read("t1", 3)
    b.list_read("t1", 2)


def _history_rewritten(b: Builder) -> None:
    b.task("t1", "noop", ["S", ("P", 1), ("C", 1)])
    read = b.list_read("t1", 2)
    assert read.value is not None
    read.value["events"][1][2] = 7  # PROCESSING(7) seen, PROCESSING(1) in the end


def _attempts_zero_mid_run(b: Builder) -> None:
    b.task("t1", "noop", ["S", ("P", 1), ("C", 1)])
    b.read("t1", "PROCESSING", 0)


def _watch_closes_early(b: Builder) -> None:
    b.task("t1", "noop", ["S", ("P", 1), ("C", 1)])
    b.watch("t1", [("PENDING", 0), ("PROCESSING", 1)], end="OK")


def _empty_last_error(b: Builder) -> None:
    b.task("t1", "fail_always", [*_fail_always(5), "D"])
    snap = b.history.tasks["t1"]
    assert snap is not None
    b.history.tasks["t1"] = replace(snap, last_error="")


def _updated_before_created(b: Builder) -> None:
    b.task("t1", "noop", ["S", ("P", 1), ("C", 1)])
    snap = b.history.tasks["t1"]
    assert snap is not None
    b.history.tasks["t1"] = replace(snap, updated_at_ns=snap.created_at_ns - 1)


def _event_without_at(b: Builder) -> None:
    b.task("t1", "noop", ["S", ("P", 1), ("C", 1)])
    events = b.history.events["t1"]
    events[1] = replace(events[1], at_ns=0)


CASES: dict[str, tuple[Callable[[Builder], None], set[tuple[str, str | None]]]] = {
    "lost_submit": (_lost, {("lost_submit", "t1")}),
    "lost_submit_after_unknown": (_lost_after_unknown, {("lost_submit", "t1")}),
    "duplicate_task_for_key": (_duplicate, {("duplicate_task_for_key", "t2")}),
    "duplicate_in_snapshots": (_duplicate_seen_only_in_snapshots, {("duplicate_task_for_key", "t2")}),
    "created_twice": (_created_twice, {("created_twice", "t1")}),
    "first_not_submitted": (
        lambda b: b.task("t1", "noop", [("P", 1), ("C", 1)]),
        {("bad_history_shape", "t1")},
    ),
    "no_events": (
        _no_events,
        {("bad_history_shape", "t1")},
    ),
    "sequence_not_rising": (
        _sequence_not_rising,
        {("bad_history_shape", "t1")},
    ),
    "time_going_back": (
        _time_going_back,
        {("bad_history_shape", "t1")},
    ),
    "failed_twice": (
        lambda b: b.task(
            "t1",
            "fail_times",
            ["S", ("P", 1), ("F", 1), ("F", 1), ("P", 2), ("C", 2)],
            payload=b'{"times": 1}',
        ),
        {("illegal_transition", "t1")},
    ),
    "submitted_twice": (
        lambda b: b.task("t1", "noop", ["S", "S", ("P", 1), ("C", 1)]),
        {("illegal_transition", "t1")},
    ),
    "attempt_skipped": (
        lambda b: b.task(
            "t1", "fail_times", ["S", ("P", 1), ("F", 1), ("P", 3), ("C", 3)], payload=b'{"times": 1}'
        ),
        {("attempt_numbering", "t1")},
    ),
    "outcome_of_other_attempt": (
        lambda b: b.task("t1", "noop", ["S", ("P", 1), ("C", 2)]),
        {("attempt_numbering", "t1")},
    ),
    "attempt_beyond_max": (
        lambda b: b.task("t1", "fail_always", [*_fail_always(3), "D"], max_attempts=2),
        {("attempt_numbering", "t1"), ("dead_without_max_failures", "t1")},
    ),
    "dead_too_early": (
        lambda b: b.task("t1", "fail_always", [*_fail_always(3), "D"]),
        {("dead_without_max_failures", "t1")},
    ),
    "all_failed_but_not_dead": (
        lambda b: b.task("t1", "fail_always", _fail_always(5), status="DEAD"),
        {("dead_without_max_failures", "t1"), ("status_mismatch", "t1")},
    ),
    "double_completed": (
        lambda b: b.task("t1", "noop", ["S", ("P", 1), ("C", 1), ("C", 1)]),
        {("double_completed", "t1")},
    ),
    "event_after_completed": (
        lambda b: b.task("t1", "noop", ["S", ("P", 1), ("C", 1), ("P", 2)]),
        {("event_after_terminal", "t1")},
    ),
    "event_after_dead": (
        lambda b: b.task("t1", "fail_always", [*_fail_always(5), "D", ("P", 6)]),
        {("event_after_terminal", "t1")},
    ),
    "not_terminal": (lambda b: b.task("t1", "noop", ["S", ("P", 1)]), {("not_terminal", "t1")}),
    "status_disagrees": (
        lambda b: b.task("t1", "noop", ["S", ("P", 1), ("C", 1)], status="DEAD"),
        {("status_mismatch", "t1")},
    ),
    "attempts_disagree": (
        lambda b: b.task("t1", "noop", ["S", ("P", 1), ("C", 1)], attempts=2),
        {("status_mismatch", "t1")},
    ),
    "noop_failed_and_dead": (
        lambda b: b.task("t1", "noop", [*_fail_always(5), "D"]),
        {("wrong_outcome_for_type", "t1")},
    ),
    "echo_wrong_result": (
        lambda b: b.task("t1", "echo", ["S", ("P", 1), ("C", 1)], payload=b"abc", result=b"abd"),
        {("wrong_outcome_for_type", "t1")},
    ),
    "fail_always_completed": (
        lambda b: b.task("t1", "fail_always", ["S", ("P", 1), ("C", 1)]),
        {("wrong_outcome_for_type", "t1")},
    ),
    "fail_times_completed_early": (
        lambda b: b.task("t1", "fail_times", [*_fail_always(1), ("P", 2), ("C", 2)], payload=b'{"times": 2}'),
        {("wrong_outcome_for_type", "t1")},
    ),
    "fail_times_failed_late": (
        lambda b: b.task("t1", "fail_times", [*_fail_always(2), ("P", 3), ("C", 3)], payload=b'{"times": 1}'),
        {("wrong_outcome_for_type", "t1")},
    ),
    "fail_times_dead_instead_of_completing": (
        lambda b: b.task("t1", "fail_times", [*_fail_always(5), "D"], payload=b'{"times": 2}'),
        {("wrong_outcome_for_type", "t1")},
    ),
    "task_differs_from_request": (
        _task_differs_from_request,
        {("task_mismatch", "t1")},
    ),
    "not_collected": (
        _not_collected,
        {("not_collected", "t1")},
    ),
    "already_exists_for_same_request": (
        _already_exists_for_same_request,
        {("already_exists_for_same_request", "t1")},
    ),
    "read_not_found": (_read_not_found, {("read_not_found", "t1")}),
    "unhealthy_after_fault": (_unhealthy, {("unhealthy_after_fault", None)}),
    # The gaps of issue 9: each of these was clean before.
    "refuses_everything": (_refuses_everything, {("no_progress", None), ("unresolved_unknown", None)}),
    "unknown_never_resolved": (_unknown_never_resolved, {("unresolved_unknown", None)}),
    "final_submit_fails": (
        _final_submit_fails,
        {("final_submit_failed", None), ("unresolved_unknown", None)},
    ),
    "internal_during_backend_outage": (_internal_during_outage, {("forbidden_code", None)}),
    "unknown_to_a_read": (_unknown_to_a_read, {("forbidden_code", "t1")}),
    "failed_precondition_on_resubmit": (_failed_precondition, {("failed_valid_request", None)}),
    "ok_submit_without_task_id": (_ok_without_task_id, {("bad_submit_answer", None)}),
    "only_created_false": (
        lambda b: b.task("t1", "noop", ["S", ("P", 1), ("C", 1)], created=False),
        {("never_created", "t1")},
    ),
    "created_true_with_status_dead": (_created_dead, {("bad_submit_answer", "t1")}),
    "created_true_after_ack": (_created_after_ack, {("created_for_existing", "t1")}),
    "resubmit_status_never_had": (_resubmit_status_never_had, {("bad_submit_answer", "t1")}),
    "abandoned_detail_without_fault": (
        lambda b: b.task("t1", "noop", ["S", ("P", 1), ("F", 1, "attempt abandoned"), ("P", 2), ("C", 2)]),
        {("abandoned_without_fault", "t1")},
    ),
    "abandoned_five_times_without_fault": (
        lambda b: b.task(
            "t1", "fail_always", ["S", ("P", 1), ("P", 2), ("P", 3), ("P", 4), ("P", 5), ("F", 5), "D"]
        ),
        {("abandoned_without_fault", "t1")},
    ),
    "abandoned_during_api_fault_only": (_abandoned_during_api_fault, {("abandoned_without_fault", "t1")}),
    "max_attempts_reads_0": (
        lambda b: b.task("t1", "fail_always", [*_fail_always(7), "D"], max_attempts=0),
        {("bad_task_field", "t1"), ("attempt_numbering", "t1"), ("dead_without_max_failures", "t1")},
    ),
    "status_regresses_between_reads": (_status_regresses, {("read_went_back", "t1")}),
    "history_shrinks_between_reads": (_history_shrinks, {("read_went_back", "t1")}),
    "history_read_rewritten": (_history_rewritten, {("read_went_back", "t1")}),
    "attempts_0_while_processing": (_attempts_zero_mid_run, {("status_mismatch", "t1")}),
    "watch_closes_before_the_end": (_watch_closes_early, {("watch_ended_early", "t1")}),
    "failed_with_empty_detail": (
        lambda b: b.task(
            "t1", "fail_times", ["S", ("P", 1), ("F", 1, ""), ("P", 2), ("C", 2)], payload=b'{"times": 1}'
        ),
        {("bad_event_field", "t1")},
    ),
    "empty_last_error_after_failure": (_empty_last_error, {("bad_task_field", "t1")}),
    "updated_before_created": (_updated_before_created, {("bad_task_field", "t1")}),
    "event_without_at": (_event_without_at, {("bad_event_field", "t1")}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_anomaly_is_reported_with_rule_and_task(name: str) -> None:
    build, expected = CASES[name]
    b = Builder()
    build(b)

    anomalies = check(b.history)

    assert {(a.rule, a.task_id) for a in anomalies} == expected, anomalies
    for anomaly in anomalies:
        assert anomaly.rule in RULES
        assert anomaly.evidence
        if anomaly.task_id is not None and anomaly.rule != "duplicate_task_for_key":
            assert anomaly.idempotency_key in ("k", f"key-{anomaly.task_id}")


def test_forbidden_code_names_the_call_and_the_fault() -> None:
    b = Builder()
    _internal_during_outage(b)
    (anomaly,) = check(b.history)
    assert "op 0 submit key='k' answered INTERNAL" in anomaly.evidence
    assert "down on server_dynamodb" in anomaly.evidence


def test_liveness_counts_resolutions_and_the_fault_free_fraction() -> None:
    b = Builder()
    outage = b.window_open("down", "api")
    b.op(idempotency_key="a", fingerprint=fingerprint("noop", b"", 0), outcome="unknown", code="UNAVAILABLE")
    b.op(idempotency_key="b", fingerprint=fingerprint("noop", b"", 0), outcome="unknown", code="UNAVAILABLE")
    b.window_close(outage)
    b.task("ta", "noop", ["S", ("P", 1), ("C", 1)], key="a", created=False)
    b.task("tb", "noop", ["S", ("P", 1), ("C", 1)], key="b", created=True)
    b.op(idempotency_key="c", fingerprint=fingerprint("noop", b"", 0), outcome="unknown", code="UNAVAILABLE")
    live = liveness(b.history)
    assert (live.unknown_submits, live.resolved_existing, live.resolved_created_by_retry) == (3, 1, 1)
    assert live.unresolved == [len(b.history.operations) - 1]
    assert (live.offered_fault_free, live.acknowledged_fault_free) == (3, 2)
    assert live.to_json()["fraction_fault_free"] == round(2 / 3, 4)


def test_anomaly_in_a_big_clean_history_names_only_the_broken_task() -> None:
    history = clean_history()
    history.events["echo-1"].append(Event(99, "COMPLETED", 1, 2_000_000_000_000_000_000))
    assert [(a.rule, a.task_id) for a in check(history)] == [("double_completed", "echo-1")]


def test_duplicate_evidence_lists_both_tasks_and_key() -> None:
    b = Builder()
    _duplicate(b)
    (anomaly,) = check(b.history)
    assert anomaly.idempotency_key == "k"
    assert "t1" in anomaly.evidence and "t2" in anomaly.evidence


def test_lost_after_unknown_evidence_names_the_unknown_submit() -> None:
    b = Builder()
    _lost_after_unknown(b)
    (anomaly,) = check(b.history)
    assert "op 0 unknown DEADLINE_EXCEEDED" in anomaly.evidence


def test_anomalies_serialise_to_json() -> None:
    b = Builder()
    _lost(b)
    encoded = json.dumps([a.to_json() for a in check(b.history)])
    (anomaly,) = json.loads(encoded)
    assert set(anomaly) == {"rule", "meaning", "task_id", "idempotency_key", "evidence"}
    assert anomaly["rule"] == "lost_submit" and anomaly["meaning"] == RULES["lost_submit"]
