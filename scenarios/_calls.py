"""RPCs as a careful client makes them: UNAVAILABLE answers are retried, as spec 3.6 and 9 allow.

Spec 9 makes UNAVAILABLE the right answer when a backend is slow or unreachable, and spec 3.6 lets
a client retry a submit with the same key and request (the retry answers as in 3.1 or 3.3). So a
conforming implementation on a loaded machine may answer UNAVAILABLE now and then; the scenarios
retry such answers until ``harness.timeout`` instead of failing, and say so when it never stops.
A retried submit may legitimately answer ``created=false`` (its first try may have created the
task), which is why ``Submitted`` records the retries.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import grpc
import grpc.aio
from google.protobuf import text_format
from google.protobuf.message import Message

from fault_injection import Backoff
from scenarios._checks import require, violated
from taskqueue_proto import taskqueue_pb2 as pb

if TYPE_CHECKING:
    from pytest_taskqueue import TestHarness

T = TypeVar("T")

RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
"""A backend was slow or unreachable, or the outcome was never seen: retry (spec 3.6, 9)."""

BAD_INPUT_CODES = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
"""Codes spec 9.1 forbids as the answer to bad input."""

_FIRST_BACKOFF_S = 0.1
_MAX_BACKOFF_S = 2.0


@dataclasses.dataclass(frozen=True)
class Submitted:
    """A submit's final answer and how many retryable failures came before it."""

    answer: pb.SubmitTaskResponse
    retries: int

    @property
    def task_id(self) -> str:
        return self.answer.task_id

    @property
    def created_as_expected(self) -> bool:
        """created=true, or created=false after a retry (the first try may have created it, 3.6)."""
        return self.answer.created or self.retries > 0


class RetriesExhausted(Exception):
    """A call kept answering UNAVAILABLE/DEADLINE_EXCEEDED until the harness timeout."""


async def retrying(harness: TestHarness, call: Callable[[], Awaitable[T]], what: str) -> tuple[T, int]:
    """Await ``call()``, retrying retryable answers with a growing backoff until ``harness.timeout``.

    Returns the result and the number of retries. Other errors propagate at once.
    """
    # Full jitter: many clients refused at once (a burst) do not come back at once.
    backoff = Backoff(harness.timeout, first=_FIRST_BACKOFF_S, cap=_MAX_BACKOFF_S, jitter=True)
    retries = 0
    while True:
        try:
            return await call(), retries
        except grpc.aio.AioRpcError as error:
            if error.code() not in RETRYABLE:
                raise
            if not await backoff.wait():
                raise RetriesExhausted(
                    f"{what} answered {error.code().name} for {harness.timeout:g}s "
                    f"({retries + 1} tries): {error.details()!r}"
                ) from error
        retries += 1


async def submit_tracked(
    harness: TestHarness,
    task_type: str = "noop",
    payload: bytes = b"",
    max_attempts: int = 0,
    *,
    key: str | None = None,
) -> Submitted:
    """SubmitTask with a fresh key unless given, retried with the same key and request (spec 3.6)."""
    used = key if key is not None else harness.key(task_type)
    try:
        answer, retries = await retrying(
            harness, lambda: harness.api.submit(used, task_type, payload, max_attempts), "SubmitTask"
        )
    except RetriesExhausted as error:
        violated("spec 9/3.6: a valid submit is eventually answered", seen=str(error))
    return Submitted(answer, retries)


async def submit(
    harness: TestHarness,
    task_type: str = "noop",
    payload: bytes = b"",
    max_attempts: int = 0,
    *,
    key: str | None = None,
) -> pb.SubmitTaskResponse:
    """``submit_tracked`` for scenarios that only need the answer."""
    return (await submit_tracked(harness, task_type, payload, max_attempts, key=key)).answer


async def read(harness: TestHarness, call: Callable[[], Awaitable[T]], what: str) -> T:
    """A read (GetTask, ListTaskEvents, ...) retried like a submit; fails the scenario if it never answers."""
    try:
        result, _ = await retrying(harness, call, what)
    except RetriesExhausted as error:
        violated(f"spec 9: {what} of an existing task is eventually answered", seen=str(error))
    return result


async def get_task(harness: TestHarness, task_id: str) -> pb.Task:
    return await read(harness, lambda: harness.api.get(task_id), "GetTask")


async def get_events(harness: TestHarness, task_id: str) -> list[pb.TaskEvent]:
    return await read(harness, lambda: harness.api.events(task_id), "ListTaskEvents")


def one_line(answer: object) -> str:
    """A protobuf message on one line (others by repr), for failure messages."""
    if isinstance(answer, Message):
        return text_format.MessageToString(answer, as_one_line=True)
    return repr(answer)


async def expect_error(
    harness: TestHarness, call: Callable[[], Awaitable[object]], rule: str, *expected: grpc.StatusCode
) -> grpc.aio.AioRpcError:
    """``call()`` must fail with one of ``expected``, else the scenario fails naming ``rule``.

    Retryable answers (UNAVAILABLE, DEADLINE_EXCEEDED) are retried unless they are expected.
    """

    async def attempt() -> object:
        try:
            return await call()
        except grpc.aio.AioRpcError as error:
            if error.code() in RETRYABLE and error.code() not in expected:
                raise
            return error

    try:
        outcome, _ = await retrying(harness, attempt, rule.split(":")[0])
    except RetriesExhausted as error:
        violated(rule, seen=str(error))
    if not isinstance(outcome, grpc.aio.AioRpcError):
        violated(rule, seen=f"the call succeeded: {one_line(outcome)}")
    wanted = " or ".join(code.name for code in expected)
    require(
        outcome.code() in expected,
        rule,
        seen=f"{outcome.code().name}: {outcome.details()!r} (expected {wanted})",
    )
    return outcome


async def drain(stream: AsyncIterator[pb.Task]) -> list[pb.Task]:
    """Read a WatchTask stream to its end (for calls expected to fail: ``expect_error(..., drain)``)."""
    return [snapshot async for snapshot in stream]
