"""``Backoff``: the growing pause between the tries of a probe, poll or retry, within a deadline.

Every loop of the toolkit that tries something again (a readiness probe, a GetTask poll, a retry
of an indeterminate answer) takes its pauses from one ``Backoff``; none writes its own
``sleep``/``delay *= 2``. The pause is a pace between tries, never a wait for an outcome: the
loop still decides, at each try, whether it is done.

    backoff = Backoff(timeout=10, first=0.05, cap=0.5)
    while not ready():
        if not backoff.sleep():        # False: the deadline has passed
            raise TimeoutError(...)

``await backoff.wait()`` is the same for asyncio code. ``pause()`` hands the next pause to a
caller that waits its own way (``Popen.wait(pause)`` returns early when the process exits).
"""

from __future__ import annotations

import math
import random
import time

__all__ = ["Backoff"]


class Backoff:
    """Pauses that grow from ``first`` by ``factor`` up to ``cap``, never past the deadline.

    Args:
        timeout: seconds from now to the deadline; None: no deadline.
        first: the first pause.
        factor: each pause is the previous one times this.
        cap: the longest pause.
        jitter: pause a random time between 0 and the scheduled pause ("full jitter"), so that
            many clients refused at once do not come back at once.
    """

    def __init__(
        self,
        timeout: float | None = None,
        *,
        first: float = 0.05,
        factor: float = 2.0,
        cap: float = 0.5,
        jitter: bool = False,
    ) -> None:
        if first <= 0 or factor < 1 or cap < first:
            raise ValueError(f"Backoff needs 0 < first <= cap and factor >= 1 (got {first}, {factor}, {cap})")
        self.timeout = timeout
        self.deadline = math.inf if timeout is None else time.monotonic() + timeout
        self.tries = 0
        """How many pauses were handed out (the number of tries after the first)."""
        self._next = first
        self._factor = factor
        self._cap = cap
        self._jitter = jitter

    def remaining(self) -> float:
        """Seconds left until the deadline (``inf`` without one; never negative)."""
        return max(self.deadline - time.monotonic(), 0.0)

    @property
    def scheduled(self) -> float:
        """The next pause before jitter and the deadline cut it (grows with each pause)."""
        return self._next

    @property
    def expired(self) -> bool:
        """True once the deadline has passed."""
        return time.monotonic() >= self.deadline

    def pause(self) -> float | None:
        """The next pause (cut to what is left of the deadline), or None if the deadline has passed."""
        remaining = self.remaining()
        if remaining <= 0:
            return None
        scheduled = self._next
        self._next = min(self._next * self._factor, self._cap)
        self.tries += 1
        if self._jitter:
            scheduled = random.uniform(0, scheduled)
        return min(scheduled, remaining)

    def sleep(self) -> bool:
        """Sleep the next pause; False (at once) if the deadline has passed."""
        pause = self.pause()
        if pause is None:
            return False
        time.sleep(pause)  # the pace between tries, not a wait for an outcome
        return True

    async def wait(self) -> bool:
        """``sleep`` for asyncio code."""
        import asyncio  # only asyncio callers pay for it

        pause = self.pause()
        if pause is None:
            return False
        await asyncio.sleep(pause)  # the pace between tries, not a wait for an outcome
        return True

