"""Change feed for WatchTask: one poller per process, shared by every open watch.

Polling DynamoDB per stream would cost one read per stream every interval; instead one loop reads the
state of every watched task with a consistent BatchGetItem (100 tasks a request, payload and result
left out) and hands each subscriber the latest state when its version (seq, status, updated_at)
changed. Quick successive changes may coalesce into one update, which the contract allows: each
update a watcher sends is a real, current state, and the terminal one is never skipped because no
transition leaves it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from reference_server.backends import BackendUnavailable
from reference_server.store import Store, TaskRecord

log = logging.getLogger(__name__)

#: Seconds between two polls of the watched tasks.
POLL_INTERVAL_S = 0.05


class Subscription:
    """One watcher's view of one task: the latest state the poller saw, and a wake-up event."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self._latest: TaskRecord | None = None
        self._error: BackendUnavailable | None = None
        self._changed = asyncio.Event()

    def offer(self, record: TaskRecord) -> None:
        """Called by the poller with the task's current state."""
        if self._latest is None or self._latest.version != record.version:
            self._latest = record
            self._changed.set()

    def fail(self, error: BackendUnavailable) -> None:
        """Called by the poller when DynamoDB could not be read."""
        self._error = error
        self._changed.set()

    async def next_state(self, after: tuple[int, str, int]) -> TaskRecord:
        """Wait for a state whose version is not ``after``; BackendUnavailable if a poll failed."""
        while True:
            if self._error is not None:
                raise self._error
            latest = self._latest
            if latest is not None and latest.version != after:
                return latest
            self._changed.clear()
            await self._changed.wait()


class WatchHub:
    """Polls the watched tasks of this process; the poll loop runs only while someone watches."""

    def __init__(self, store: Store, interval: float = POLL_INTERVAL_S, tolerance: float = 5.0) -> None:
        self._store = store
        self._interval = interval
        self._tolerance = tolerance  # seconds of failing polls before watchers are told UNAVAILABLE
        self._subscriptions: dict[str, set[Subscription]] = {}
        self._loop_task: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def subscribe(self, task_id: str) -> AsyncIterator[Subscription]:
        """Register a watcher of ``task_id`` for the duration of the block."""
        subscription = Subscription(task_id)
        self._subscriptions.setdefault(task_id, set()).add(subscription)
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.create_task(self._poll_loop(), name="watch-poller")
        try:
            yield subscription
        finally:
            watchers = self._subscriptions.get(task_id)
            if watchers is not None:
                watchers.discard(subscription)
                if not watchers:
                    del self._subscriptions[task_id]

    async def close(self) -> None:
        """Stop the poll loop (at shutdown)."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)

    async def _poll_loop(self) -> None:
        loop = asyncio.get_running_loop()
        failing_since: float | None = None
        while self._subscriptions:
            ids = list(self._subscriptions)
            try:
                states = await self._store.get_states(ids)
            except BackendUnavailable as exc:
                log.warning("watch poll failed: %s", exc)
                failing_since = loop.time() if failing_since is None else failing_since
                if loop.time() - failing_since >= self._tolerance:  # a blip is ridden out, an outage is not
                    for task_id in ids:
                        for subscription in self._subscriptions.get(task_id, ()):
                            subscription.fail(exc)
            else:
                failing_since = None
                for task_id, record in states.items():
                    for subscription in self._subscriptions.get(task_id, ()):
                        subscription.offer(record)
            await asyncio.sleep(self._interval)  # the poll period, not a synchronisation wait
