"""The in-process worker: runs attempts, records their outcome, schedules retries after a backoff."""

from __future__ import annotations

import asyncio
import contextlib

from taskqueue_proto import taskqueue_pb2 as pb

from ._store import NewEvent, Store, TaskRecord
from ._tasks import AttemptFailed, execute, payload_error

_RUNNABLE: frozenset[int] = frozenset({pb.TASK_STATUS_PENDING, pb.TASK_STATUS_RETRYING})
_RERUN_BREAKS: frozenset[str] = frozenset({"rerun_on_resubmit", "delayed_rerun_on_resubmit"})
_RERUN_DELAY_S = 0.1
"""How long after a resubmit the ``delayed_rerun_on_resubmit`` break runs the task again: within the
scenarios' quiet window (scenarios._support.QUIET_MS); a rerun much later is the closing sweep's
(the ``rerun_later`` break)."""
_RERUN_AFTER_S = 2.0
"""The ``rerun_later`` break runs a completed task again this long after it completed."""


class Worker:
    """A fixed number of coroutines taking task ids from one asyncio queue."""

    def __init__(self, store: Store, breaks: frozenset[str], backoff_s: float, concurrency: int) -> None:
        self._store = store
        self._breaks = breaks
        self._backoff_s = backoff_s
        self._concurrency = concurrency
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._loops: list[asyncio.Task[None]] = []
        self._timers: set[asyncio.TimerHandle] = set()
        self._attempts_started = 0
        self._reruns: set[str] = set()
        """Completed tasks the ``rerun_later`` break has queued once more."""

    def start(self) -> None:
        self._loops = [asyncio.create_task(self._run()) for _ in range(self._concurrency)]

    async def stop(self) -> None:
        """Cancel pending retries and the worker loops."""
        for timer in self._timers:
            timer.cancel()
        for loop in self._loops:
            loop.cancel()
        for loop in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await loop

    def enqueue(self, task_id: str) -> None:
        self._queue.put_nowait(task_id)

    def rerun(self, task_id: str) -> None:
        """The rerun breaks: queue a task again that a resubmit found (at once, or a moment later)."""
        if "delayed_rerun_on_resubmit" in self._breaks:
            self._later(task_id, _RERUN_DELAY_S)
        elif "rerun_on_resubmit" in self._breaks:
            self.enqueue(task_id)

    def _later(self, task_id: str, delay_s: float) -> None:
        def fire() -> None:
            self._timers.discard(timer)
            self.enqueue(task_id)

        timer = asyncio.get_running_loop().call_later(delay_s, fire)
        self._timers.add(timer)

    def _retry_later(self, task_id: str) -> None:
        self._later(task_id, self._backoff_s)

    async def _run(self) -> None:
        while True:
            task_id = await self._queue.get()
            record = self._store.get(task_id)
            if record is None:
                continue
            stuck = "bad_payload_stuck" in self._breaks
            if stuck and payload_error(record.task.task_type, record.task.payload) is not None:
                continue  # the break: a malformed payload that was accepted is never run
            if "never_complete_every_50th" in self._breaks and int(task_id.rsplit("-", 1)[-1]) % 50 == 0:
                continue  # the break: this task is never run
            rerun = bool(self._breaks & _RERUN_BREAKS) or task_id in self._reruns
            runnable = record.task.status in _RUNNABLE or rerun
            if "retrying_shown_as_processing" in self._breaks:
                runnable = runnable or record.task.status == pb.TASK_STATUS_PROCESSING
            if runnable:
                await self._attempt(record)

    def _dead_after(self, max_attempts: int) -> int:
        """How many failed attempts make the task DEAD (max_attempts, unless a break says otherwise)."""
        if "extra_attempt" in self._breaks:
            return max_attempts + 1
        if "dead_too_early" in self._breaks:
            return max(max_attempts - 1, 1)
        return max_attempts

    async def _attempt(self, record: TaskRecord) -> None:
        task = record.task
        attempt = task.attempts + 1
        task.status = pb.TASK_STATUS_PROCESSING
        task.attempts = attempt
        started = (
            [] if "missing_event" in self._breaks else [NewEvent(pb.TASK_EVENT_TYPE_PROCESSING, attempt)]
        )
        self._store.record(record, started)
        self._attempts_started += 1
        abandon = "abandons_without_fault" in self._breaks and self._attempts_started % 7 == 0
        if abandon and attempt < task.max_attempts:
            await self._attempt(record)  # the break: attempt abandoned by a live worker, the next starts
            return
        try:
            result = await execute(
                task.task_type, task.payload, attempt, sleep="sleep_returns_at_once" not in self._breaks
            )
        except AttemptFailed as failure:
            self._failed(record, attempt, str(failure))
            return
        if "echo_text_result" in self._breaks:
            result = result.decode("utf-8", errors="replace").encode()
        task.status = pb.TASK_STATUS_COMPLETED
        task.result = result
        copies = 2 if "double_complete" in self._breaks else 1
        self._store.record(record, [NewEvent(pb.TASK_EVENT_TYPE_COMPLETED, attempt)] * copies)
        if "rerun_later" in self._breaks and task.task_id not in self._reruns:
            self._reruns.add(task.task_id)  # once: the rerun's own COMPLETED schedules nothing
            self._later(task.task_id, _RERUN_AFTER_S)

    def _failed(self, record: TaskRecord, attempt: int, error: str) -> None:
        task = record.task
        task.last_error = "" if "no_last_error" in self._breaks else error
        numbered = attempt + 1 if "wrong_attempt_numbers" in self._breaks else attempt
        failed = NewEvent(pb.TASK_EVENT_TYPE_FAILED, numbered, error)
        if attempt >= self._dead_after(task.max_attempts):
            task.status = pb.TASK_STATUS_DEAD
            self._store.record(record, [failed, NewEvent(pb.TASK_EVENT_TYPE_DEAD)])
            return
        if "retrying_shown_as_processing" not in self._breaks:
            task.status = pb.TASK_STATUS_RETRYING
        self._store.record(record, [failed])
        self._retry_later(task.task_id)
