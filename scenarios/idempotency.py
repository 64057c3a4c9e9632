"""Idempotency (spec 3.3-3.4): one key and one request give one task, run once; other requests conflict."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses

import grpc
import grpc.aio
import pytest

from pytest_taskqueue import Submitted, TestHarness
from scenarios._calls import expect_error, one_line
from scenarios._checks import REACHABLE, changed_fields, format_task, require, status_name, violated
from scenarios._support import (
    DEAD,
    barrier,
    failing_history,
    finished,
    require_completed_once,
    require_history,
    watch_all,
)
from taskqueue_proto import taskqueue_pb2 as pb

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.idempotency]

RACERS = 32
"""How many submits race on one key (spec 3.3 names 32)."""

RACE_ROUNDS = 3
"""How many keys race at once in the identical-submits scenario."""


async def _require_unchanged(
    harness: TestHarness, task: pb.Task, events: list[pb.TaskEvent], rule: str, *, touch_allowed: bool
) -> None:
    """After a barrier, the terminal task and its history are as before: no event, no rerun.

    ``touch_allowed``: a same-request resubmit (3.3) may move updated_at; a conflict (3.4) changes nothing.
    """
    await barrier(harness)
    now = await harness.get(task.task_id)
    history = await harness.events(task.task_id)
    changed = changed_fields(task, now, ignore=("updated_at",) if touch_allowed else ())
    require(
        not changed and history == events,
        rule,
        seen=f"before: {len(events)} events, {format_task(task)}; after: {len(history)} events, "
        f"changed fields: {changed or 'none'}",
        task=now,
        events=history,
    )


@pytest.mark.required
@pytest.mark.spec("3.3")
async def test_resubmit_after_completed_returns_the_same_task(harness: TestHarness) -> None:
    """spec 3.3: resubmitting the same request answers the task_id, created=false, the current status."""
    key = harness.key()
    first = await harness.submit("echo", b"same", key=key)
    task, _ = await finished(harness, first.task_id)
    again = await harness.submit("echo", b"same", key=key)
    require(
        again.task_id == first.task_id and not again.created and again.status == task.status,
        "spec 3.3: a resubmit answers the existing task_id with created=false and the task's current status",
        seen=f"first {first.task_id!r}; resubmit answered task_id={again.task_id!r} created={again.created} "
        f"status={status_name(again.status)}",
        task=task,
    )


@pytest.mark.required
@pytest.mark.spec("3.3")
async def test_resubmit_after_completed_adds_no_event_and_does_not_rerun(harness: TestHarness) -> None:
    """spec 3.3: a resubmit MUST NOT append any event and MUST NOT run the task again (after COMPLETED)."""
    key = harness.key()
    first = await harness.submit("noop", key=key)
    task, events = await finished(harness, first.task_id)
    for _ in range(3):
        await harness.submit("noop", key=key)
    await _require_unchanged(
        harness, task, events, "spec 3.3: a resubmit appends no event and does not rerun", touch_allowed=True
    )


@pytest.mark.required
@pytest.mark.spec("3.3")
async def test_resubmit_after_dead_changes_nothing(harness: TestHarness) -> None:
    """spec 3.3: after DEAD, the same request answers created=false, status DEAD, and runs nothing again."""
    key = harness.key()
    first = await harness.submit("fail_always", b"", 2, key=key)
    task, events = await finished(harness, first.task_id)
    again = await harness.submit("fail_always", b"", 2, key=key)
    require(
        again.task_id == first.task_id and not again.created and again.status == pb.TASK_STATUS_DEAD,
        "spec 3.3: a resubmit of a DEAD task answers its task_id, created=false, status DEAD",
        seen=f"task_id={again.task_id!r} created={again.created} status={status_name(again.status)}",
        task=task,
        events=events,
    )
    await _require_unchanged(
        harness, task, events, "spec 3.3: a resubmit of a DEAD task adds no event, no run", touch_allowed=True
    )


async def _resubmit_and_check(harness: TestHarness, key: str, task_id: str, before: pb.Task) -> None:
    """Resubmit (fail_always, 3) once: same task_id, created=false, a status between two reads."""
    answer = await harness.submit("fail_always", b"", 3, key=key)
    after = await harness.get(task_id)
    in_order = answer.status in REACHABLE.get(before.status, ()) and after.status in REACHABLE.get(
        answer.status, ()
    )
    require(
        answer.task_id == task_id and not answer.created and in_order,
        "spec 3.3: a resubmit during the task's life answers created=false with the current status",
        seen=f"task_id={answer.task_id!r} created={answer.created} status={status_name(answer.status)} "
        f"(read before: {status_name(before.status)}, after: {status_name(after.status)})",
    )


@pytest.mark.required
@pytest.mark.spec("3.3")
async def test_resubmit_while_running_and_retrying_does_not_rerun(harness: TestHarness) -> None:
    """spec 3.3: at any time in the task's life a resubmit answers created=false and never reruns it.

    The scenario resubmits once for every snapshot WatchTask sends (pending, processing, retrying),
    and checks that each answer's status lies between the statuses read just before and after it.
    """
    key = harness.key()
    first = await harness.submit("fail_always", b"", 3, key=key)

    async def resubmit(snapshot: pb.Task) -> None:
        await _resubmit_and_check(harness, key, first.task_id, snapshot)

    await watch_all(harness, first.task_id, "spec 8.2: WatchTask streams the task to its end", resubmit)
    task, _ = await finished(harness, first.task_id)
    await barrier(harness)
    events = await harness.events(first.task_id)
    require_history(events, failing_history(3, then=DEAD), "spec 3.3: resubmits never rerun the task", task)


@pytest.mark.required
@pytest.mark.spec("3.2", "3.3")
@pytest.mark.parametrize(("first", "second"), [(0, 5), (5, 0)], ids=["0-then-5", "5-then-0"])
async def test_default_and_explicit_five_are_the_same_request(
    harness: TestHarness, first: int, second: int
) -> None:
    """spec 3.2, 3.3: requests compare by *effective* max_attempts, so 0 and 5 are the same request."""
    key = harness.key()
    original = await harness.submit("noop", b"", first, key=key)
    try:
        again = await harness.submit("noop", b"", second, key=key)
    except grpc.aio.AioRpcError as error:
        violated(
            "spec 3.2/3.3: max_attempts 0 and 5 are the same request (effective value 5)",
            seen=f"max_attempts={first} then {second}: {error.code().name} {error.details()!r}",
        )
    require(
        again.task_id == original.task_id and not again.created,
        "spec 3.2/3.3: max_attempts 0 and 5 are the same request (effective value 5)",
        seen=f"first {original.task_id!r}, then task_id={again.task_id!r} created={again.created}",
    )


@pytest.mark.required
@pytest.mark.spec("3.3")
async def test_racing_identical_submits_create_one_task(harness: TestHarness) -> None:
    """spec 3.3: when 32 identical submits race, exactly one answers created=true and all the same task_id.

    Three keys race at once (96 submits), so a check-then-write window has three chances to show.
    """
    keys = [harness.key(f"race-{index}") for index in range(RACE_ROUNDS)]
    racing = [harness.submit_tracked("noop", b"race", key=key) for key in keys for _ in range(RACERS)]
    answers = await asyncio.gather(*racing)
    for round_, key in enumerate(keys):
        racers = answers[round_ * RACERS : (round_ + 1) * RACERS]
        created = sum(racer.answer.created for racer in racers)
        retried = sum(racer.retries > 0 for racer in racers)
        ids = sorted({racer.task_id for racer in racers})
        # A submit retried after UNAVAILABLE may answer created=false though its first try created it (3.6).
        require(
            len(ids) == 1 and (created == 1 or (created == 0 and retried)),
            f"spec 3.3: {RACERS} racing identical submits give exactly one created=true and one task_id",
            seen=f"key {key!r}: {created} answered created=true ({retried} retried after UNAVAILABLE); "
            f"task_ids: {ids}",
        )
    task_ids = [answers[round_ * RACERS].task_id for round_ in range(RACE_ROUNDS)]
    for task_id in task_ids:
        await finished(harness, task_id)
    await barrier(harness)
    for task_id in task_ids:
        events = await harness.events(task_id)
        task = await harness.get(task_id)
        require_completed_once(task, events, "spec 3.3: racing submits run the task once")


@pytest.mark.required
@pytest.mark.spec("3.3", "3.4")
async def test_racing_different_payloads_one_wins(harness: TestHarness) -> None:
    """spec 3.3, 3.4: racing different requests on one key: one creates, the rest get ALREADY_EXISTS."""
    key = harness.key("race-different")
    payloads = [f"payload-{index}".encode() for index in range(RACERS)]

    async def race(payload: bytes) -> Submitted | grpc.aio.AioRpcError:
        try:
            return await harness.submit_tracked("noop", payload, key=key)
        except grpc.aio.AioRpcError as error:
            return error

    outcomes = await asyncio.gather(*(race(payload) for payload in payloads))
    winners = [
        (payload, outcome)
        for payload, outcome in zip(payloads, outcomes, strict=True)
        if isinstance(outcome, Submitted)
    ]
    errors = collections.Counter(
        outcome.code().name for outcome in outcomes if isinstance(outcome, grpc.aio.AioRpcError)
    )
    require(
        len(winners) == 1 and winners[0][1].created_as_expected and errors == {"ALREADY_EXISTS": RACERS - 1},
        f"spec 3.4: of {RACERS} racing different requests on one key, one creates, the rest ALREADY_EXISTS",
        seen=f"{len(winners)} succeeded {[one_line(w.answer) for _, w in winners][:3]}; "
        f"errors: {dict(errors)}",
    )
    payload, winner = winners[0]
    task, events = await finished(harness, winner.task_id)
    require(
        task.payload == payload,
        "spec 3.4: the losing submits change nothing: the task keeps the winner's payload",
        seen=f"winner sent {payload!r}; the task's payload is {task.payload!r}",
        task=task,
        events=events,
    )
    require_completed_once(task, events, "spec 3.4: the task runs once")


@pytest.mark.required
@pytest.mark.spec("3.4")
@pytest.mark.parametrize(
    ("field", "task_type", "payload", "max_attempts"),
    [
        ("payload", "noop", b"different", 0),
        ("task_type", "echo", b"original", 0),
        ("max_attempts", "noop", b"original", 3),
    ],
    ids=["payload", "task_type", "max_attempts"],
)
async def test_different_request_on_used_key_is_already_exists(
    harness: TestHarness, field: str, task_type: str, payload: bytes, max_attempts: int
) -> None:
    """spec 3.4: a key already used by a different request fails ALREADY_EXISTS and changes nothing."""
    key = harness.key(field)
    first = await harness.submit("noop", b"original", 0, key=key)
    task, events = await finished(harness, first.task_id)
    await expect_error(
        harness,
        lambda: harness.api.submit(key, task_type, payload, max_attempts),
        f"spec 3.4: the same key with a different {field} fails with ALREADY_EXISTS",
        grpc.StatusCode.ALREADY_EXISTS,
    )
    await _require_unchanged(
        harness,
        task,
        events,
        f"spec 3.4: a conflicting submit ({field}) changes nothing",
        touch_allowed=False,
    )


@pytest.mark.required
@pytest.mark.spec("2.1", "3.1")
async def test_distinct_keys_give_distinct_tasks(harness: TestHarness) -> None:
    """spec 2.1, 3.1: identical requests under different keys create different tasks (task_id is unique)."""
    answers = [await harness.submit_tracked("noop", key=harness.key()) for _ in range(3)]
    ids = [answer.task_id for answer in answers]
    require(
        all(answer.created_as_expected for answer in answers) and len(set(ids)) == len(ids),
        "spec 2.1/3.1: each new key creates its own task with a unique task_id",
        seen=f"created={[a.answer.created for a in answers]} task_ids={ids}",
    )


@pytest.mark.required
@pytest.mark.spec("3.3", "9")
@pytest.mark.parametrize(
    "suffix", ["-ключ-鍵-🔑", "/with spaces\tand:punctuation?#"], ids=["unicode", "punctuation"]
)
async def test_keys_are_opaque_strings(harness: TestHarness, suffix: str) -> None:
    """spec 3.3, 9: any non-empty key of at most 256 UTF-8 bytes works and identifies its task."""
    key = harness.key() + suffix
    first = await harness.submit_tracked("noop", key=key)
    again = await harness.submit("noop", key=key)
    task = await harness.get(first.task_id)
    require(
        first.created_as_expected
        and again.task_id == first.task_id
        and not again.created
        and task.idempotency_key == key,
        "spec 3.3: an opaque key identifies its task and is reported unchanged",
        seen=f"created={first.answer.created}, resubmit task_id={again.task_id!r} created={again.created}, "
        f"reported key {task.idempotency_key!r} (sent {key!r})",
    )


_CUT_FRACTIONS = (0.1, 0.25, 0.4, 0.55, 0.7, 0.85, 1.0, 1.3)
"""When to cancel a submit, as fractions of how long an uncut submit took."""
_CUT_ROUNDS = 3
"""Rounds of cuts tried before the set-up gives up (the precondition could not be arranged)."""


@dataclasses.dataclass
class _Cut:
    """One cancelled submit and what the resubmit right after it answered."""

    key: str
    delay_ms: float
    first: str
    """``cancelled`` (the client never saw an answer) or ``answered`` (it arrived before the cut)."""
    again: Submitted

    def describe(self) -> str:
        return (
            f"cut at {self.delay_ms:.1f} ms: {self.first}; resubmit created={self.again.answer.created} "
            f"task_id={self.again.task_id}"
        )


async def _cut_submit(harness: TestHarness, payload: bytes, delay_ms: float) -> _Cut:
    """Send a submit, cancel the call ``delay_ms`` after sending it, then resubmit at once."""
    key = harness.key("cut")
    request = pb.SubmitTaskRequest(idempotency_key=key, task_type="echo", payload=payload)
    call = harness.api.stub.SubmitTask(request, timeout=harness.timeout)
    first = "cancelled"
    # The cut point of the fault, not a wait for an outcome: the call is cancelled mid-way.
    await asyncio.sleep(delay_ms / 1000)
    if not call.cancel():
        first = "answered"
    with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
        await call
    again = await harness.submit_tracked("echo", payload, key=key)
    return _Cut(key, delay_ms, first, again)


_ANSWER_DELAY_MS = 300
"""With the harness's proxies, answers on the api link are delayed this long while submits are cut."""


def _landed_unseen(cut: _Cut) -> bool:
    """The cut call had written its task (its resubmit answers created=false), its answer unseen."""
    return cut.first == "cancelled" and not cut.again.answer.created


async def _cut_rounds(harness: TestHarness, payload: bytes, *, strict: bool) -> list[_Cut]:
    """Cut submits at spread points until the precondition holds, for at most ``_CUT_ROUNDS`` rounds
    (the cuts of one round at once)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    await harness.submit("echo", payload, key=harness.key("uncut"))
    uncut_ms = max((loop.time() - started) * 1000, 1.0)
    cuts: list[_Cut] = []
    for _ in range(_CUT_ROUNDS):
        # The cuts of a round go side by side: each has its own key and its own call, cut at its
        # own point after it was sent, so one round takes about as long as its latest cut.
        cuts += await asyncio.gather(
            *(_cut_submit(harness, payload, uncut_ms * fraction) for fraction in _CUT_FRACTIONS)
        )
        if any(_landed_unseen(cut) for cut in cuts):
            return cuts
        if not strict and {"cancelled", "answered"} <= {cut.first for cut in cuts}:
            return cuts
    violated(
        "set-up: a submit cancelled after its task was written (its resubmit answers created=false, "
        f"its own answer never seen), in {_CUT_ROUNDS} rounds of cuts"
        + ("" if strict else ", or at least cuts on both sides of the answer"),
        seen="; ".join(cut.describe() for cut in cuts),
    )


@pytest.mark.required
@pytest.mark.spec("3.7", "3.6", "3.3", "7.3")
async def test_cancelled_submit_then_resubmit_runs_the_task_once(harness: TestHarness) -> None:
    """spec 3.7, 3.6, 7.3: "An implementation MUST NOT let a cancelled or cut request leave a task
    that a retry answers but never runs."

    Submits are cancelled by the client at points spread over how long a submit takes (eight
    submits side by side, each cut at its own point), and each is resubmitted at once with the same
    key and request (3.6). Every key's task completes exactly
    once. Precondition, retried a bounded number of rounds: when the harness owns the stack, the
    answers are delayed on the api link meanwhile, and at least one cancelled call must have
    written its task already (its resubmit answers created=false, its own answer never seen);
    against a plain target, the cuts must at least fall on both sides of the answer.
    """
    payload = b"cancelled mid-way"
    if harness.owned:
        with harness.faults.latency("api", _ANSWER_DELAY_MS, stream="downstream"):
            cuts = await _cut_rounds(harness, payload, strict=True)
    else:
        cuts = await _cut_rounds(harness, payload, strict=False)
    rule = (
        "spec 3.7/7.3: a task whose submit was cancelled mid-way and then resubmitted runs and "
        "completes exactly once"
    )
    for cut in cuts:
        task, events = await finished(harness, cut.again.task_id, f"{rule} ({cut.describe()})")
        require(task.result == payload, f"{rule} ({cut.describe()})", task=task, events=events)
        require_completed_once(task, events, f"{rule} ({cut.describe()})")
