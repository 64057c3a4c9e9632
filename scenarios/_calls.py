"""Calls the scenarios make beyond the harness's own: expected errors, and messages on one line.

Plain reads and submits go through ``harness.submit``/``get``/``events``, which retry UNAVAILABLE
and DEADLINE_EXCEEDED as spec 3.6 and 9 allow (``pytest_taskqueue.RETRYABLE``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

import grpc
import grpc.aio
from google.protobuf import text_format
from google.protobuf.message import Message

from pytest_taskqueue import RETRYABLE, RetriesExhausted
from scenarios._checks import require, violated
from taskqueue_proto import taskqueue_pb2 as pb

if TYPE_CHECKING:
    from pytest_taskqueue import TestHarness

BAD_INPUT_CODES = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
"""Codes spec 9.1 forbids as the answer to bad input."""


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
        outcome = await harness.retry(attempt, rule.split(":")[0])
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
