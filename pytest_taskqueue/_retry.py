"""The retry policy of a careful client (docs/spec.md 3.6, 9): what ``harness.submit``/``get``/``events`` do.

Spec 9 makes UNAVAILABLE the right answer when a backend is slow or unreachable, and 3.6 lets a
client retry a submit with the same key and request (the retry answers as in 3.1 or 3.3). So a
conforming implementation on a loaded machine may answer UNAVAILABLE (or let a deadline pass) now
and then; the harness retries such answers, with a jittered backoff, until its wait timeout, and
fails naming the rule when they never stop. A retried submit may legitimately answer
``created=false`` (its first try may have created the task): ``Submitted.retries`` says how many
tries failed before the answer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import grpc
import grpc.aio

from fault_injection import Backoff
from taskqueue_proto import taskqueue_pb2 as pb

__all__ = ["RETRYABLE", "RetriesExhausted", "Submitted", "retrying"]

T = TypeVar("T")

RETRYABLE: Final = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
"""A backend was slow or unreachable, or the outcome was never seen: retry (spec 3.6, 9)."""

_FIRST_BACKOFF_S: Final = 0.1
_MAX_BACKOFF_S: Final = 0.5
"""Short: a restarted or healed target is asked again within half a second, not after a long pause."""


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


class RetriesExhausted(AssertionError):
    """A call kept answering UNAVAILABLE/DEADLINE_EXCEEDED until the timeout: the implementation
    never answered a valid call (spec 9, 3.6). An ``AssertionError``: the scenario fails."""


RetriesExhausted.__module__ = "pytest_taskqueue"


async def retrying(call: Callable[[], Awaitable[T]], what: str, limit_s: float) -> tuple[T, int]:
    """Await ``call()``, retrying UNAVAILABLE/DEADLINE_EXCEEDED with a growing backoff for ``limit_s`` s.

    Returns the result and the number of retries. Other errors propagate at once.

    Raises:
        RetriesExhausted: naming ``what``, the code, the number of tries and spec 9/3.6.
    """
    backoff = Backoff(limit_s, first=_FIRST_BACKOFF_S, cap=_MAX_BACKOFF_S, jitter=True)
    while True:
        try:
            return await call(), backoff.tries
        except grpc.aio.AioRpcError as error:
            if error.code() not in RETRYABLE:
                raise
            if not await backoff.wait():
                raise RetriesExhausted(
                    f"spec 9/3.6: {what} is eventually answered; it answered {error.code().name} for "
                    f"{limit_s:g}s ({backoff.tries + 1} tries): {error.details()!r}"
                ) from error
