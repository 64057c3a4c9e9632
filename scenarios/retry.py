"""Retries (spec 5): failed attempts are recorded and retried up to max_attempts, then the task is DEAD."""

from __future__ import annotations

import asyncio
import json

import pytest

from pytest_taskqueue import TestHarness
from scenarios._checks import (
    attempts_of,
    finished_task_violations,
    require,
    require_none,
)
from scenarios._support import (
    DEAD,
    completed,
    failing_history,
    finished,
    poll_until_terminal,
    read_violations,
    require_history,
    watch_all,
)
from taskqueue_proto import taskqueue_pb2 as pb

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.retry]


_READ_FAILURES = 6
"""Failed attempts (so retry windows) of the task whose reads are checked."""
_POLLERS = 3
"""Readers polling at once: a short backoff is a short window, and each has a chance to land in it."""


def _times(count: int) -> bytes:
    return json.dumps({"times": count}).encode()


@pytest.mark.required
@pytest.mark.spec("5.3", "5.4")
@pytest.mark.parametrize(
    ("submitted", "effective"), [(0, 5), (1, 1), (3, 3)], ids=["default", "one", "three"]
)
async def test_fail_always_is_dead_after_exactly_max_attempts(
    harness: TestHarness, submitted: int, effective: int
) -> None:
    """spec 5.3, 5.4: fail_always ends DEAD after exactly max_attempts FAILED (1..n), DEAD after FAILED(n)."""
    answer = await harness.submit("fail_always", max_attempts=submitted)
    task, events = await finished(harness, answer.task_id)
    rule = (
        f"spec 5.3: fail_always, max_attempts={submitted}: DEAD after exactly {effective} failed attempt(s)"
    )
    require(task.status == pb.TASK_STATUS_DEAD and task.attempts == effective, rule, task=task, events=events)
    require_history(events, failing_history(effective, then=DEAD), rule, task)


@pytest.mark.required
@pytest.mark.spec("5.1", "2.4", "4.2")
async def test_failed_attempts_record_their_error(harness: TestHarness) -> None:
    """spec 5.1, 2.4, 4.2: every FAILED carries its attempt and a non-empty detail; last_error is set."""
    answer = await harness.submit("fail_always", max_attempts=2)
    task, events = await finished(harness, answer.task_id)
    problems = finished_task_violations(task, events)
    if not task.last_error:
        problems.append("spec 2.4/5.1: last_error is empty after failed attempt(s)")
    if attempts_of(events, pb.TASK_EVENT_TYPE_FAILED) != [1, 2]:
        problems.append(
            f"spec 5.1: FAILED attempts are {attempts_of(events, pb.TASK_EVENT_TYPE_FAILED)}, not [1, 2]"
        )
    require_none(
        problems,
        "spec 5.1: a failed attempt appends FAILED(n) with its error and sets last_error",
        task=task,
        events=events,
    )


@pytest.mark.required
@pytest.mark.spec("6", "5.1")
@pytest.mark.parametrize("times", [0, 1, 2])
async def test_fail_times_completes_on_the_next_attempt(harness: TestHarness, times: int) -> None:
    """spec 6, 5.1: fail_times {"times": N} fails attempts 1..N and completes on attempt N+1."""
    answer = await harness.submit("fail_times", _times(times))
    task, events = await finished(harness, answer.task_id)
    rule = f"spec 6/5.1: fail_times {{'times': {times}}} completes on attempt {times + 1}"
    require(
        task.status == pb.TASK_STATUS_COMPLETED and task.attempts == times + 1,
        rule,
        task=task,
        events=events,
    )
    require_history(events, failing_history(times, then=completed(times + 1)), rule, task)
    if times:
        require(task.last_error, "spec 2.4: last_error is non-empty once an attempt has failed", task=task)


@pytest.mark.required
@pytest.mark.spec("5.3", "5.4")
@pytest.mark.parametrize(("times", "max_attempts"), [(2, 2), (5, 3)], ids=["times-equal", "times-above"])
async def test_fail_times_beyond_max_attempts_is_dead(
    harness: TestHarness, times: int, max_attempts: int
) -> None:
    """spec 5.3, 5.4: when fail_times needs more attempts than max_attempts allows, the task ends DEAD."""
    answer = await harness.submit("fail_times", _times(times), max_attempts=max_attempts)
    task, events = await finished(harness, answer.task_id)
    rule = (
        f"spec 5.4: fail_times {times} with max_attempts={max_attempts} is DEAD after {max_attempts} attempts"
    )
    require(
        task.status == pb.TASK_STATUS_DEAD and task.attempts == max_attempts, rule, task=task, events=events
    )
    require_history(events, failing_history(max_attempts, then=DEAD), rule, task)


@pytest.mark.required
@pytest.mark.spec("5.1", "4.5", "8.4", "8.2")
async def test_reads_while_retrying_show_retrying_and_the_attempts_so_far(harness: TestHarness) -> None:
    """spec 5.1, 4.5, 8.4: "when attempts < max_attempts, leave the task RETRYING until the next
    attempt starts"; "Task.attempts MUST equal the number of PROCESSING events" at every read.

    While a task fails six times and then succeeds, three readers poll ListTaskEvents and GetTask
    in turn and another follows WatchTask. Every snapshot must be a state the final history passed
    through (RETRYING between FAILED(n) and PROCESSING(n+1), never PROCESSING of a failed attempt;
    attempts equal to the PROCESSING events so far), every history a prefix of the final one, and
    no read may show an earlier state than one before it.
    """
    answer = await harness.submit("fail_times", _times(_READ_FAILURES), max_attempts=_READ_FAILURES + 1)
    watching = asyncio.ensure_future(
        watch_all(harness, answer.task_id, "spec 8.2: WatchTask streams the task to its terminal snapshot")
    )
    try:
        polled = await asyncio.gather(
            *(poll_until_terminal(harness, answer.task_id) for _ in range(_POLLERS))
        )
    finally:
        if not watching.done():
            await asyncio.wait({watching}, timeout=harness.timeout)
    watched = await watching
    task, events = await finished(harness, answer.task_id)
    problems = [
        f"poller {number}: {problem}"
        for number, reads in enumerate(polled, start=1)
        for problem in read_violations(reads, events, task.max_attempts)
    ]
    problems += [f"watching: {problem}" for problem in read_violations(watched, events, task.max_attempts)]
    require_none(
        problems,
        "spec 5.1/4.5/8.4: every read while the task retries shows a state of its history, "
        "RETRYING between attempts, attempts so far, never going back",
        task=task,
        events=events,
    )
