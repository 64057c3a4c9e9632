"""Faults (spec 3.6, 7, 9.2): lost answers, slow and partitioned links, crashes, and the chaos run.

Each scenario breaks links of the harness-owned stack through their Toxiproxy proxies
(``harness.faults``: ``api``, ``server_dynamodb``, ``server_sqs``, ``worker_dynamodb``,
``worker_sqs``), so they run against the reference stack and against an implementation the harness
runs itself (``--taskqueue-target-cmd``); a plain ``--taskqueue-target`` is not proxied and they
skip. Every fault heals when its ``with`` block ends, also on failure, and the harness resets
Toxiproxy after each test. Waits are event-driven (WatchTask, answers of calls); a fault is held
while the scenario probes the target, never by sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import Iterator
from contextlib import AbstractContextManager

import grpc
import grpc.aio
import pytest

from pytest_taskqueue import (
    RETRYABLE,
    HarnessFaults,
    TaskQueueClient,
    TaskQueueConfig,
    TestHarness,
    WaitTimeout,
    run_chaos_for_harness,
)
from scenarios._checks import count, finished_task_violations, require, require_none, status_name, violated
from scenarios._support import (
    finished,
    first_attempt_cut_short,
    format_codes,
    mid_attempt_sleep_ms,
    require_completed_once,
    shape,
)
from taskqueue_proto import taskqueue_pb2 as pb

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.faults]

_SHORT_DEADLINE_S = 0.5
"""The client's deadline in the latency scenario: well below the injected latency."""
_API_LATENCY_MS = 2000
_LOST_ANSWER_DEADLINE_S = 5.0
"""Deadline of the submit whose answer is lost: the cut connection ends it long before."""
_TIMEOUT_CLOSE_MS = 500
"""The ``timeout`` toxic closes the connection after this long without data on the way back: well
after the server has answered (the answer is swallowed), without holding the scenario longer."""
_UNDER_FAULT_DEADLINE_S = 5.0
"""Deadline of each call made while a backend is faulted; spec 9.2 wants UNAVAILABLE within it."""
_FORBIDDEN = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
_SETUP_TRIES = 3
"""How often a scenario arranges its fault again when its precondition did not hold, before failing."""


# --------------------------------------------------------------------------------------- helpers


@dataclasses.dataclass
class _Call:
    """A submit made while a link is faulted: its key and request, and how it ended."""

    key: str
    payload: bytes
    code: grpc.StatusCode
    details: str = ""
    answer: pb.SubmitTaskResponse | None = None

    def describe(self) -> str:
        if self.answer is not None:
            return f"{self.key}: OK task_id={self.answer.task_id} created={self.answer.created}"
        return f"{self.key}: {self.code.name} {self.details[:120]!r}"


async def _submit_once(harness: TestHarness, key: str, payload: bytes, deadline_s: float) -> _Call:
    """One ``echo`` submit with a deadline, not retried: what the target answered, or the error."""
    try:
        answer = await harness.api.submit(key, "echo", payload, timeout=deadline_s)
    except grpc.aio.AioRpcError as error:
        return _Call(key, payload, error.code(), error.details() or "")
    return _Call(key, payload, grpc.StatusCode.OK, answer=answer)


def _code_problems(calls: list[_Call], what: str) -> list[str]:
    """spec 9.2: a call that fails because a backend is unreachable fails with UNAVAILABLE, in time."""
    problems = []
    for call in calls:
        if call.code in _FORBIDDEN:
            problems.append(f"spec 9.2: {what} answered {call.code.name}, not UNAVAILABLE: {call.describe()}")
        elif call.code == grpc.StatusCode.DEADLINE_EXCEEDED:
            problems.append(
                f"spec 9.2: {what} was not answered within its {_UNDER_FAULT_DEADLINE_S:g}s deadline "
                f"(UNAVAILABLE must come in time): {call.describe()}"
            )
        elif call.code not in (grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE):
            problems.append(f"spec 9.2: {what} answered {call.code.name}: {call.describe()}")
    return problems


async def _one_task_per_key(harness: TestHarness, calls: list[_Call]) -> dict[str, tuple[str, bytes]]:
    """After healing: resubmit every key (spec 3.6) and check it names one task (3.3, 9.2).

    Returns task_id -> (key, payload) for every task the keys name.
    """
    tasks: dict[str, tuple[str, bytes]] = {}
    problems: list[str] = []
    for call in calls:
        retry = await harness.submit_tracked("echo", call.payload, key=call.key)
        again = (await harness.submit_tracked("echo", call.payload, key=call.key)).answer
        if call.answer is not None and retry.task_id != call.answer.task_id:
            problems.append(
                f"spec 7.3/3.3: {call.key} was acknowledged as {call.answer.task_id} during the fault, "
                f"its resubmit answers {retry.task_id}"
            )
        if call.answer is not None and call.answer.created and retry.answer.created:
            problems.append(f"spec 3.3: {call.key} answered created=true twice ({retry.task_id})")
        if again.task_id != retry.task_id or again.created:
            problems.append(
                f"spec 3.3/9.2: {call.key}: resubmits answer {retry.task_id} then {again.task_id} "
                f"(created={again.created}); the refused submit left a task that answers otherwise"
            )
        tasks[retry.task_id] = (call.key, call.payload)
    require_none(problems, "spec 3.3, 3.6, 9.2: one task per key after a fault")
    return tasks


async def _complete_once(harness: TestHarness, tasks: dict[str, tuple[str, bytes]], rule: str) -> None:
    """Every task completes, with its payload as result, exactly one COMPLETED and a valid history."""
    for task_id, (key, payload) in tasks.items():
        task, events = await finished(harness, task_id)
        problems = finished_task_violations(task, events)
        if task.status != pb.TASK_STATUS_COMPLETED or task.result != payload:
            problems.append(
                f"spec 6/7.3: echo must complete with its payload as result; {status_name(task.status)}, "
                f"result {task.result[:40]!r}"
            )
        if task.idempotency_key != key:
            problems.append(f"spec 2.1: idempotency_key {task.idempotency_key!r}, submitted {key!r}")
        if count(events, pb.TASK_EVENT_TYPE_COMPLETED) != 1:
            problems.append(f"spec 7.1: {count(events, pb.TASK_EVENT_TYPE_COMPLETED)} COMPLETED events")
        require_none(problems, rule, task=task, events=events)


@contextlib.contextmanager
def _all(*contexts: AbstractContextManager[object]) -> Iterator[None]:
    """Several fault contexts as one (entered in order, undone in reverse, always)."""
    with contextlib.ExitStack() as stack:
        for context in contexts:
            stack.enter_context(context)
        yield


async def _until_terminal(harness: TestHarness, task_id: str, limit_s: float) -> pb.Task | None:
    """Wait (bounded) for a task to become terminal: the snapshot, or None if it is not yet."""
    try:
        return await harness.wait_for_terminal(task_id, timeout=limit_s)
    except WaitTimeout:
        return None


async def _read_if_found(harness: TestHarness, task_id: str) -> tuple[pb.Task, list[pb.TaskEvent]] | None:
    """The task and its history, or None when the target answers NOT_FOUND."""
    try:
        return await harness.get(task_id), await harness.events(task_id)
    except grpc.aio.AioRpcError as error:
        if error.code() != grpc.StatusCode.NOT_FOUND:
            raise
    return None


def _require_link_used(bypassed: bool, link: str, seen: str) -> None:
    """spec 10.1: a link that was down while the implementation worked as if it were up carried no
    traffic: the implementation reaches the backend around the harness's proxy (e.g. SQS through
    the host of a queue URL), so the fault scenarios would test nothing."""
    require(
        not bypassed,
        f"spec 10.1: the link {link} carried no traffic while the implementation must use it: "
        "every backend request goes through the endpoint the harness gave (not a queue URL's host)",
        seen=seen,
    )


def _sleep_payload(ms: int) -> bytes:
    return json.dumps({"ms": ms}).encode()


# ------------------------------------------------------------------------------------- scenarios


@pytest.mark.required
@pytest.mark.spec("3.6", "3.3")
async def test_api_latency_beyond_the_deadline_then_a_retry_gives_one_task(harness: TestHarness) -> None:
    """spec 3.6, 3.3: "A submit that failed with UNAVAILABLE, or whose outcome the client never saw,
    MAY be retried by the client with the same key and request; the retry answers as in 3.1 or 3.3,
    so that at most one task exists per key."

    Answers on the client -> API link are delayed beyond the client's deadline, so the client
    never sees them; after the link heals the client retries with the same key: the answers name
    one task, at most one says created=true, and the task completes exactly once.
    """
    links = harness.faults
    key = harness.key("slow-api")
    payload = b"answer came too late"
    unseen: list[_Call] = []
    with links.latency("api", _API_LATENCY_MS, stream="downstream"):
        for _ in range(2):
            unseen.append(await _submit_once(harness, key, payload, _SHORT_DEADLINE_S))
    require(
        any(call.code != grpc.StatusCode.OK for call in unseen),
        f"set-up: answers delayed by {_API_LATENCY_MS} ms must miss a {_SHORT_DEADLINE_S:g}s deadline",
        seen="; ".join(call.describe() for call in unseen),
    )
    require_none(
        [
            f"spec 9: a call whose deadline passed ended {call.code.name}: {call.describe()}"
            for call in unseen
            if call.code not in (grpc.StatusCode.OK, *RETRYABLE)
        ],
        "a deadline that passes is the client's DEADLINE_EXCEEDED (or UNAVAILABLE)",
    )
    tasks = await _one_task_per_key(harness, [unseen[0]])
    await _complete_once(harness, tasks, "spec 3.6, 7.1: the retried submit's one task completes once")


@pytest.mark.required
@pytest.mark.spec("3.6", "3.3", "9.2")
@pytest.mark.parametrize("cut", ["timeout", "reset_peer"])
async def test_lost_acknowledgement_retry_gets_the_same_task(harness: TestHarness, cut: str) -> None:
    """spec 3.6, 3.3, 9.2: "A submit whose idempotency_key was already used by the same request MUST
    answer the existing task_id with created=false"; a retry after a lost answer is such a submit.

    The server's answer is lost on the way back (the client -> API connection swallows it and is
    closed, or is reset as the answer arrives). The client retries with the same key: if the first
    submit landed, the retry answers that task with created=false; if it never landed, the retry
    creates it (created=true). Either way the key names one task, which completes exactly once.
    """
    links = harness.faults
    payload = f"answer lost by {cut}".encode()
    tries: list[_Call] = []
    for _ in range(_SETUP_TRIES):
        await harness.api.health()  # an open connection, so the submit itself reaches the server
        key = harness.key(f"lost-answer-{cut}")
        fault = (
            links.timeout("api", _TIMEOUT_CLOSE_MS, stream="downstream")
            if cut == "timeout"
            else links.reset_peer("api", 0, stream="downstream")
        )
        with fault:
            first = await _submit_once(harness, key, payload, _LOST_ANSWER_DEADLINE_S)
        tries.append(first)
        require(
            first.code in (grpc.StatusCode.OK, *RETRYABLE),
            "spec 9: a call whose connection was cut ends UNAVAILABLE or DEADLINE_EXCEEDED on the client",
            seen=first.describe(),
        )
        if first.code != grpc.StatusCode.OK:
            break
    else:
        violated(
            f"set-up: the submit's answer must be lost on the api link ({_SETUP_TRIES} tries); "
            "every try was answered, so nothing was tested",
            seen="; ".join(call.describe() for call in tries),
        )
    tasks = await _one_task_per_key(harness, [first])  # the retries, and their checks (3.3)
    await _complete_once(harness, tasks, "spec 3.6, 7.1: the task behind the lost answer completes once")


_PARTITIONED_SLEEP_MS = 1000
"""The ``sleep`` running when DynamoDB is cut off (longer on each set-up try): it must outlast the
moment until the cut, and the cut is held until it has ended."""


@pytest.mark.required
@pytest.mark.spec("9.2", "7.1", "7.3", "10.1")
async def test_dynamodb_partition_while_processing(harness: TestHarness) -> None:
    """spec 9.2, 7.1, 7.3: "A call that fails because a backend is unreachable MUST fail with
    UNAVAILABLE (not INTERNAL), within the client's deadline"; "A submit answered with a task_id
    MUST NOT be lost ... also when backends were unreachable for a while after the answer."

    DynamoDB is cut off from the server and the worker while a task is processing. Meanwhile each
    submit and read answers UNAVAILABLE (or succeeds) within its deadline, never INTERNAL or
    UNKNOWN. After healing, the task that was processing completes exactly once, every submit that
    was acknowledged completes, and each refused submit, retried with its key, yields one task.
    """
    links = harness.faults
    loop = asyncio.get_running_loop()
    for attempt in range(1, _SETUP_TRIES + 1):
        sleep_ms = _PARTITIONED_SLEEP_MS * attempt
        running = await harness.submit("sleep", _sleep_payload(sleep_ms))
        await harness.wait_for_status(running.task_id, pb.TASK_STATUS_PROCESSING)
        seen_running = loop.time()
        # Precondition: the attempt is still running when the partition starts. It was PROCESSING
        # a moment ago and sleeps for sleep_ms; if this client took half of that to get here (a
        # loaded machine), the attempt may be over: arrange it again.
        if (await harness.get(running.task_id)).status == pb.TASK_STATUS_PROCESSING and (
            loop.time() - seen_running < sleep_ms / 2000
        ):
            break
        await finished(harness, running.task_id)
    else:
        violated(
            f"set-up: a task still PROCESSING when DynamoDB is cut off ({_SETUP_TRIES} tries)",
            seen=f"the last task {running.task_id} was not (or this client was too slow to cut in time)",
        )
    calls: list[_Call] = []
    reads: list[_Call] = []
    with links.partition("server_dynamodb", "worker_dynamodb"):
        # Held while probing, and at least as long as the running attempt sleeps, so that it ends
        # (and tries to record its outcome) while DynamoDB is unreachable.
        hold_until = loop.time() + sleep_ms / 1000
        calls += await asyncio.gather(
            *(
                _submit_once(harness, harness.key("partitioned"), b"dynamodb down", _UNDER_FAULT_DEADLINE_S)
                for _ in range(3)
            )
        )
        while loop.time() < hold_until and len(calls) < 10:
            key = harness.key("partitioned")
            calls.append(await _submit_once(harness, key, b"dynamodb down", _UNDER_FAULT_DEADLINE_S))
        try:
            await harness.api.get(running.task_id, timeout=_UNDER_FAULT_DEADLINE_S)
            reads.append(_Call(running.task_id, b"", grpc.StatusCode.OK))
        except grpc.aio.AioRpcError as error:
            reads.append(_Call(running.task_id, b"", error.code(), error.details() or ""))
    _require_link_used(
        all(call.code == grpc.StatusCode.OK for call in calls + reads),
        "server_dynamodb",
        f"every one of {len(calls)} submits and the read made while it was down was answered OK",
    )
    require_none(
        _code_problems(calls, "SubmitTask") + _code_problems(reads, "GetTask"),
        "spec 9.2: while DynamoDB is unreachable, calls answer UNAVAILABLE within their deadline",
    )
    task, events = await finished(harness, running.task_id)
    problems = finished_task_violations(task, events)
    if task.status != pb.TASK_STATUS_COMPLETED:
        problems.append(f"spec 7.3: the task ends {status_name(task.status)}, sleep must complete")
    if count(events, pb.TASK_EVENT_TYPE_COMPLETED) != 1:
        problems.append(f"spec 7.1: {count(events, pb.TASK_EVENT_TYPE_COMPLETED)} COMPLETED events, not 1")
    require_none(
        problems,
        "spec 7.1, 7.3: a task processing during a DynamoDB partition completes exactly once",
        task=task,
        events=events,
    )
    tasks = await _one_task_per_key(harness, calls)
    await _complete_once(harness, tasks, "spec 7.3, 9.2: nothing submitted during the partition is lost")


_SQS_FAULTS = ("partition", "slow", "reset")


def _sqs_fault(links: HarnessFaults, kind: str) -> AbstractContextManager[object]:
    """The SQS links of the server and the worker: down, slow (latency) or reset as answers come back."""
    sides = ("server_sqs", "worker_sqs")
    if kind == "partition":
        return links.partition(*sides)
    if kind == "slow":
        return _all(*(links.latency(side, 800, 100, stream="both") for side in sides))
    return _all(*(links.reset_peer(side, 0, stream="downstream") for side in sides))


@pytest.mark.required
@pytest.mark.spec("7.1", "7.3", "9.2", "10.1")
@pytest.mark.parametrize("kind", _SQS_FAULTS)
async def test_sqs_fault_loses_no_task_and_completes_none_twice(harness: TestHarness, kind: str) -> None:
    """spec 7.1, 7.3, 9.2: "Execution is at least once; the recorded outcome is exactly once. A
    history never has two COMPLETED events"; a submit answered with a task_id is never lost.

    SQS is partitioned from the server and the worker, slowed down, or its connections are reset
    as answers come back (so sends, receives and deletes may take effect unseen). Tasks queued
    before, one processing, and submits made meanwhile (answered OK, or UNAVAILABLE within their
    deadline and retried after healing with the same key) all complete, each exactly once.
    """
    links = harness.faults  # skips against a plain target, before any work
    before = {}
    for index in range(3):
        payload = f"queued before the {kind} fault #{index}".encode()
        key = harness.key(f"before-{kind}")
        before[(await harness.submit("echo", payload, key=key)).task_id] = (key, payload)
    sleep_ms = 800
    running = await harness.submit("sleep", _sleep_payload(sleep_ms))
    await harness.wait_for_status(running.task_id, pb.TASK_STATUS_PROCESSING)
    with _sqs_fault(links, kind):
        # Side by side: each has its own key, and a slow link makes each take seconds.
        calls = list(
            await asyncio.gather(
                *(
                    _submit_once(
                        harness,
                        harness.key(f"during-{kind}"),
                        f"submitted during the {kind} fault #{index}".encode(),
                        _UNDER_FAULT_DEADLINE_S,
                    )
                    for index in range(3)
                )
            )
        )
        # Held until the running attempt has ended (its outcome is recorded in DynamoDB, which is
        # reachable), so that its message is acknowledged to SQS through the fault; bounded,
        # since the contract does not require progress while SQS is unreachable.
        await _until_terminal(harness, running.task_id, sleep_ms / 1000 + 5.0)
        if kind == "partition":
            # A submit made while SQS is down cannot be queued, so its task cannot have run yet.
            answered = [call.answer.task_id for call in calls if call.answer is not None]
            ran = [task_id for task_id in answered if (await harness.get(task_id)).attempts > 0]
            _require_link_used(
                bool(ran),
                "server_sqs/worker_sqs",
                f"tasks submitted while SQS was down were run before it came back: {ran}",
            )
    require_none(
        _code_problems(calls, "SubmitTask"),
        f"spec 9.2: while SQS is {kind}, submits answer UNAVAILABLE within their deadline, or succeed",
    )
    task, events = await finished(harness, running.task_id)
    require_none(
        finished_task_violations(task, events)
        + (
            []
            if count(events, pb.TASK_EVENT_TYPE_COMPLETED) == 1 and task.status == pb.TASK_STATUS_COMPLETED
            else [f"spec 7.1: {count(events, pb.TASK_EVENT_TYPE_COMPLETED)} COMPLETED events, not 1"]
        ),
        f"spec 7.1: the task processing while SQS was {kind} completes exactly once",
        task=task,
        events=events,
    )
    tasks = dict(before)
    tasks.update(await _one_task_per_key(harness, calls))
    await _complete_once(harness, tasks, f"spec 7.1, 7.3: no task lost or completed twice when SQS is {kind}")


_CRASH_RACERS = 16
"""Identical submits in flight when the API process is killed."""
_RACERS_PER_API = 16
"""Identical submits per key sent to each of the two API processes."""


@pytest.mark.recovery
@pytest.mark.required
@pytest.mark.spec("3.5", "3.3", "7.3")
@pytest.mark.harness_only
async def test_idempotency_survives_a_sigkill_of_the_api_process(harness: TestHarness) -> None:
    """spec 3.5: "Idempotency MUST hold across server processes: it MUST NOT rest on memory of one
    process" (and 10.4: the harness may kill an API process with SIGKILL).

    A key's task is created; then identical submits of it race while the API process is killed
    (SIGKILL: nothing is saved on the way out) and started again. Each racer is retried through the
    outage (3.6); every answer, and a resubmit after the restart, names the first task with
    created=false, and the task completes exactly once.
    """
    server = harness.server
    payload = b"survives a crash"
    key = harness.key("sigkill")
    first = await harness.submit_tracked("echo", payload, key=key)
    racers = [
        asyncio.ensure_future(harness.submit_tracked("echo", payload, key=key)) for _ in range(_CRASH_RACERS)
    ]
    server.kill()
    try:
        server.start()
        await server.wait_ready()
    finally:
        answers = await asyncio.gather(*racers, return_exceptions=True)
    after = await harness.submit_tracked("echo", payload, key=key)
    problems = [f"a racer failed: {answer!r}" for answer in answers if isinstance(answer, BaseException)]
    seen = [answer for answer in answers if not isinstance(answer, BaseException)] + [after]
    for answer in seen:
        if answer.task_id != first.task_id or answer.answer.created:
            problems.append(
                f"spec 3.5: key {key} answered task_id={answer.task_id} created={answer.answer.created} "
                f"({answer.retries} retries), its task is {first.task_id}"
            )
    require_none(problems, "spec 3.5, 3.3: a key names its one task across a SIGKILL of the API process")
    task, events = await finished(harness, first.task_id)
    require_completed_once(task, events, "spec 7.3: the task completes exactly once across the crash")


async def _read_task(harness: TestHarness, client: TaskQueueClient, task_id: str) -> pb.Task:
    """GetTask through ``client`` (one API process), retried like ``harness.get``."""
    return await harness.retry(lambda: client.get(task_id), "GetTask")


_TWO_API_KEYS = 3
"""Keys raced at once across the two API processes."""


@pytest.mark.recovery
@pytest.mark.required
@pytest.mark.spec("3.5", "3.3", "8.4", "10.4")
@pytest.mark.harness_only
async def test_identical_submits_race_across_two_api_processes(harness: TestHarness) -> None:
    """spec 3.5, 10.4: "Idempotency MUST hold across server processes"; the harness may start a
    second API process of the same command on the same backends.

    For each of three keys, 16 identical submits go to each of two API processes at once. All
    answer one task_id, exactly one says created=true (unless an answer was retried after
    UNAVAILABLE, 3.6), both processes then read the same task, and it completes once.
    """
    payload = b"raced across two processes"
    keys = [harness.key(f"two-apis-{index}") for index in range(_TWO_API_KEYS)]
    async with harness.second_api() as other:
        clients = {"first": harness.api, "second": other}

        async def race(name: str, key: str) -> tuple[str, pb.SubmitTaskResponse, int]:
            tries = 0

            async def once() -> pb.SubmitTaskResponse:
                nonlocal tries
                tries += 1
                return await clients[name].submit(key, "echo", payload)

            answer = await harness.retry(once, f"SubmitTask to the {name} API process")
            return key, answer, tries - 1

        answers = await asyncio.gather(
            *(race(name, key) for key in keys for name in clients for _ in range(_RACERS_PER_API))
        )
        problems: list[str] = []
        for key in keys:
            mine = [(answer, retries) for k, answer, retries in answers if k == key]
            ids = sorted({answer.task_id for answer, _ in mine})
            created = sum(answer.created for answer, _ in mine)
            retried = sum(retries > 0 for _, retries in mine)
            if len(ids) != 1 or not (created == 1 or (created == 0 and retried)):
                problems.append(
                    f"spec 3.5: key {key}: task_ids {ids}, {created} created=true "
                    f"({retried} answers retried after UNAVAILABLE)"
                )
                continue
            seen = {name: await _read_task(harness, client, ids[0]) for name, client in clients.items()}
            if seen["first"].task_id != seen["second"].task_id or seen["first"].idempotency_key != key:
                problems.append(f"spec 3.5: the two processes read different tasks for {ids[0]}")
        require_none(problems, "spec 3.5: identical submits racing across two API processes name one task")
    for key in keys:
        task_id = next(answer.task_id for k, answer, _ in answers if k == key)
        task, events = await finished(harness, task_id)
        require_completed_once(task, events, "spec 3.5, 7.1: the raced task runs once")


@pytest.mark.recovery
@pytest.mark.required
@pytest.mark.spec("3.5", "7.2", "7.3")
@pytest.mark.harness_only
async def test_server_restart_keeps_state_and_work_resumes(harness: TestHarness) -> None:
    """spec 3.5, 7.2, 7.3: "Idempotency MUST hold across server processes: it MUST NOT rest on
    memory of one process"; a task answered with a task_id is not lost.

    The API server process is restarted (stopped, then started) while a task is processing. A task
    finished before keeps its state and history, its key still answers it with created=false, the
    interrupted task completes exactly once, and new submits work.
    """
    server = harness.server
    done = await harness.submit("echo", b"finished before the restart", key=harness.key("before-restart"))
    done_task, done_events = await finished(harness, done.task_id)
    sleep_ms = max(1500, int(harness.visibility_timeout * 750))
    running = await harness.submit("sleep", _sleep_payload(sleep_ms))
    await harness.wait_for_status(running.task_id, pb.TASK_STATUS_PROCESSING)
    await asyncio.to_thread(server.restart)  # a graceful stop may take a moment: off the loop
    await server.wait_ready()
    survived = await _read_if_found(harness, done.task_id)
    if survived is None:
        violated(
            "spec 7.3, 3.5: a task answered with a task_id survives a restart of the server process",
            seen=f"after the restart, GetTask({done.task_id}) answers NOT_FOUND",
        )
    after, after_events = survived
    again = await harness.submit_tracked(
        "echo", b"finished before the restart", key=done_task.idempotency_key
    )
    problems = []
    if after != done_task:
        problems.append("spec 7.3: the finished task changed across the restart")
    if [(e.type, e.attempt, e.sequence) for e in after_events] != [
        (e.type, e.attempt, e.sequence) for e in done_events
    ]:
        problems.append("spec 4.1: the finished task's history changed across the restart")
    if again.task_id != done.task_id or again.answer.created:
        problems.append(
            f"spec 3.5: after the restart its key answers task_id={again.task_id} "
            f"created={again.answer.created}, not {done.task_id} with created=false"
        )
    require_none(problems, "spec 3.5, 7.3: state survives a server restart", task=after, events=after_events)
    fresh_key = harness.key("after-restart")
    fresh = await harness.submit("echo", b"after the restart", key=fresh_key)
    await _complete_once(
        harness,
        {fresh.task_id: (fresh_key, b"after the restart")},
        "spec 7.3: submits after a server restart complete",
    )
    task, events = await finished(harness, running.task_id)
    require_none(
        finished_task_violations(task, events)
        + (
            []
            if task.status == pb.TASK_STATUS_COMPLETED and count(events, pb.TASK_EVENT_TYPE_COMPLETED) == 1
            else ["spec 7.2: the task processing during the restart must complete exactly once"]
        ),
        "spec 7.2: work resumes after a server restart",
        task=task,
        events=events,
    )


@pytest.mark.recovery
@pytest.mark.required
@pytest.mark.spec("7.2", "7.3")
@pytest.mark.harness_only
async def test_worker_sigkill_mid_attempt_and_server_restart(harness: TestHarness) -> None:
    """spec 7.2, 7.3: "If a worker dies ... in the middle of an attempt, the task MUST NOT be lost:
    after the queue's visibility timeout another attempt starts and the task reaches a terminal
    status. The abandoned attempt counts as an attempt."

    The worker is killed (SIGKILL) in the middle of an attempt and, while it is down, a task is
    submitted and the API server is restarted. Once both are started again (side by side), the
    interrupted task completes exactly once (its abandoned attempt counted) and the new one, which
    was answered before the restart, completes.
    """
    worker = harness.worker  # the API process itself when the work runs in it (spec 10.3)
    server = harness.server
    for attempt in range(1, _SETUP_TRIES + 1):
        running = await harness.submit("sleep", _sleep_payload(mid_attempt_sleep_ms(attempt)))
        await harness.wait_for_status(running.task_id, pb.TASK_STATUS_PROCESSING)
        worker.kill()
        if harness.worker_is_server:  # the kill took the API down too: read once it is back
            worker.start()
            await worker.wait_ready()
        at_kill = await harness.events(running.task_id)
        if first_attempt_cut_short(at_kill):
            break
        if not harness.worker_is_server:
            worker.start()  # the attempt ended before the kill landed: again, with a longer sleep
            await worker.wait_ready()
    else:
        violated(
            f"set-up: the attempt must still be running when the worker is killed ({_SETUP_TRIES} tries)",
            seen=f"history after the last kill: {format_codes(shape(at_kill))}",
        )
    queued_key = harness.key("worker-down")
    try:
        queued = await harness.submit("echo", b"while the worker is down", key=queued_key)
        await asyncio.to_thread(server.restart)  # a graceful stop may take a moment: off the loop
    finally:
        if not worker.running:
            worker.start()  # side by side with the API process's own start
        ready = [server.wait_ready()] + ([] if harness.worker_is_server else [worker.wait_ready()])
        await asyncio.gather(*ready)
    task, events = await finished(harness, running.task_id)
    problems = finished_task_violations(task, events)
    if task.status != pb.TASK_STATUS_COMPLETED or count(events, pb.TASK_EVENT_TYPE_COMPLETED) != 1:
        problems.append("spec 7.2: the interrupted task must complete exactly once")
    if count(events, pb.TASK_EVENT_TYPE_PROCESSING) < 2:
        problems.append("spec 7.2: the abandoned attempt counts, so a second PROCESSING must follow")
    require_none(problems, "spec 7.2: work resumes after a worker crash", task=task, events=events)
    await _complete_once(
        harness,
        {queued.task_id: (queued_key, b"while the worker is down")},
        "spec 7.3: a task submitted while the worker was down is not lost",
    )


@pytest.mark.required
@pytest.mark.spec("2.2", "2.3", "3.3", "4.3", "4.5", "5.3", "5.4", "7.1", "7.3", "9.2")
@pytest.mark.opt_in
async def test_chaos_run_breaks_no_rule(
    harness: TestHarness, taskqueue_config: TaskQueueConfig, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """spec 2-7: under a seeded schedule of faults on every link, a mixed workload of every
    conformance task type keeps the contract: no acknowledged submit lost, one task per key, legal
    transitions, attempts rising by one, DEAD only after max_attempts failures, never two
    COMPLETED, every task terminal once the faults heal (the history checker's rules).

    Runs only with ``--taskqueue-chaos-seconds=N`` (and ``--taskqueue-chaos-seed``).
    """
    seconds = taskqueue_config.chaos_seconds
    if seconds is None:
        pytest.skip("chaos run not requested: give --taskqueue-chaos-seconds=N (and --taskqueue-chaos-seed)")
    history_path = tmp_path_factory.mktemp("chaos") / f"history-seed{taskqueue_config.chaos_seed}.json"
    outcome = await run_chaos_for_harness(harness, seconds, taskqueue_config.chaos_seed, history_path)
    summary = outcome.history_summary()
    if outcome.anomalies:
        violated(
            f"spec 2-7: the chaos run (seed {taskqueue_config.chaos_seed}, {seconds:g}s) broke "
            f"{len(outcome.anomalies)} rules: "
            + ", ".join(f"{rule} x{n}" for rule, n in summary["anomalies_by_rule"].items()),
            seen="\n".join(outcome.anomaly_lines())
            + f"\nhistory: {history_path} (re-check: taskqueue-harness check {history_path})",
        )
    require(
        outcome.result.operations > 0,
        "set-up: the chaos run recorded operations",
        seen=f"{outcome.result.operations} operations",
    )
