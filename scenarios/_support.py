"""Small async helpers the scenarios share: barriers, watching, waiting, exact histories."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import grpc
import grpc.aio

from pytest_taskqueue import MAX_PAYLOAD_LIMIT, RETRYABLE, WaitTimeout
from scenarios._checks import (
    TERMINAL,
    event_name,
    finished_task_violations,
    format_statuses,
    require,
    require_none,
    violated,
)
from taskqueue_contract import observed_violations
from taskqueue_proto import taskqueue_pb2 as pb

if TYPE_CHECKING:
    from pytest_taskqueue import RETRYABLE, TestHarness

LARGEST_PAYLOAD_LIMIT = MAX_PAYLOAD_LIMIT
"""Spec 8.3: max_payload_bytes MUST NOT exceed 4 MiB, the largest limit the toolkit tests."""

Code = tuple[int, int]
"""An event as (type, attempt), for exact history comparisons."""

SUBMITTED: Code = (pb.TASK_EVENT_TYPE_SUBMITTED, 0)
DEAD: Code = (pb.TASK_EVENT_TYPE_DEAD, 0)


def processing(attempt: int) -> Code:
    return (pb.TASK_EVENT_TYPE_PROCESSING, attempt)


def completed(attempt: int) -> Code:
    return (pb.TASK_EVENT_TYPE_COMPLETED, attempt)


def failed(attempt: int) -> Code:
    return (pb.TASK_EVENT_TYPE_FAILED, attempt)


def shape(events: Sequence[pb.TaskEvent]) -> list[Code]:
    """The history as (type, attempt) pairs, with the attempt fields spec 4.2 leaves open normalised.

    SUBMITTED and DEAD SHOULD carry attempt 0 but may carry another number, and COMPLETED may carry 0
    instead of its attempt: those are compared as if they followed the SHOULD.
    """
    codes: list[Code] = []
    current = 0
    for event in events:
        attempt = event.attempt
        if event.type == pb.TASK_EVENT_TYPE_PROCESSING:
            current = attempt
        elif event.type in (pb.TASK_EVENT_TYPE_SUBMITTED, pb.TASK_EVENT_TYPE_DEAD):
            attempt = 0
        elif event.type == pb.TASK_EVENT_TYPE_COMPLETED and attempt == 0:
            attempt = current
        codes.append((event.type, attempt))
    return codes


def format_codes(codes: Sequence[Code]) -> str:
    """``SUBMITTED, PROCESSING(1), COMPLETED(1)``."""
    return ", ".join(
        event_name(kind) + (f"({attempt})" if kind not in (SUBMITTED[0], DEAD[0]) else "")
        for kind, attempt in codes
    )


def failing_history(failures: int, *, then: Code | None) -> list[Code]:
    """SUBMITTED, then ``failures`` attempts PROCESSING(n) FAILED(n), then ``then`` as the next step.

    ``then=DEAD`` ends the history with DEAD; ``then=completed(n)`` adds PROCESSING(n), COMPLETED(n).
    """
    codes = [SUBMITTED]
    for attempt in range(1, failures + 1):
        codes += [processing(attempt), failed(attempt)]
    if then == DEAD:
        codes.append(DEAD)
    elif then is not None:
        codes += [processing(then[1]), then]
    return codes


MID_ATTEMPT_SLEEP_MS = 600
"""A ``sleep`` a scenario kills the worker in the middle of (spec 7.2). It only has to outlast the
moment between the PROCESSING snapshot and the kill, which the scenario checks after the kill (each
set-up try sleeps longer); it runs again in full once the worker is back, so it is kept short, and
under a 1 s visibility timeout, so that a second PROCESSING comes from the kill and not from a
redelivery of a live attempt."""


def mid_attempt_sleep_ms(attempt: int) -> int:
    """The ``sleep`` of set-up try ``attempt`` (1, 2, 3): 600, 900, 1350 ms."""
    return int(MID_ATTEMPT_SLEEP_MS * 1.5 ** (attempt - 1))


def first_attempt_cut_short(events: Sequence[pb.TaskEvent]) -> bool:
    """Attempt 1 started and did not complete: a kill landed in its middle (the set-up of spec 7.2).

    Read right after the kill, or once a killed API process that runs the work is back (attempt 2
    may have started or finished by then: attempt 1 still shows no COMPLETED).
    """
    codes = shape(events)
    return processing(1) in codes and completed(1) not in codes


QUIET_MS = 300
"""How long ``barrier`` lets pass before a scenario looks again for something that must not happen:
long enough for work the call just made started on the side (a message sent after its answer) to
show up. A rerun that comes later still breaks the history for good, and the closing sweep, which
re-reads every task at least a visibility timeout after the last was created, reports it naming the
scenario that created the task (spec 2.3: an event after a terminal one)."""


async def barrier(harness: TestHarness) -> None:
    """Wait until a later task on the same queue has completed AND ``QUIET_MS`` have passed.

    Used before re-reading a history to check that something did NOT happen (no rerun, no new
    event): work queued before the barrier had its chance to run by the time a task submitted
    after it completes, and work started on the side a moment later had time to show up (later
    reruns are the closing sweep's, see ``QUIET_MS``). The barrier task is a ``sleep`` of
    ``QUIET_MS``; the wait is measured on this client's clock too, so a ``sleep`` that returns early
    cannot shorten it (that breaks spec 6.2).
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    sentinel = await harness.submit(
        "sleep", json.dumps({"ms": QUIET_MS}).encode(), key=harness.key("barrier")
    )
    await harness.wait_for_status(sentinel.task_id, pb.TASK_STATUS_COMPLETED)
    waited_ms = (loop.time() - started) * 1000
    require(
        waited_ms >= QUIET_MS,
        f"spec 6.2: a sleep of {QUIET_MS} ms completes no sooner than {QUIET_MS} ms after its submit",
        seen=f"the barrier's sleep task {sentinel.task_id} completed {waited_ms:.0f} ms after its submit",
    )


async def watch_all(
    harness: TestHarness,
    task_id: str,
    rule: str,
    on_snapshot: Callable[[pb.Task], Awaitable[None]] | None = None,
    *,
    faulted: bool = False,
) -> list[pb.Task]:
    """Every snapshot WatchTask sends until the server closes the stream (``on_snapshot`` sees each).

    Fails naming ``rule`` when the stream ends in an error before its terminal snapshot, or is
    still open after ``harness.timeout`` seconds (spec 8.2: while the backends are reachable a
    stream runs to its terminal snapshot and closes with OK). Only a scenario that broke a link
    itself passes ``faulted=True``: then a stream that ends UNAVAILABLE is opened again (8.2 lets
    the implementation end it when a backend fails) and its first snapshot is the current one.
    """
    snapshots: list[pb.Task] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + harness.timeout
    while True:
        stream = harness.api.watch(task_id)
        try:
            async with asyncio.timeout_at(deadline):
                async for snapshot in stream:
                    snapshots.append(snapshot)
                    if on_snapshot is not None:
                        await on_snapshot(snapshot)
            return snapshots
        except TimeoutError:
            violated(
                rule,
                seen=f"the stream was still open after {harness.timeout:g}s; statuses so far: "
                f"{format_statuses(snapshots)}",
            )
        except grpc.aio.AioRpcError as error:
            ended = bool(snapshots) and snapshots[-1].status in TERMINAL
            if not faulted or error.code() not in RETRYABLE or ended or loop.time() >= deadline:
                violated(
                    rule,
                    seen=f"the stream ended with {error.code().name}: {error.details()!r} after "
                    f"{format_statuses(snapshots)} (nothing was down: spec 8.2 forbids ending early)",
                )
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()


_REACHES_TERMINAL = "spec 7.3: a task answered with a task_id reaches a terminal status"


async def finished(
    harness: TestHarness, task_id: str, rule: str = _REACHES_TERMINAL
) -> tuple[pb.Task, list[pb.TaskEvent]]:
    """Wait until the task is terminal, then read it and its history; fails naming ``rule`` if it never is."""
    try:
        await harness.wait_for_terminal(task_id)
    except WaitTimeout as error:
        violated(rule, seen=str(error))
    return await harness.get(task_id), await harness.events(task_id)


def require_history(
    events: Sequence[pb.TaskEvent], expected: Sequence[Code], rule: str, task: pb.Task | None = None
) -> None:
    """The history has exactly these (type, attempt) events, in this order."""
    require(
        shape(events) == list(expected),
        rule,
        seen="expected " + format_codes(expected),
        task=task,
        events=events,
    )


Read = pb.Task | list[pb.TaskEvent]
"""One read of a task: a snapshot (GetTask, a WatchTask message) or a history (ListTaskEvents)."""


async def poll_until_terminal(harness: TestHarness, task_id: str) -> list[Read]:
    """Read the task over and over, ListTaskEvents then GetTask, until GetTask shows it terminal.

    Returns every read in the order made, for ``read_violations``: a history read just before a
    snapshot bounds what the snapshot may show (spec 8.4), so a status or attempt count that lags
    behind the history is caught whenever a read lands between two of its events.
    """
    reads: list[Read] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + harness.timeout
    while loop.time() < deadline:
        reads.append(await harness.events(task_id))
        task = await harness.get(task_id)
        reads.append(task)
        if task.status in TERMINAL:
            return reads
    violated(
        _REACHES_TERMINAL,
        seen=f"GetTask still showed {format_statuses([r for r in reads if isinstance(r, pb.Task)][-1:])} "
        f"after {harness.timeout:g}s",
    )


def read_violations(reads: Sequence[Read], final: Sequence[pb.TaskEvent], max_attempts: int) -> list[str]:
    """Every way one reader's reads break spec 8.4/4.5/5.1 against the task's final history.

    Each snapshot must be a state the final history passed through (attempts = PROCESSING events
    so far, RETRYING between FAILED(n) and PROCESSING(n+1)), each history a prefix of the final
    one, and no read may show an earlier state than a read before it. Also spec 5.1: two snapshots
    in a row that show PROCESSING of the same attempt with different ``last_error`` mean that a
    failure was recorded while the task stayed PROCESSING instead of RETRYING.
    """
    problems = [str(v) for v in observed_violations(reads, final, max_attempts=max_attempts)]
    snapshots = [read for read in reads if isinstance(read, pb.Task)]
    for number, (before, after) in enumerate(itertools.pairwise(snapshots), start=2):
        same_attempt = before.attempts == after.attempts
        both_processing = before.status == after.status == pb.TASK_STATUS_PROCESSING
        if both_processing and same_attempt and before.last_error != after.last_error:
            problems.append(
                f"spec 5.1: snapshot {number} shows last_error {after.last_error[:60]!r} while attempt "
                f"{after.attempts} is still PROCESSING (a failed attempt leaves the task RETRYING)"
            )
    return problems


def require_completed_once(task: pb.Task, events: Sequence[pb.TaskEvent], rule: str) -> None:
    """The task is COMPLETED with exactly one COMPLETED event and a well-formed history.

    Attempts abandoned on the way (spec 7.2: a slow or lost worker, e.g. on a loaded machine) are
    allowed; a second run after the task finished is not (2.3, 7.1).
    """
    problems = finished_task_violations(task, events)
    completions = sum(1 for event in events if event.type == pb.TASK_EVENT_TYPE_COMPLETED)
    if task.status != pb.TASK_STATUS_COMPLETED or completions != 1:
        problems.append(
            f"spec 7.1: status {task.status}, {completions} COMPLETED events; exactly one expected"
        )
    require_none(problems, rule, task=task, events=events)
