"""The reads a run made, checked against each task's final history (docs/spec.md 2.4, 4.5, 8.2, 8.4).

Every GetTask, ListTaskEvents and WatchTask answer is recorded in full (compactly) in its
operation. Each one must be something the task's final history passed through: a history read is
a prefix of the final one, a snapshot one of its states (so ``attempts`` equals the PROCESSING
events at every read) with the field rules of one snapshot. A read that began after another read
of the same task had ended never shows an earlier state (8.4). A watch stream that closed OK ends
with the terminal snapshot, equal to the final task (8.2).

Reported once per task and rule (the evidence counts the others), so a server that breaks a rule
at every read gives one line per task, not thousands.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import taskqueue_contract as contract
from fault_injection._history import DETAIL_KEPT, Event, History, Operation, read_events, read_task

__all__ = ["check_reads"]

_READ_KINDS = ("get", "list_events", "watch")


@dataclass(frozen=True)
class _Seen:
    """One read placed among the final history's states."""

    op: Operation
    first: int
    last: int
    label: str


def _final_timeline(events: list[Event]) -> list[contract.Event]:
    """The final history as a read would have recorded it (details shortened alike)."""
    return [replace(ev.to_contract(), detail=ev.detail[:DETAIL_KEPT]) for ev in events]


def check_reads(history: History, report: Callable[[str, str | None, str], None]) -> None:
    """Report (rule, task_id, evidence) for every read that breaks a rule; see the module docstring."""
    by_task: dict[str, list[Operation]] = {}
    for op in history.operations:
        if op.kind in _READ_KINDS and op.outcome == "ok" and op.task_id and op.value:
            by_task.setdefault(op.task_id, []).append(op)
    for task_id, ops in by_task.items():
        snap = history.tasks.get(task_id)
        events = history.events.get(task_id)
        if snap is None or events is None:
            continue  # lost or not collected: reported by the task rules
        final = _final_timeline(events)
        max_attempts = snap.max_attempts if 1 <= snap.max_attempts <= contract.MAX_MAX_ATTEMPTS else None
        walk = contract.walk_history(final, max_attempts)
        _check_task_reads(task_id, ops, final, walk, report)


def _check_task_reads(
    task_id: str,
    ops: list[Operation],
    final: list[contract.Event],
    walk: contract.HistoryWalk,
    report: Callable[[str, str | None, str], None],
) -> None:
    problems: dict[str, list[str]] = {}

    def note(rule: str, text: str) -> None:
        problems.setdefault(rule, []).append(text)

    seen: list[_Seen] = []
    for op in ops:
        value = op.value or {}
        where = f"op {op.id} {op.kind}"
        if op.kind == "list_events" and "events" in value:
            history = read_events(value["events"])
            for violation in contract.prefix_violations(history, final):
                note(violation.rule, f"{where} ({len(history)} events): {violation}")
            position = contract.state_index(history, walk)
            if position is not None:
                seen.append(_Seen(op, position, position, f"{where} ({len(history)} events)"))
            continue
        compact = [value["task"]] if op.kind == "get" and "task" in value else value.get("snapshots", [])
        snapshots = [read_task(task_id, item) for item in compact]
        violations = contract.snapshot_violations(snapshots, stream=True) if op.kind == "watch" else []
        for snapshot in snapshots:
            violations += contract.task_field_violations(snapshot)
            violations += contract.task_history_violations(snapshot, final, walk=walk)
        for violation in dict.fromkeys(violations):
            note(violation.rule, f"{where}: {violation}")
        end_state = walk.states[-1] if walk.terminal is not None and walk.states else None
        if op.kind == "watch" and value.get("end") == "OK" and end_state is not None:
            last = snapshots[-1] if snapshots else None
            if last is None or (last.status, last.attempts) != (end_state.status, end_state.attempts):
                shown = last.label() if last is not None else "no snapshot"
                ended = f"{contract.status_name(end_state.status)} attempts={end_state.attempts}"
                note(
                    "watch_ended_early",
                    f"{where} closed OK after {shown}; spec 8.2: the last snapshot is the terminal one "
                    f"(the history ends {ended})",
                )
        positions = [p for p in (contract.state_index(s, walk) for s in snapshots) if p is not None]
        if positions:
            label = f"{where} ({', '.join(s.label() for s in snapshots[:1] + snapshots[1:][-1:])})"
            seen.append(_Seen(op, positions[0], positions[-1], label))
    for earlier in seen:
        for later in seen:
            end = earlier.op.complete_ns
            if end is not None and later.op.invoke_ns > end and later.first < earlier.last:
                note(
                    "read_went_back",
                    f"spec 8.4: {later.label} began after {earlier.label} had ended, "
                    "and shows an earlier state",
                )
    for rule, texts in problems.items():
        more = f" (and {len(texts) - 1} more reads of this task)" if len(texts) > 1 else ""
        report(rule, task_id, texts[0] + more)
