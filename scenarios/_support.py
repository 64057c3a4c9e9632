"""Small async helpers the scenarios share: barriers, watching, waiting, exact histories."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import grpc
import grpc.aio

from pytest_taskqueue import MAX_PAYLOAD_LIMIT, WaitTimeout
from scenarios._calls import RETRYABLE, get_events, get_task, submit
from scenarios._checks import TERMINAL, event_name, format_statuses, require, violated
from taskqueue_proto import taskqueue_pb2 as pb

if TYPE_CHECKING:
    from pytest_taskqueue import TestHarness

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


async def barrier(harness: TestHarness) -> None:
    """Submit a fresh noop and wait until it completes.

    Used before re-reading a history to check that something did NOT happen: work queued before
    the barrier had its chance to show up by the time the barrier task completes.
    """
    sentinel = await submit(harness, "noop", key=harness.key("barrier"))
    await harness.wait_for_status(sentinel.task_id, pb.TASK_STATUS_COMPLETED)


async def watch_all(
    harness: TestHarness,
    task_id: str,
    rule: str,
    on_snapshot: Callable[[pb.Task], Awaitable[None]] | None = None,
) -> list[pb.Task]:
    """Every snapshot WatchTask sends until the server closes the stream (``on_snapshot`` sees each).

    A stream that breaks with UNAVAILABLE before the terminal snapshot (a slow backend, spec 9) is
    opened again; its first snapshot is then the current one. Fails naming ``rule`` when the stream
    ends in another error, or is still open after ``harness.timeout`` seconds (spec 8.2: it closes
    with OK after the terminal snapshot).
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
            if error.code() not in RETRYABLE or ended or loop.time() >= deadline:
                violated(
                    rule,
                    seen=f"the stream ended with {error.code().name}: {error.details()!r} after "
                    f"{format_statuses(snapshots)}",
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
    return await get_task(harness, task_id), await get_events(harness, task_id)


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
