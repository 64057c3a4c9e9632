"""Recovery (spec 7.2, 7.3): a worker killed mid-attempt loses no task, and the outcome is recorded once.

Harness-owned only: the scenarios kill (SIGKILL) and restart the worker process the harness runs.
"""

from __future__ import annotations

import json

import pytest

from pytest_taskqueue import TestHarness
from scenarios._checks import (
    attempts_of,
    count,
    finished_task_violations,
    require,
    require_none,
    status_name,
    violated,
)
from scenarios._support import (
    SUBMITTED,
    completed,
    finished,
    first_attempt_cut_short,
    format_codes,
    mid_attempt_sleep_ms,
    processing,
    require_history,
    shape,
)
from taskqueue_proto import taskqueue_pb2 as pb

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.recovery]

_TRIES = 3
"""Set-up tries: if an attempt ends before the kill lands, the next try uses a longer sleep
(``mid_attempt_sleep_ms``)."""


@pytest.mark.required
@pytest.mark.spec("7.2", "7.1")
@pytest.mark.harness_only
async def test_worker_killed_mid_attempt_completes_exactly_once(harness: TestHarness) -> None:
    """spec 7.2, 7.1: after a worker dies mid-attempt, another attempt starts and the task completes once.

    The abandoned attempt counts as an attempt (PROCESSING numbers rise by one); it may or may not
    be recorded as FAILED. Exactly one COMPLETED, and it is the last event.
    """
    interrupted: str | None = None
    after_kill: list[pb.TaskEvent] = []
    for attempt in range(1, _TRIES + 1):
        payload = json.dumps({"ms": mid_attempt_sleep_ms(attempt)}).encode()
        answer = await harness.submit("sleep", payload)
        await harness.wait_for_status(answer.task_id, pb.TASK_STATUS_PROCESSING)
        harness.worker.kill()
        if not harness.worker_is_server:
            after_kill = await harness.events(answer.task_id)
        harness.worker.start()
        await harness.worker.wait_ready()
        if harness.worker_is_server:  # the kill took the API down too: read once it is back
            after_kill = await harness.events(answer.task_id)
        if first_attempt_cut_short(after_kill):
            interrupted = answer.task_id
            break
    if interrupted is None:
        violated(
            f"set-up: the attempt must still be running when the worker is killed ({_TRIES} tries)",
            seen=f"history after the last kill: {format_codes(shape(after_kill))}",
        )
    task, events = await finished(harness, interrupted)
    problems = finished_task_violations(task, events)
    if task.status != pb.TASK_STATUS_COMPLETED:
        problems.append(f"spec 7.2: the task ends {status_name(task.status)}, sleep must complete")
    if count(events, pb.TASK_EVENT_TYPE_COMPLETED) != 1:
        problems.append(
            f"spec 7.1: {count(events, pb.TASK_EVENT_TYPE_COMPLETED)} COMPLETED events, exactly 1 allowed"
        )
    if len(attempts_of(events, pb.TASK_EVENT_TYPE_PROCESSING)) < 2:
        problems.append("spec 7.2: the abandoned attempt counts, so a second PROCESSING must follow")
    require_none(
        problems,
        "spec 7.2: a task whose worker died mid-attempt completes exactly once",
        task=task,
        events=events,
    )


@pytest.mark.required
@pytest.mark.spec("7.3")
@pytest.mark.harness_only
async def test_task_submitted_while_the_worker_is_down_is_not_lost(harness: TestHarness) -> None:
    """spec 7.3: a submit answered with a task_id is not lost: it completes once a worker is back."""
    if harness.worker_is_server:
        # The work runs in the API process, which cannot answer while it is down: kill it right
        # after the answer instead, so the task is answered but (most likely) not yet run.
        answer = await harness.submit("echo", b"while the worker is down")
        harness.worker.kill()
        harness.worker.start()
    else:
        harness.worker.kill()
        try:
            answer = await harness.submit("echo", b"while the worker is down")
        finally:
            harness.worker.start()
    await harness.worker.wait_ready()
    task, events = await finished(harness, answer.task_id)
    require(
        task.status == pb.TASK_STATUS_COMPLETED and task.result == b"while the worker is down",
        "spec 7.3: a task submitted while no worker runs completes when one is back",
        task=task,
        events=events,
    )


@pytest.mark.required
@pytest.mark.harness_only
@pytest.mark.spec("6.3", "7.1")
async def test_attempt_longer_than_the_visibility_timeout_runs_once(harness: TestHarness) -> None:
    """spec 6.3: "While it runs, the implementation MUST keep its message from being delivered again
    ... such a task completes with exactly SUBMITTED, PROCESSING(1), COMPLETED(1)."

    A sleep of two and a half visibility timeouts (the work queue's VisibilityTimeout attribute,
    spec 7.2) runs once: no second attempt starts while the first is alive.
    """
    sleep_ms = int(harness.visibility_timeout * 2500)
    answer = await harness.submit("sleep", json.dumps({"ms": sleep_ms}).encode())
    task, events = await finished(harness, answer.task_id)
    require_history(
        events,
        [SUBMITTED, processing(1), completed(1)],
        f"spec 6.3: a sleep of {sleep_ms} ms (visibility timeout {harness.visibility_timeout:g} s) "
        "runs once, as one attempt",
        task,
    )
