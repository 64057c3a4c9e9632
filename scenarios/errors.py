"""Errors (spec 9): bad input is INVALID_ARGUMENT, unknown ids NOT_FOUND; a rejected call creates nothing."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Awaitable, Callable

import grpc
import grpc.aio
import pytest

from pytest_taskqueue import TestHarness
from scenarios._calls import BAD_INPUT_CODES, drain, expect_error, one_line
from scenarios._checks import finished_task_violations, require, require_none, violated
from scenarios._support import LARGEST_PAYLOAD_LIMIT, finished
from taskqueue_proto import taskqueue_pb2 as pb

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.errors]

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def _testable_limit(harness: TestHarness) -> int:
    """The advertised payload limit; an untestable one (spec 8.3) fails the scenario instead of skipping."""
    limit = harness.info.max_payload_bytes
    require(
        0 < limit <= LARGEST_PAYLOAD_LIMIT,
        f"spec 8.3: max_payload_bytes MUST be positive and at most {LARGEST_PAYLOAD_LIMIT} "
        "(else the payload limit of spec 9 cannot be tested)",
        seen=f"max_payload_bytes {limit}",
    )
    return limit


def _key_of_bytes(harness: TestHarness, size: int) -> str:
    """A fresh key of exactly ``size`` UTF-8 bytes, with multi-byte characters in it."""
    base = harness.key() + "-é"
    padding = size - len(base.encode())
    if padding < 0:
        pytest.skip(f"harness keys are longer than {size} bytes")
    return base + "x" * padding


@dataclasses.dataclass(frozen=True)
class _Submit:
    """One invalid SubmitTask: the offending field and the request's fields (key None: a fresh one)."""

    field: str
    task_type: str = "noop"
    payload: bytes = b""
    max_attempts: int = 0
    key: str | None = None


SUBMIT_CASES: dict[str, Callable[[TestHarness], _Submit]] = {
    "empty-key": lambda harness: _Submit("idempotency_key", key=""),
    "key-257-bytes": lambda harness: _Submit("idempotency_key", key=_key_of_bytes(harness, 257)),
    "empty-task-type": lambda harness: _Submit("task_type", task_type=""),
    "unknown-task-type": lambda harness: _Submit(
        "task_type", task_type=f"no_such_type_{uuid.uuid4().hex[:8]}"
    ),
    "payload-over-limit": lambda harness: _Submit(
        "payload", payload=b"\x00" * (_testable_limit(harness) + 1)
    ),
    "max-attempts-negative": lambda harness: _Submit("max_attempts", max_attempts=-1),
    "max-attempts-101": lambda harness: _Submit("max_attempts", max_attempts=101),
}
"""Every INVALID_ARGUMENT row of the SubmitTask part of the spec 9 table, by scenario id."""


async def _rejected_submit(harness: TestHarness, case: str) -> tuple[_Submit, str, grpc.aio.AioRpcError]:
    """Send the invalid submit of ``case``; it must fail INVALID_ARGUMENT (spec 9, 9.1)."""
    bad = SUBMIT_CASES[case](harness)
    key = bad.key if bad.key is not None else harness.key(case)
    error = await expect_error(
        harness,
        lambda: harness.api.submit(key, bad.task_type, bad.payload, bad.max_attempts),
        f"spec 9: SubmitTask with a bad {bad.field} ({case}) fails INVALID_ARGUMENT, never INTERNAL/UNKNOWN",
        INVALID,
    )
    return bad, key, error


@pytest.mark.required
@pytest.mark.spec("9", "9.1")
@pytest.mark.parametrize("case", list(SUBMIT_CASES))
async def test_invalid_submit_is_invalid_argument(harness: TestHarness, case: str) -> None:
    """spec 9, 9.1: each invalid SubmitTask of the spec 9 table fails with INVALID_ARGUMENT."""
    await _rejected_submit(harness, case)


def _free_after(case: str, key: str) -> str:
    """The key a valid submit uses after the rejected one: the same key, or its first 256 bytes.

    A 257-byte key cannot be used again, but a server that cut it down to 256 bytes and kept the
    task would answer its prefix with that task.
    """
    if case == "key-257-bytes":
        return key.encode()[:256].decode(errors="ignore")
    return key


@pytest.mark.required
@pytest.mark.spec("9.1")
@pytest.mark.parametrize("case", [case for case in SUBMIT_CASES if case != "empty-key"])
async def test_rejected_submit_creates_nothing(harness: TestHarness, case: str) -> None:
    """spec 9.1: a rejected submit creates no task: its key then creates a new task with a valid request.

    (An empty key names no task a later submit could find, so that case has nothing to look at.)
    """
    _, rejected_key, _ = await _rejected_submit(harness, case)
    key = _free_after(case, rejected_key)
    rule = "spec 9.1: a rejected call MUST NOT create a task: its key is still free for a valid submit"
    try:
        submitted = await harness.submit_tracked("noop", key=key)
    except grpc.aio.AioRpcError as error:
        violated(rule, seen=f"the valid submit with that key failed {error.code().name}: {error.details()!r}")
    require(submitted.created_as_expected, rule, seen=f"answered {one_line(submitted.answer)}")


@pytest.mark.optional
@pytest.mark.spec("9.1")
@pytest.mark.parametrize("case", list(SUBMIT_CASES))
async def test_invalid_submit_message_names_the_field(harness: TestHarness, case: str) -> None:
    """spec 9.1 (SHOULD): the error message names the offending field."""
    bad, _, error = await _rejected_submit(harness, case)
    require(
        bad.field in (error.details() or ""),
        f"spec 9.1: the INVALID_ARGUMENT message names the field {bad.field!r}",
        seen=f"details {error.details()!r}",
    )


@pytest.mark.required
@pytest.mark.spec("9", "3.2")
@pytest.mark.parametrize(
    ("label", "key_bytes", "max_attempts", "at_payload_limit"),
    [
        ("key-256-bytes", 256, 0, False),
        ("max-attempts-1", 0, 1, False),
        ("max-attempts-100", 0, 100, False),
        ("payload-at-limit", 0, 0, True),
    ],
    ids=["key-256-bytes", "max-attempts-1", "max-attempts-100", "payload-at-limit"],
)
async def test_boundary_values_are_accepted(
    harness: TestHarness, label: str, key_bytes: int, max_attempts: int, at_payload_limit: bool
) -> None:
    """spec 9, 3.2: a 256-byte key, max_attempts 1 and 100, a payload of max_payload_bytes are valid."""
    key = _key_of_bytes(harness, key_bytes) if key_bytes else harness.key(label)
    payload = b"\x01" * _testable_limit(harness) if at_payload_limit else b""
    try:
        submitted = await harness.submit_tracked("noop", payload, max_attempts, key=key)
    except grpc.aio.AioRpcError as error:
        violated(
            f"spec 9: {label} is within the limits and MUST be accepted",
            seen=f"{error.code().name}: {error.details()!r}",
        )
    require(
        submitted.created_as_expected, f"spec 3.1: {label} creates a task", seen=one_line(submitted.answer)
    )


ReadCall = Callable[[TestHarness, str], Awaitable[object]]

READ_CALLS: dict[str, ReadCall] = {
    "GetTask": lambda harness, task_id: harness.api.get(task_id),
    "ListTaskEvents": lambda harness, task_id: harness.api.events(task_id),
    "WatchTask": lambda harness, task_id: drain(harness.api.watch(task_id, timeout=harness.timeout)),
}


@pytest.mark.required
@pytest.mark.spec("9")
@pytest.mark.parametrize("call", list(READ_CALLS))
async def test_empty_task_id_is_invalid_argument(harness: TestHarness, call: str) -> None:
    """spec 9: GetTask, ListTaskEvents and WatchTask with an empty task_id fail INVALID_ARGUMENT."""
    await expect_error(
        harness, lambda: READ_CALLS[call](harness, ""), f"spec 9: {call} with an empty task_id", INVALID
    )


@pytest.mark.required
@pytest.mark.spec("9")
@pytest.mark.parametrize("call", list(READ_CALLS))
async def test_unknown_task_id_is_not_found(harness: TestHarness, call: str) -> None:
    """spec 9: GetTask, ListTaskEvents and WatchTask with an unknown task_id fail NOT_FOUND."""
    unknown = f"no-such-task-{uuid.uuid4()}"
    await expect_error(
        harness,
        lambda: READ_CALLS[call](harness, unknown),
        f"spec 9: {call} of an unknown task_id",
        grpc.StatusCode.NOT_FOUND,
    )


_BAD_JSON = {
    "sleep-not-json": ("sleep", b"not json"),
    "sleep-negative": ("sleep", b'{"ms": -1}'),
    "sleep-string": ("sleep", b'{"ms": "10"}'),
    "sleep-missing": ("sleep", b"{}"),
    "sleep-fraction-form": ("sleep", b'{"ms": 1.0}'),
    "sleep-exponent": ("sleep", b'{"ms": 1e2}'),
    "sleep-bool": ("sleep", b'{"ms": true}'),
    "fail_times-fraction": ("fail_times", b'{"times": 1.5}'),
    "fail_times-array": ("fail_times", b"[1]"),
    "fail_times-beyond-2^53": ("fail_times", b'{"times": 9007199254740992}'),
    "fail_times-beyond-64-bits": ("fail_times", b'{"times": 18446744073709551616}'),
}
"""Payloads that are not the JSON of spec 6.1; running any of them, if accepted, ends within seconds."""

_BAD_JSON_NOT_RUN = {
    "sleep-over-one-day": ("sleep", b'{"ms": 86400001}'),
}
"""Not the JSON of spec 6.1 either, but an implementation that accepted it might run it for a day."""

_MALFORMED_RUNS = 2
"""max_attempts of an accepted malformed payload: if each attempt fails, it is DEAD after two."""


@pytest.mark.required
@pytest.mark.spec("9.1", "6.1")
@pytest.mark.parametrize("case", list(_BAD_JSON))
async def test_bad_task_payload_is_never_internal(harness: TestHarness, case: str) -> None:
    """spec 9.1, 6.1: a malformed sleep/fail_times payload is never answered INTERNAL or UNKNOWN; if
    accepted anyway, the task still reaches a terminal status with a well-formed history."""
    task_type, payload = _BAD_JSON[case]
    try:
        answer = await harness.submit(task_type, payload, _MALFORMED_RUNS, key=harness.key(case))
    except grpc.aio.AioRpcError as error:
        require(
            error.code() not in BAD_INPUT_CODES,
            f"spec 9.1: bad input ({case}) MUST NOT be answered INTERNAL or UNKNOWN",
            seen=f"{error.code().name}: {error.details()!r}",
        )
        return
    task, events = await finished(harness, answer.task_id)
    require_none(
        finished_task_violations(task, events),
        f"spec 6.1: an accepted malformed {task_type} payload ({case}) still ends in a terminal status "
        "with a well-formed history",
        task=task,
        events=events,
    )


@pytest.mark.required
@pytest.mark.spec("6.1")
async def test_other_payload_members_are_ignored(harness: TestHarness) -> None:
    """spec 6.1: members other than `ms`/`times` are ignored: such payloads are valid and run."""
    rule = "spec 6.1: other members of the payload are ignored"
    answers = []
    for task_type, payload, max_attempts in (
        ("sleep", b'{"ms": 0, "note": "ignored"}', 0),
        ("fail_times", b'{"note": [1, 2], "times": 1}', 3),
    ):
        try:
            answers.append(await harness.submit(task_type, payload, max_attempts))
        except grpc.aio.AioRpcError as error:
            violated(rule, seen=f"{task_type} {payload!r}: {error.code().name}: {error.details()!r}")
    for answer, expected in zip(answers, (1, 2), strict=True):
        task, events = await finished(harness, answer.task_id)
        problems = finished_task_violations(task, events)
        if task.status != pb.TASK_STATUS_COMPLETED or task.attempts != expected:
            problems.append(f"expected COMPLETED after {expected} attempt(s)")
        require_none(problems, rule, task=task, events=events)


@pytest.mark.optional
@pytest.mark.spec("6.1")
@pytest.mark.parametrize("case", [*_BAD_JSON, *_BAD_JSON_NOT_RUN])
async def test_bad_task_payload_is_invalid_argument(harness: TestHarness, case: str) -> None:
    """spec 6.1 (SHOULD): a sleep or fail_times payload that is not such JSON is INVALID_ARGUMENT."""
    task_type, payload = {**_BAD_JSON, **_BAD_JSON_NOT_RUN}[case]
    key = harness.key(case)
    await expect_error(
        harness,
        lambda: harness.api.submit(key, task_type, payload),
        f"spec 6: a malformed {task_type} payload ({case}) is rejected with INVALID_ARGUMENT",
        INVALID,
    )
