"""Unit tests of taskqueue_contract: names, the history grammar, field and observation rules."""

from __future__ import annotations

from typing import Any

import pytest

import taskqueue_contract as contract
from taskqueue_contract import Event, EventType, Status, Task
from taskqueue_proto import taskqueue_pb2 as pb

_CODES = {"S": EventType.SUBMITTED, "P": EventType.PROCESSING, "C": EventType.COMPLETED}
_CODES |= {"F": EventType.FAILED, "D": EventType.DEAD}
_T0 = 1_700_000_000_000_000_000


def history(*codes: str) -> list[Event]:
    """``history("S", "P1", "F1", "D")``: sequences 1, 2, ..., one second apart."""
    return [
        Event(
            index, _CODES[code[0]], int(code[1:] or 0), _T0 + index * 10**9, "boom" if code[0] == "F" else ""
        )
        for index, code in enumerate(codes, start=1)
    ]


def task(status: Status, attempts: int, *, max_attempts: int = 5, last_error: str = "") -> Task:
    return Task(
        "t", status, attempts, max_attempts, last_error=last_error, created_at_ns=_T0, updated_at_ns=_T0
    )


def rules(violations: list[contract.Violation]) -> set[tuple[str, str]]:
    return {(v.section, v.rule) for v in violations}


def test_names_terminal_set_and_transitions_follow_the_proto_and_spec_2_2() -> None:
    assert contract.status_name(pb.TASK_STATUS_COMPLETED) == "COMPLETED"
    assert contract.status_name(99) == "<status 99>"
    assert contract.event_name(pb.TASK_EVENT_TYPE_FAILED) == "FAILED"
    assert contract.status_from_name("DEAD") == pb.TASK_STATUS_DEAD
    assert contract.event_type_from_name("nonsense") == pb.TASK_EVENT_TYPE_UNSPECIFIED
    assert contract.TERMINAL == {pb.TASK_STATUS_COMPLETED, pb.TASK_STATUS_DEAD}
    assert (Status.PROCESSING, Status.PROCESSING) in contract.LEGAL_TRANSITIONS  # abandoned (7.2)
    assert Status.PENDING not in contract.REACHABLE[Status.RETRYING]
    assert contract.REACHABLE[Status.DEAD] == {Status.DEAD}
    assert contract.effective_max_attempts(0) == 5 and contract.effective_max_attempts(7) == 7


@pytest.mark.parametrize(
    ("codes", "max_attempts"),
    [
        (["S"], 5),
        (["S", "P1", "C1"], 5),
        (["S", "P1", "P2", "C2"], 5),  # attempt 1 abandoned, not recorded (7.2)
        (["S", "P1", "F1", "P2", "F2", "D"], 2),
        (["S1", "P1", "C0"], 5),  # SUBMITTED's attempt and COMPLETED's are SHOULDs (4.2)
        (["S", "P1", "F1", "D1"], 1),
    ],
)
def test_legal_histories(codes: list[str], max_attempts: int) -> None:
    assert contract.history_violations(history(*codes), max_attempts=max_attempts, final=True) == []


@pytest.mark.parametrize(
    ("codes", "max_attempts", "expected"),
    [
        ([], 5, ("3.1/4.3", "bad_history_shape")),
        (["P1", "C1"], 5, ("4.3", "bad_history_shape")),
        (["S", "S"], 5, ("4.3", "illegal_transition")),
        (["S", "F1"], 5, ("4.3", "illegal_transition")),
        (["S", "P2"], 5, ("4.3", "attempt_numbering")),
        (["S", "P1", "C2"], 5, ("4.2", "attempt_numbering")),
        (["S", "P1", "F1", "P2"], 1, ("5.4", "attempt_numbering")),
        (["S", "P1", "D"], 5, ("5.3", "dead_without_max_failures")),
        (["S", "P1", "F1", "D"], 2, ("4.3/5.4", "dead_without_max_failures")),
        (["S", "P1", "C1", "C1"], 5, ("7.1", "double_completed")),
        (["S", "P1", "C1", "P2"], 5, ("2.3", "event_after_terminal")),
        (["S", "P1", "F1"], 1, ("5.3", "dead_without_max_failures")),  # final, no DEAD
    ],
)
def test_illegal_histories_carry_their_section(
    codes: list[str], max_attempts: int, expected: tuple[str, str]
) -> None:
    found = contract.history_violations(history(*codes), max_attempts=max_attempts, final=True)
    assert expected in rules(found), found
    assert all(str(v).startswith(f"spec {v.section}: ") for v in found)
    assert all(v.rule in contract.RULES for v in found)


def test_event_fields_at_and_failed_detail() -> None:
    events = history("S", "P1", "F1")
    events[1] = Event(2, EventType.PROCESSING, 1, None)
    events[2] = Event(3, EventType.FAILED, 1, _T0 + 3 * 10**9, "")
    assert rules(contract.history_violations(events)) == {
        ("4.1", "bad_event_field"),
        ("4.2", "bad_event_field"),
    }
    backwards = history("S", "P1")
    backwards[1] = Event(2, EventType.PROCESSING, 1, _T0)
    assert ("4.1", "bad_history_shape") in rules(contract.history_violations(backwards))


def test_proto_messages_are_accepted_as_they_are() -> None:
    event = pb.TaskEvent(sequence=1, type=pb.TASK_EVENT_TYPE_SUBMITTED)
    assert rules(contract.history_violations([event])) == {("4.1", "bad_event_field")}  # no `at`
    message = pb.Task(task_id="t", status=pb.TASK_STATUS_PENDING, max_attempts=5)
    assert rules(contract.task_field_violations(message)) == {("2.1", "bad_task_field")}  # no timestamps


def test_task_field_rules() -> None:
    assert contract.task_field_violations(task(Status.PENDING, 0)) == []
    late = Task("t", Status.PENDING, 0, 5, created_at_ns=_T0, updated_at_ns=_T0 - 1)
    assert rules(contract.task_field_violations(late)) == {("2.4", "bad_task_field")}
    assert ("3.2", "bad_task_field") in rules(
        contract.task_field_violations(task(Status.PENDING, 0, max_attempts=0))
    )
    assert ("2.1", "bad_task_field") in rules(contract.task_field_violations(Task("", Status.PENDING, 0, 5)))
    assert ("4.5", "status_mismatch") in rules(contract.task_field_violations(task(Status.PENDING, 1)))
    assert ("4.5", "status_mismatch") in rules(contract.task_field_violations(task(Status.PROCESSING, 0)))


def test_a_terminal_task_matches_the_end_of_its_history() -> None:
    done = history("S", "P1", "F1", "P2", "C2")
    assert contract.task_history_violations(task(Status.COMPLETED, 2, last_error="boom"), done) == []
    found = contract.task_history_violations(task(Status.DEAD, 3), done)
    assert rules(found) == {
        ("2.2/4.3", "status_mismatch"),
        ("4.5", "status_mismatch"),
        ("2.4", "bad_task_field"),
    }


def test_attempts_equal_processing_events_at_every_read() -> None:
    later = history("S", "P1", "F1", "P2", "C2")
    assert contract.task_history_violations(task(Status.RETRYING, 1, last_error="boom"), later) == []
    assert contract.task_history_violations(task(Status.PROCESSING, 2, last_error="boom"), later) == []
    (wrong,) = contract.task_history_violations(task(Status.PROCESSING, 0), later)
    assert (wrong.section, wrong.rule) == ("2.2/4.5", "status_mismatch")
    (no_error,) = contract.task_history_violations(task(Status.RETRYING, 1), later)
    assert (no_error.section, no_error.rule) == ("2.4", "bad_task_field")


def test_observed_reads_must_be_prefixes_and_never_go_back() -> None:
    final = history("S", "P1", "F1", "P2", "C2")
    good: list[Any] = [task(Status.PENDING, 0), final[:2], task(Status.RETRYING, 1, last_error="boom"), final]
    assert contract.observed_violations(good, final, max_attempts=5) == []
    back = [task(Status.PROCESSING, 2, last_error="boom"), task(Status.RETRYING, 1, last_error="boom")]
    assert rules(contract.observed_violations(back, final, max_attempts=5)) == {("8.4", "read_went_back")}
    rewritten = [*final[:2], Event(3, EventType.FAILED, 1, _T0, "other")]
    assert rules(contract.prefix_violations(rewritten, final)) == {("8.4", "read_went_back")}
    assert rules(contract.prefix_violations(final, final[:3])) == {("8.4", "read_went_back")}


def test_snapshots_of_one_reader_move_forward() -> None:
    coalesced = [task(Status.PENDING, 0), task(Status.COMPLETED, 1)]
    assert contract.snapshot_violations(coalesced) == []
    backwards = [task(Status.PROCESSING, 2), task(Status.PENDING, 0)]
    assert rules(contract.snapshot_violations(backwards)) == {
        ("2.2", "read_went_back"),
        ("8.4", "read_went_back"),
    }
    after_end = [task(Status.COMPLETED, 1), task(Status.COMPLETED, 1)]
    assert contract.snapshot_violations(after_end) == []  # a terminal task read twice
    assert rules(contract.snapshot_violations(after_end, stream=True)) == {("2.3/8.2", "read_went_back")}
    changed = [task(Status.COMPLETED, 1), task(Status.COMPLETED, 2)]
    assert rules(contract.snapshot_violations(changed)) == {("2.3", "event_after_terminal")}
