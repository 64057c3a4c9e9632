"""Lifecycle: a task from submit to COMPLETED, its fields, its history; health, reflection, server info."""

from __future__ import annotations

import asyncio
import json

import grpc
import grpc.aio
import pytest
from grpc_reflection.v1alpha import reflection_pb2

from pytest_taskqueue import TestHarness
from scenarios._calls import one_line
from scenarios._checks import (
    event_name,
    finished_task_violations,
    require,
    require_none,
    snapshot_violations,
    status_name,
    violated,
)
from scenarios._support import (
    LARGEST_PAYLOAD_LIMIT,
    SUBMITTED,
    completed,
    finished,
    processing,
    require_history,
)
from taskqueue_proto import SERVICE_NAME
from taskqueue_proto import taskqueue_pb2 as pb

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.lifecycle]

_FIRST_TRY_ROUNDS = 5
"""Fresh keys tried until a submit is answered without a retry (spec 3.1's answer is then certain)."""
CONFORMANCE_TYPES = ("noop", "echo", "sleep", "fail_always", "fail_times")
_SERVING = 1  # grpc.health.v1.HealthCheckResponse.SERVING
_NOT_SERVING = 2
_REFLECTION_METHODS = (
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
)


@pytest.mark.required
@pytest.mark.spec("3.1")
async def test_submit_answers_created_pending_and_a_task_id(harness: TestHarness) -> None:
    """spec 3.1: a submit that creates a task answers created=true, status=PENDING and a non-empty task_id.

    Judged on a submit answered at its first try: after a retried UNAVAILABLE the answer may
    legitimately be the 3.3 one (created=false). Fresh keys are tried a bounded number of times
    until one is answered at once; a target that never does fails the set-up, never passes quietly.
    """
    tried = []
    for _ in range(_FIRST_TRY_ROUNDS):
        submitted = await harness.submit_tracked("noop")
        if submitted.retries == 0:
            break
        tried.append(f"{submitted.retries} retries before {one_line(submitted.answer)}")
    else:
        violated(
            "spec 3.1/9: a valid submit to a target whose backends are up is answered at its first "
            f"try, not UNAVAILABLE ({_FIRST_TRY_ROUNDS} fresh keys tried)",
            seen="; ".join(tried),
        )
    answer = submitted.answer
    require(
        answer.task_id and answer.created and answer.status == pb.TASK_STATUS_PENDING,
        "spec 3.1: a creating submit answers created=true, status=TASK_STATUS_PENDING and the new task_id",
        seen=one_line(answer),
    )


@pytest.mark.required
@pytest.mark.spec("3.1", "4.3")
async def test_submit_records_submitted_first(harness: TestHarness) -> None:
    """spec 3.1, 4.3: the created task exists at once and its history starts with SUBMITTED."""
    answer = await harness.submit("noop")
    task = await harness.get(answer.task_id)
    events = await harness.events(answer.task_id)
    require(
        task.task_id == answer.task_id and events and events[0].type == pb.TASK_EVENT_TYPE_SUBMITTED,
        "spec 3.1: the submit records the event SUBMITTED, first in the history",
        task=task,
        events=events,
    )


@pytest.mark.optional
@pytest.mark.spec("4.2")
async def test_submitted_and_dead_carry_attempt_0(harness: TestHarness) -> None:
    """spec 4.2 (SHOULD): SUBMITTED and DEAD carry attempt 0."""
    answer = await harness.submit("fail_always", max_attempts=1)
    task, events = await finished(harness, answer.task_id)
    odd = [
        f"#{event.sequence} {event_name(event.type)} carries attempt {event.attempt}"
        for event in events
        if event.type in (pb.TASK_EVENT_TYPE_SUBMITTED, pb.TASK_EVENT_TYPE_DEAD) and event.attempt != 0
    ]
    require_none(odd, "spec 4.2: SUBMITTED and DEAD SHOULD carry attempt 0", task=task, events=events)


@pytest.mark.required
@pytest.mark.spec("4.4", "4.3")
async def test_noop_history_is_exactly_submitted_processing_completed(harness: TestHarness) -> None:
    """spec 4.4: a noop task that succeeds at once has exactly SUBMITTED, PROCESSING(1), COMPLETED(1)."""
    answer = await harness.submit("noop")
    task, events = await finished(harness, answer.task_id)
    require(task.status == pb.TASK_STATUS_COMPLETED, "spec 6: noop succeeds", task=task, events=events)
    require_history(events, [SUBMITTED, processing(1), completed(1)], "spec 4.4: exact noop history", task)


@pytest.mark.required
@pytest.mark.spec("4.1", "4.5", "2.4")
async def test_history_order_and_task_consistency(harness: TestHarness) -> None:
    """spec 4.1, 4.5, 2.4: sequences rise, `at` never goes back, attempts = number of PROCESSING."""
    answer = await harness.submit("noop")
    task, events = await finished(harness, answer.task_id)
    problems = finished_task_violations(task, events)
    require_none(
        problems, "spec 4.1/4.5/2.4: ordered history consistent with the task", task=task, events=events
    )


@pytest.mark.required
@pytest.mark.spec("2.1", "3.2")
async def test_task_fields_echo_the_request(harness: TestHarness) -> None:
    """spec 2.1, 3.2: the task echoes key, task_type, payload; max_attempts 0 is reported as 5."""
    key = harness.key("fields")
    payload = b"\x00opaque\xffpayload\x00"
    answer = await harness.submit("noop", payload, 0, key=key)
    task, events = await finished(harness, answer.task_id)
    wrong = [
        f"{name}={got!r}, submitted {sent!r}"
        for name, got, sent in (
            ("task_id", task.task_id, answer.task_id),
            ("idempotency_key", task.idempotency_key, key),
            ("task_type", task.task_type, "noop"),
            ("payload", task.payload, payload),
            ("max_attempts", task.max_attempts, 5),
            ("attempts", task.attempts, 1),
        )
        if got != sent
    ]
    require_none(
        wrong, "spec 2.1/3.2: the task echoes the request, max_attempts 0 -> 5", task=task, events=events
    )


@pytest.mark.required
@pytest.mark.spec("3.2")
@pytest.mark.parametrize("max_attempts", [1, 7, 100])
async def test_explicit_max_attempts_is_reported_as_given(harness: TestHarness, max_attempts: int) -> None:
    """spec 3.2: max_attempts 1 to 100 are allowed as given and Task.max_attempts reports them."""
    submitted = await harness.submit_tracked("noop", max_attempts=max_attempts)
    task, events = await finished(harness, submitted.task_id)
    require(
        submitted.created_as_expected and task.max_attempts == max_attempts,
        f"spec 3.2: max_attempts={max_attempts} is allowed and reported as given",
        task=task,
        events=events,
    )


@pytest.mark.required
@pytest.mark.spec("6")
async def test_noop_result_is_empty(harness: TestHarness) -> None:
    """spec 6: noop ignores its payload and succeeds with an empty result."""
    answer = await harness.submit("noop", b"ignored")
    task, events = await finished(harness, answer.task_id)
    require(
        task.status == pb.TASK_STATUS_COMPLETED and task.result == b"",
        "spec 6: noop succeeds with an empty result",
        seen=f"result={task.result!r}",
        task=task,
        events=events,
    )


@pytest.mark.required
@pytest.mark.spec("6", "2.4")
@pytest.mark.parametrize(
    "payload",
    [bytes(range(256)) * 4, b"", b"\x00\x00\x00"],
    ids=["all-byte-values", "empty", "zero-bytes"],
)
async def test_echo_result_equals_payload(harness: TestHarness, payload: bytes) -> None:
    """spec 6, 2.4: echo succeeds and its result equals the payload byte for byte."""
    answer = await harness.submit("echo", payload)
    task, events = await finished(harness, answer.task_id)
    require(
        task.status == pb.TASK_STATUS_COMPLETED and task.result == payload,
        "spec 6: echo's result equals its payload",
        seen=f"result has {len(task.result)} bytes, payload {len(payload)}; equal={task.result == payload}",
        task=task,
        events=events,
    )


@pytest.mark.required
@pytest.mark.spec("6", "6.2", "4.3")
@pytest.mark.parametrize("ms", [0, 300])
async def test_sleep_completes(harness: TestHarness, ms: int) -> None:
    """spec 6, 6.2, 4.3: sleep {"ms": N} succeeds with a well-formed history, and its attempt takes
    at least N ms on the implementation's own clock (COMPLETED's `at` minus its PROCESSING's `at`)."""
    answer = await harness.submit("sleep", json.dumps({"ms": ms}).encode())
    task, events = await finished(harness, answer.task_id)
    problems = finished_task_violations(task, events)
    if task.status != pb.TASK_STATUS_COMPLETED:
        problems.append(f"spec 6: sleep ends {status_name(task.status)}, it must succeed")
    elif len(events) >= 2 and events[-2].type == pb.TASK_EVENT_TYPE_PROCESSING:
        took_ms = (events[-1].at.ToNanoseconds() - events[-2].at.ToNanoseconds()) / 1e6
        if took_ms < ms:
            problems.append(
                f"spec 6.2: the attempt took {took_ms:.1f} ms between PROCESSING and COMPLETED, "
                f"a sleep of {ms} ms takes at least that"
            )
    require_none(problems, "spec 6: sleep succeeds after at least N ms", task=task, events=events)


@pytest.mark.required
@pytest.mark.spec("2.4")
async def test_created_at_never_changes(harness: TestHarness) -> None:
    """spec 2.4: created_at never changes; updated_at is never before created_at and never goes back."""
    answer = await harness.submit("noop")
    first = await harness.get(answer.task_id)
    last, events = await finished(harness, answer.task_id)
    problems = snapshot_violations([first, last], stream=False)
    require_none(
        problems,
        "spec 2.4: created_at constant, updated_at >= created_at and rising",
        task=last,
        events=events,
    )


@pytest.mark.required
@pytest.mark.spec("1.2")
@pytest.mark.parametrize("service", ["", SERVICE_NAME], ids=["overall", "service"])
async def test_health_is_serving(harness: TestHarness, service: str) -> None:
    """spec 1.2: grpc.health.v1.Health answers SERVING for "" and for taskqueue.v1.TaskQueue."""
    try:
        status = await harness.api.health(service)
    except grpc.aio.AioRpcError as error:
        violated(f"spec 1.2: health Check({service!r}) answers SERVING", seen=error.code().name)
    require(
        status == _SERVING, f"spec 1.2: health Check({service!r}) answers SERVING", seen=f"status {status}"
    )


@pytest.mark.required
@pytest.mark.spec("8.3")
async def test_server_info_describes_the_contract(harness: TestHarness) -> None:
    """spec 8.3: GetServerInfo lists the five types, default_max_attempts 5, max_payload_bytes 1..4 MiB."""
    info = await harness.api.server_info()
    problems = [f"task_types lacks {name!r}" for name in CONFORMANCE_TYPES if name not in info.task_types]
    if info.default_max_attempts != 5:
        problems.append(f"default_max_attempts is {info.default_max_attempts}, must be 5")
    if not 0 < info.max_payload_bytes <= LARGEST_PAYLOAD_LIMIT:
        problems.append(
            f"max_payload_bytes is {info.max_payload_bytes}, "
            f"must be positive and at most {LARGEST_PAYLOAD_LIMIT}"
        )
    require_none(problems, "spec 8.3: GetServerInfo describes the contract")


@pytest.mark.optional
@pytest.mark.spec("8.3")
async def test_server_accepts_payloads_of_64_kib(harness: TestHarness) -> None:
    """spec 8.3: max_payload_bytes SHOULD be at least 65536."""
    info = await harness.api.server_info()
    require(
        info.max_payload_bytes >= 65536,
        "spec 8.3: max_payload_bytes SHOULD be at least 65536",
        seen=f"max_payload_bytes {info.max_payload_bytes}",
    )


async def _listed_services(channel: grpc.aio.Channel) -> tuple[list[str], str]:
    """The services reflection lists (v1, else v1alpha), and what the attempts answered."""
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    answers = []
    for method in _REFLECTION_METHODS:
        call = channel.stream_stream(
            method,
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        try:
            responses = [response async for response in call(iter([request]), timeout=10)]
        except grpc.aio.AioRpcError as error:
            answers.append(f"{method}: {error.code().name}")
            continue
        names = [
            service.name for response in responses for service in response.list_services_response.service
        ]
        return names, f"{method}: {names}"
    return [], "; ".join(answers)


@pytest.mark.optional
@pytest.mark.spec("1.3")
async def test_reflection_lists_the_service(harness: TestHarness) -> None:
    """spec 1.3 (SHOULD): server reflection (v1 or v1alpha) lists taskqueue.v1.TaskQueue."""
    names, seen = await _listed_services(harness.api.channel)
    require(SERVICE_NAME in names, "spec 1.3: reflection lists taskqueue.v1.TaskQueue", seen=seen)


_HEALTH_POLL_S = 0.02
"""How often the shutdown scenario asks for health while the server stops (spec 1.2's "few tens of ms")."""


@pytest.mark.optional
@pytest.mark.harness_only
@pytest.mark.spec("1.2")
async def test_health_answers_not_serving_before_the_server_stops(harness: TestHarness) -> None:
    """spec 1.2 (SHOULD): "While shutting down (on SIGTERM) it SHOULD answer NOT_SERVING before it
    stops accepting calls".

    Health is asked every 20 ms while the API process is stopped gracefully (SIGTERM) and started
    again: NOT_SERVING must be seen before the first refused call.
    """
    server = harness.server
    seen: list[str] = []
    stopped = asyncio.Event()

    async def poll() -> None:
        while not stopped.is_set():
            try:
                status = await harness.api.health(timeout=1)
                name = {_SERVING: "SERVING", _NOT_SERVING: "NOT_SERVING"}.get(status, f"status {status}")
            except grpc.aio.AioRpcError as error:
                name = error.code().name
            if not seen or seen[-1] != name:
                seen.append(name)
            await asyncio.sleep(_HEALTH_POLL_S)  # the polling pace, not a wait for an outcome

    poller = asyncio.ensure_future(poll())
    try:
        await asyncio.to_thread(server.restart)
        await server.wait_ready()
    finally:
        stopped.set()
        await poller
    refused = next((i for i, name in enumerate(seen) if name not in ("SERVING", "NOT_SERVING")), len(seen))
    require(
        "NOT_SERVING" in seen[:refused],
        "spec 1.2: on SIGTERM, health answers NOT_SERVING before the server stops accepting calls",
        seen=" -> ".join(seen),
    )
