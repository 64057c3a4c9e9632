"""WatchTask (spec 8.2): the current snapshot first, one per change, the terminal one last, then OK."""

from __future__ import annotations

import asyncio
import json

import pytest

from pytest_taskqueue import TestHarness
from scenarios._checks import (
    REACHABLE,
    TERMINAL,
    changed_fields,
    format_statuses,
    require,
    require_none,
    snapshot_violations,
    status_name,
)
from scenarios._support import finished, read_violations, watch_all
from taskqueue_proto import taskqueue_pb2 as pb

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.watch]

_CLOSES = "spec 8.2: WatchTask closes the stream with status OK after sending a terminal snapshot"


@pytest.mark.required
@pytest.mark.spec("8.2", "2.2")
@pytest.mark.parametrize(
    ("task_type", "payload", "final"),
    [
        ("sleep", b'{"ms": 300}', pb.TASK_STATUS_COMPLETED),
        ("fail_times", b'{"times": 1}', pb.TASK_STATUS_COMPLETED),
        ("fail_always", b"", pb.TASK_STATUS_DEAD),
    ],
    ids=["sleep", "fail_times", "fail_always"],
)
async def test_watch_streams_to_the_terminal_state(
    harness: TestHarness, task_type: str, payload: bytes, final: int
) -> None:
    """spec 8.2, 2.2: snapshots follow legal transitions to the terminal one; the stream then closes OK."""
    answer = await harness.submit(task_type, payload, max_attempts=2)
    before = await harness.get(answer.task_id)
    snapshots = await watch_all(harness, answer.task_id, _CLOSES)
    require(snapshots, "spec 8.2: WatchTask sends the current snapshot first", seen="no snapshot at all")
    statuses = format_statuses(snapshots)
    problems = snapshot_violations(snapshots)
    if snapshots[0].status not in REACHABLE.get(before.status, ()):
        problems.append(
            f"spec 8.2: the first snapshot ({status_name(snapshots[0].status)}) is older than the status "
            f"GetTask answered before the watch ({status_name(before.status)})"
        )
    if any(snapshot.task_id != answer.task_id for snapshot in snapshots):
        problems.append("spec 8.2: a snapshot is of another task")
    if snapshots[-1].status != final:
        problems.append(
            f"spec 8.2: last snapshot {status_name(snapshots[-1].status)}, expected {status_name(final)}"
        )
    require_none(
        problems, f"spec 8.2/2.2: WatchTask streams legal snapshots to the terminal one ({statuses})"
    )
    task, events = await finished(harness, answer.task_id)
    require_none(
        read_violations(snapshots, events, task.max_attempts),
        "spec 8.4/4.5: every snapshot is a state the task's history passed through (attempts = "
        "PROCESSING events so far), none earlier than the one before it",
        task=task,
        events=events,
    )
    last = snapshots[-1]
    require(
        (last.status, last.attempts, last.result, last.last_error)
        == (task.status, task.attempts, task.result, task.last_error),
        "spec 8.2: the last snapshot is the terminal task",
        seen=f"last snapshot status={status_name(last.status)} attempts={last.attempts}",
        task=task,
        events=events,
    )


@pytest.mark.required
@pytest.mark.spec("8.2")
@pytest.mark.parametrize("task_type", ["noop", "fail_always"])
async def test_watching_a_terminal_task_sends_one_snapshot(harness: TestHarness, task_type: str) -> None:
    """spec 8.2: watching a task that is already terminal sends one snapshot and closes with OK."""
    answer = await harness.submit(task_type, max_attempts=1)
    task, events = await finished(harness, answer.task_id)
    snapshots = await watch_all(harness, answer.task_id, _CLOSES)
    require(
        len(snapshots) == 1 and snapshots[0].status in TERMINAL and not changed_fields(task, snapshots[0]),
        "spec 8.2: watching a terminal task sends exactly one snapshot, the task as it is",
        seen=f"{len(snapshots)} snapshots: {format_statuses(snapshots)}"
        + (f"; fields unlike GetTask: {changed_fields(task, snapshots[0])}" if snapshots else ""),
        task=task,
        events=events,
    )


@pytest.mark.required
@pytest.mark.spec("8.2")
async def test_concurrent_watchers_all_see_the_end(harness: TestHarness) -> None:
    """spec 8.2: several watchers of one task each get the terminal snapshot and a closed stream."""
    answer = await harness.submit("sleep", json.dumps({"ms": 200}).encode())
    results = await asyncio.gather(*(watch_all(harness, answer.task_id, _CLOSES) for _ in range(4)))
    ends = [status_name(snapshots[-1].status) if snapshots else "none" for snapshots in results]
    require(
        all(snapshots and snapshots[-1].status == pb.TASK_STATUS_COMPLETED for snapshots in results),
        "spec 8.2: every watcher's last snapshot is the terminal one",
        seen=f"last statuses: {ends}",
    )
