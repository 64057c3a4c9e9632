"""Unit tests of scenarios._checks: the history grammar of spec 4.3 and the transitions of spec 2.2."""

from __future__ import annotations

import pytest

from scenarios import _checks
from taskqueue_proto import taskqueue_pb2 as pb

_TYPES = {
    "S": pb.TASK_EVENT_TYPE_SUBMITTED,
    "P": pb.TASK_EVENT_TYPE_PROCESSING,
    "C": pb.TASK_EVENT_TYPE_COMPLETED,
    "F": pb.TASK_EVENT_TYPE_FAILED,
    "D": pb.TASK_EVENT_TYPE_DEAD,
}


def history(*codes: str) -> list[pb.TaskEvent]:
    """``history("S", "P1", "F1", "D")``: events with sequences 1, 2, ... and one second apart."""
    events = []
    for index, code in enumerate(codes, start=1):
        event = pb.TaskEvent(
            sequence=index,
            type=_TYPES[code[0]],
            attempt=int(code[1:] or 0),
            detail="boom" if code[0] == "F" else "",
        )
        event.at.FromSeconds(1_700_000_000 + index)
        events.append(event)
    return events


def fail_always(max_attempts: int) -> list[str]:
    codes = ["S"]
    for attempt in range(1, max_attempts + 1):
        codes += [f"P{attempt}", f"F{attempt}"]
    return [*codes, "D"]


@pytest.mark.parametrize(
    ("codes", "max_attempts"),
    [
        (["S"], None),
        (["S", "P1"], None),
        (["S", "P1", "C1"], 5),
        (["S", "P1", "F1", "P2", "C2"], 5),
        (["S", "P1", "F1"], 5),
        (fail_always(5), 5),
        (fail_always(1), 1),
        (["S", "P1", "P2", "C2"], 5),  # attempt 1 abandoned (spec 7.2)
        (["S", "P1", "F1", "P2", "P3", "F3", "D"], 3),
    ],
)
def test_legal_histories_have_no_violations(codes: list[str], max_attempts: int | None) -> None:
    assert _checks.history_violations(history(*codes), max_attempts=max_attempts) == []


@pytest.mark.parametrize(
    ("codes", "max_attempts", "expected"),
    [
        ([], None, "spec 3.1/4.3"),
        (["P1", "C1"], None, "must start with SUBMITTED"),
        (["S", "S"], None, "second SUBMITTED"),
        (["S", "C1"], None, "must follow the PROCESSING"),
        (["S", "P1", "C1", "C1"], None, "follows the terminal"),
        (["S", "P1", "C1", "P2"], None, "follows the terminal"),
        (["S", "P2", "C2"], None, "expected 1"),
        (["S", "P1", "F1", "P3"], None, "expected 2"),
        (["S", "P1", "F2"], None, "its PROCESSING was attempt 1"),
        (["S", "P1", "D"], None, "must follow the last FAILED"),
        (fail_always(4), 5, "must follow FAILED(max_attempts=5)"),
        (fail_always(6), 5, "beyond max_attempts 5"),
        (["S", "P1", "F1", "D", "P2"], None, "follows the terminal"),
        (["S", "P1", "C2"], None, "its PROCESSING was attempt 1"),
        (["S", "P0", "C0"], None, "from 1"),
    ],
)
def test_illegal_histories_name_the_rule(codes: list[str], max_attempts: int | None, expected: str) -> None:
    problems = _checks.history_violations(history(*codes), max_attempts=max_attempts)
    assert any(expected in problem for problem in problems), problems


def test_attempt_fields_spec_4_2_leaves_open_are_accepted() -> None:
    """SUBMITTED/DEAD with a non-zero attempt and COMPLETED with 0 are SHOULDs, not violations."""
    assert _checks.history_violations(history("S1", "P1", "C0")) == []
    assert _checks.history_violations(history("S", "P1", "F1", "D1"), max_attempts=1) == []


def test_sequence_must_increase_and_time_must_not_go_back() -> None:
    events = history("S", "P1", "C1")
    events[2].sequence = 2
    events[1].at.FromSeconds(1_600_000_000)
    problems = _checks.history_violations(events)
    assert any("sequence 2 follows 2" in problem for problem in problems), problems
    assert any("`at` earlier" in problem for problem in problems), problems


def test_failed_needs_a_detail() -> None:
    events = history("S", "P1", "F1")
    events[2].detail = ""
    assert any("empty detail" in problem for problem in _checks.history_violations(events))


def task(status: int, attempts: int = 1, last_error: str = "", updated_offset_s: int = 0) -> pb.Task:
    snapshot = pb.Task(task_id="t", status=status, attempts=attempts, max_attempts=5, last_error=last_error)  # type: ignore[arg-type]
    snapshot.created_at.FromSeconds(1_700_000_000)
    snapshot.updated_at.FromSeconds(1_700_000_000 + updated_offset_s)
    return snapshot


def test_terminal_task_agrees_with_its_history() -> None:
    assert _checks.terminal_task_violations(task(pb.TASK_STATUS_COMPLETED), history("S", "P1", "C1")) == []
    problems = _checks.terminal_task_violations(
        task(pb.TASK_STATUS_DEAD, attempts=2), history("S", "P1", "F1")
    )
    assert any("spec 4.5" in problem for problem in problems), problems
    assert any("last event is not DEAD" in problem for problem in problems), problems
    assert any("last_error is empty" in problem for problem in problems), problems
    assert any("spec 2.4" in p for p in _checks.terminal_task_violations(task(4, updated_offset_s=-1), []))


@pytest.mark.parametrize(
    "statuses",
    [
        [pb.TASK_STATUS_PENDING, pb.TASK_STATUS_PROCESSING, pb.TASK_STATUS_COMPLETED],
        [pb.TASK_STATUS_PENDING, pb.TASK_STATUS_COMPLETED],  # coalesced (spec 8.2)
        [pb.TASK_STATUS_RETRYING, pb.TASK_STATUS_RETRYING, pb.TASK_STATUS_DEAD],
        [pb.TASK_STATUS_PROCESSING, pb.TASK_STATUS_PROCESSING],
        [pb.TASK_STATUS_DEAD],
    ],
)
def test_legal_snapshot_sequences(statuses: list[int]) -> None:
    snapshots = [task(status, updated_offset_s=index) for index, status in enumerate(statuses)]
    assert _checks.snapshot_violations(snapshots) == []


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([pb.TASK_STATUS_PROCESSING, pb.TASK_STATUS_PENDING], "PROCESSING -> PENDING"),
        ([pb.TASK_STATUS_COMPLETED, pb.TASK_STATUS_PROCESSING], "follows the terminal"),
        ([pb.TASK_STATUS_COMPLETED, pb.TASK_STATUS_COMPLETED], "follows the terminal"),
        ([pb.TASK_STATUS_PENDING, pb.TASK_STATUS_UNSPECIFIED], "not a task status"),
    ],
)
def test_illegal_snapshot_sequences(statuses: list[int], expected: str) -> None:
    snapshots = [task(status, updated_offset_s=index) for index, status in enumerate(statuses)]
    problems = _checks.snapshot_violations(snapshots)
    assert any(expected in problem for problem in problems), problems


def test_reachability_follows_the_table() -> None:
    assert pb.TASK_STATUS_DEAD in _checks.REACHABLE[pb.TASK_STATUS_PENDING]
    assert pb.TASK_STATUS_PENDING not in _checks.REACHABLE[pb.TASK_STATUS_RETRYING]
    assert _checks.REACHABLE[pb.TASK_STATUS_COMPLETED] == {pb.TASK_STATUS_COMPLETED}


def test_format_events_is_readable() -> None:
    text = _checks.format_events(history("S", "P1", "F1", "D"))
    assert text == "#1 SUBMITTED, #2 PROCESSING(1), #3 FAILED(1) 'boom', #4 DEAD"
    assert _checks.status_name(99) == "<status 99>"


def test_require_fails_with_rule_and_what_was_seen() -> None:
    with pytest.raises(pytest.fail.Exception) as failure:
        _checks.require(False, "spec 4.4: exact noop history", events=history("S", "P1"))
    assert "spec 4.4" in str(failure.value)
    assert "#2 PROCESSING(1)" in str(failure.value)


def test_changed_fields_names_the_differences() -> None:
    before = task(pb.TASK_STATUS_COMPLETED)
    after = task(pb.TASK_STATUS_COMPLETED, updated_offset_s=5)
    after.payload = b"other"
    assert _checks.changed_fields(before, after) == ["payload", "updated_at"]
    assert _checks.changed_fields(before, after, ignore=("updated_at",)) == ["payload"]
