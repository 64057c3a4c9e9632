"""The worker: receives task messages from SQS and runs attempts, recording every step in DynamoDB.

The task item decides, the message only wakes a worker up. For each message the worker reads the task
(on a message's first delivery it starts from the submitted state the message carries instead, and a
refused claim answers with the task as it is) and acts on its status:

- COMPLETED: the message is deleted. DEAD: the message is copied to the dead-letter queue (unless the
  task says that already happened), then deleted.
- PROCESSING with a live lease: another attempt is running somewhere; the message is left alone and
  comes back after its visibility timeout.
- PROCESSING with an expired lease: that attempt's worker died. FAILED(n, "attempt abandoned: ...")
  is recorded (it counts toward max_attempts), then the task goes on as after any failure.
- PENDING or RETRYING: the worker claims the next attempt (a conditional transition, so of two workers
  with duplicate messages only one wins), runs it while a heartbeat extends the lease and the message's
  visibility (four times per visibility timeout, on a fixed schedule, both calls at once, so a slow
  backend call does not push the next beat back), and records COMPLETED or FAILED (a backend slow to
  take that write is retried for a few backend timeouts, the heartbeat still beating). After a failure
  it waits the backoff itself when it is under a second (SQS visibility has one-second granularity)
  or hands the message back with that visibility otherwise.

Each ReceiveMessage asks for as many messages as there are free slots (at most ten). A busy worker
waits a moment (up to 50 ms) for half its slots to be free before it receives, so it takes several
messages per call instead of one per finished attempt; an idle one receives at once.

A message this process is already driving that SQS delivers again (its visibility ran out while the
worker was busy, likely with a short timeout on a loaded machine) is not a second attempt: its new
receipt handle joins the running one (heartbeats and the final delete use every handle of the task),
so a short visibility timeout never makes a worker abandon its own live attempt.

On shutdown the worker stops receiving, lets running attempts finish within the grace period, and
releases the rest: their attempt is recorded as abandoned and their message made visible at once, so
the next worker proceeds without waiting for a lease to run out. No message is ever deleted before its
task is COMPLETED or DEAD (and, for DEAD, in the dead-letter queue).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable

from reference_server.backends import RECEIVE_WAIT_SECONDS, BackendUnavailable
from reference_server.config import Config
from reference_server.queue import BATCH_LIMIT, Message, Queues
from reference_server.store import (
    Status,
    Store,
    TaskRecord,
    TransitionConflict,
    from_submitted_state,
    now_ms,
)
from reference_server.tasks import AttemptFailed, run_attempt

log = logging.getLogger(__name__)

#: Backoffs at least this long are waited by handing the message back to SQS instead of in-process.
_RELEASE_BACKOFF_MS = 1000
#: Longest the receive loop waits for more free slots before it receives for the ones it has.
_GATHER_SLOTS_S = 0.05


class Worker:
    """Runs attempts for messages of the work queue, ``config.concurrency`` at a time."""

    def __init__(self, config: Config, store: Store, queues: Queues, announce: Callable[[str], None]) -> None:
        self._config = config
        self._store = store
        self._queues = queues
        self._announce = announce
        self._lease_ms = config.visibility_timeout * 1000
        self._heartbeat_s = config.visibility_timeout / 4
        #: Receipt handles of the tasks this process is driving, newest last (see the module docstring).
        self._handles: dict[str, list[str]] = {}
        self._stopping = asyncio.Event()  # no new messages, no new attempts
        self._releasing = asyncio.Event()  # grace is over: abandon running attempts now
        self._inflight: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the receive loop in the background."""
        self._loop_task = asyncio.create_task(self._receive_loop(), name="worker-receive-loop")

    async def stop(self, grace: float) -> None:
        """Stop receiving, give running attempts ``grace`` seconds, then release what is left."""
        self._stopping.set()
        if self._loop_task is not None:
            await self._loop_task
        if self._inflight:
            log.info("worker stopping: waiting up to %.1fs for %d message(s)", grace, len(self._inflight))
            _, pending = await asyncio.wait(set(self._inflight), timeout=grace)
            if pending:
                log.info("worker stopping: releasing %d message(s)", len(pending))
                self._releasing.set()
                _, stuck = await asyncio.wait(pending, timeout=self._config.backend_timeout * 4 + 1)
                for task in stuck:  # the backends do not answer: the visibility timeout will redeliver
                    task.cancel()
                if stuck:
                    await asyncio.wait(stuck)
        await self._queues.drain(self._config.backend_timeout * 2)
        log.info("worker stopped")

    # ---------------------------------------------------------------- receiving

    async def _receive_loop(self) -> None:
        announced = False
        failures = 0
        while not self._stopping.is_set():
            if len(self._inflight) >= self._config.concurrency:  # all slots busy: wait for one, or stop
                stopping = asyncio.ensure_future(self._stopping.wait())
                await asyncio.wait({*self._inflight, stopping}, return_when=asyncio.FIRST_COMPLETED)
                stopping.cancel()
                continue
            if not announced:
                self._announce("worker ready")
                announced = True
            await self._gather_free_slots()
            free = self._config.concurrency - len(self._inflight)
            try:
                messages = await self._queues.receive(free, RECEIVE_WAIT_SECONDS)
                failures = 0
            except Exception as exc:  # BackendUnavailable, or anything unexpected: keep polling
                failures += 1
                delay = min(0.1 * 2**failures, 5.0)
                if isinstance(exc, BackendUnavailable):
                    log.warning("receive failed (retrying in %.1fs): %s", delay, exc)
                else:
                    log.exception("receive failed unexpectedly (retrying in %.1fs)", delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=delay)
                continue
            for message in messages:
                if self._join_running(message):
                    continue
                if self._stopping.is_set():  # received while stopping: hand it straight back
                    await self._set_visibility(message, 0)
                    continue
                task = asyncio.create_task(self._handle(message), name=f"message-{message.task_id}")
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)

    async def _gather_free_slots(self) -> None:
        """While attempts run and fewer than half the slots of a receive are free, wait a moment
        (at most ``_GATHER_SLOTS_S``) for more to free, so one ReceiveMessage brings several messages
        rather than one per finished attempt. An idle worker does not wait."""
        wanted = min(self._config.concurrency, BATCH_LIMIT)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _GATHER_SLOTS_S
        while (
            self._inflight
            and 2 * (self._config.concurrency - len(self._inflight)) < wanted
            and not self._stopping.is_set()
            and (remaining := deadline - loop.time()) > 0
        ):
            await asyncio.wait(set(self._inflight), timeout=remaining, return_when=asyncio.FIRST_COMPLETED)

    def _join_running(self, message: Message) -> bool:
        """True when this process already drives the message's task: the message (a redelivery or a
        duplicate) joins that drive, its handle kept for heartbeats and the final delete."""
        handles = self._handles.get(message.task_id or "")
        if handles is None:
            return False
        handles.append(message.receipt_handle)
        return True

    # ----------------------------------------------------------------- handling

    async def _handle(self, message: Message) -> None:
        """Drive one message's task until the message can be deleted or must be left to SQS."""
        if message.task_id is not None:
            self._handles[message.task_id] = [message.receipt_handle]
        try:
            await self._drive(message)
        except BackendUnavailable as exc:
            # The message stays invisible until its timeout, then someone picks the task up again.
            log.warning("task %s: backend unavailable, leaving the message to SQS: %s", message.task_id, exc)
        except Exception:
            log.exception("task %s: unexpected error, leaving the message to SQS", message.task_id)
        finally:
            if message.task_id is not None:
                self._handles.pop(message.task_id, None)

    async def _drive(self, message: Message) -> None:
        task_id = message.task_id
        if task_id is None:
            log.error("deleting a message that is not a task message: %r", message.body[:200])
            await self._queues.delete(message.receipt_handle)
            return
        # A first delivery carries the task as it was submitted: try the claim on that guess (a
        # refused claim answers with the task as it is), else read the task.
        found = from_submitted_state(task_id, message.submitted) if message.submitted is not None else None
        if found is None:
            found = await self._store.get_task(task_id, with_result=False)
        if found is None:
            log.error("deleting the message of unknown task %s", task_id)
            await self._queues.delete(message.receipt_handle)
            return
        task: TaskRecord | None = found
        while task is not None:
            if task.status == Status.COMPLETED:
                self._delete(message)
                return
            if task.status == Status.DEAD:
                await self._bury(task, message)
                return
            if task.status == Status.PROCESSING:
                if task.lease_until_ms > now_ms():
                    return  # running elsewhere; the message comes back after its visibility timeout
                log.info("task %s: attempt %d abandoned (lease expired)", task_id, task.attempts)
                task = await self._record_failure(task, "attempt abandoned: lease expired", backoff_ms=0)
                continue
            # PENDING or RETRYING
            if self._stopping.is_set():
                await self._set_visibility(message, 0)
                return
            if task.status == Status.RETRYING and task.not_before_ms > now_ms():
                if not await self._wait_backoff(task, message):
                    return
            try:
                claimed = await self._store.claim(task, self._lease_ms)
            except TransitionConflict as conflict:
                task = await self._reload(task_id, conflict)
                continue
            task = await self._run(claimed, message)

    async def _reload(self, task_id: str, conflict: TransitionConflict | None = None) -> TaskRecord:
        """The current state of a task that is known to exist (tasks are never deleted): the one a
        refused transition came back with, else read."""
        if conflict is not None and conflict.current is not None:
            return conflict.current
        task = await self._store.get_task(task_id, with_result=False)
        if task is None:
            raise BackendUnavailable(f"task {task_id} disappeared from the table")
        return task

    async def _record_failure(self, task: TaskRecord, error: str, backoff_ms: int) -> TaskRecord:
        """Record a failed attempt; returns the new state, or the re-read state if someone moved first."""
        try:
            return await self._store.fail(task, error, backoff_ms)
        except TransitionConflict as conflict:
            return await self._reload(task.task_id, conflict)

    async def _wait_backoff(self, task: TaskRecord, message: Message) -> bool:
        """Wait until the task may be retried. False when the message was handed back to SQS instead."""
        remaining_ms = task.not_before_ms - now_ms()
        if remaining_ms >= _RELEASE_BACKOFF_MS:
            await self._set_visibility(message, math.ceil(remaining_ms / 1000))
            return False
        if remaining_ms * 3 >= self._lease_ms:  # keep the message ours for the whole wait
            await self._set_visibility(message, self._config.visibility_timeout)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._releasing.wait(), timeout=remaining_ms / 1000)
        if self._releasing.is_set():
            await self._set_visibility(message, 0)
            return False
        return True

    async def _run(self, task: TaskRecord, message: Message) -> TaskRecord | None:
        """Run the claimed attempt with a heartbeat and record its outcome.

        The heartbeat keeps beating until the outcome is written, so a backend that is slow to take
        the outcome (a loaded machine) does not turn a finished attempt into an abandoned one.
        Returns the task's new state for the caller's loop, or None when the message was handed back.
        """
        attempt = asyncio.create_task(run_attempt(task.task_type, task.payload, task.attempts))
        lease_lost = asyncio.Event()
        heartbeat = asyncio.create_task(self._heartbeat(task, message, lease_lost))
        lost_wait = asyncio.create_task(lease_lost.wait())
        release_wait = asyncio.create_task(self._releasing.wait())
        try:
            try:
                await asyncio.wait({attempt, lost_wait, release_wait}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for helper in (lost_wait, release_wait):
                    helper.cancel()
                await asyncio.gather(lost_wait, release_wait, return_exceptions=True)
                if not attempt.done():
                    attempt.cancel()
                    await asyncio.gather(attempt, return_exceptions=True)
            if not attempt.cancelled():
                return await self._settle(task, attempt)
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
        if lease_lost.is_set():
            return await self._reload(task.task_id)
        # Shutdown past the grace period: give the attempt up so the next worker starts at once.
        log.info("task %s: releasing attempt %d (shutting down)", task.task_id, task.attempts)
        after = await self._record_failure(task, "attempt abandoned: worker shutting down", backoff_ms=0)
        if after.status == Status.DEAD:
            return after  # the caller's loop puts it in the dead-letter queue
        await self._set_visibility(message, 0)
        return None

    async def _settle(self, task: TaskRecord, attempt: asyncio.Task[bytes]) -> TaskRecord:
        """Write a finished attempt's outcome (COMPLETED or FAILED), retrying a backend that does not
        answer for up to four backend timeouts while the heartbeat keeps the lease; then
        BackendUnavailable. Returns the re-read state if the task moved on meanwhile."""
        error = attempt.exception()
        if error is not None and not isinstance(error, AttemptFailed):
            log.error("task %s: attempt %d raised", task.task_id, task.attempts, exc_info=error)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + 4 * self._config.backend_timeout
        delay = 0.05
        while True:
            try:
                if error is not None:
                    detail = (
                        str(error) if isinstance(error, AttemptFailed) else f"{type(error).__name__}: {error}"
                    )
                    return await self._record_failure(task, detail, self._config.backoff_ms(task.attempts))
                try:
                    return await self._store.complete(task, attempt.result())
                except TransitionConflict as conflict:  # lost the lease, or a timed-out try of ours applied
                    log.warning(
                        "task %s: attempt %d ended after its task moved on", task.task_id, task.attempts
                    )
                    return await self._reload(task.task_id, conflict)
            except BackendUnavailable as exc:
                if loop.time() + delay >= give_up or self._releasing.is_set():
                    raise
                log.warning(
                    "task %s: outcome of attempt %d not written yet: %s", task.task_id, task.attempts, exc
                )
            await asyncio.sleep(delay)  # a retry pause, not a synchronisation wait
            delay = min(delay * 2, 1.0)

    async def _heartbeat(self, task: TaskRecord, message: Message, lease_lost: asyncio.Event) -> None:
        """Four times per visibility timeout, extend the lease and the message's visibility together.

        Beats keep a fixed schedule: a beat whose calls ran long is followed at once by the next one
        that is due, rather than a whole interval later.
        """
        loop = asyncio.get_running_loop()
        next_beat = loop.time() + self._heartbeat_s
        while True:
            await asyncio.sleep(max(0.0, next_beat - loop.time()))  # a periodic timer, not a sync wait
            next_beat = max(next_beat + self._heartbeat_s, loop.time())
            lease, _ = await asyncio.gather(
                self._store.extend_lease(task, self._lease_ms),
                self._set_visibility(message, self._config.visibility_timeout),
                return_exceptions=True,
            )
            if isinstance(lease, TransitionConflict):
                log.warning("task %s: lease of attempt %d lost", task.task_id, task.attempts)
                lease_lost.set()
                return
            if isinstance(lease, BackendUnavailable):
                log.warning("task %s: lease not extended: %s", task.task_id, lease)
            elif isinstance(lease, BaseException):
                raise lease
            else:
                task = lease

    async def _bury(self, task: TaskRecord, message: Message) -> None:
        """DEAD task: make sure the dead-letter queue has its message, then delete it from the queue."""
        if not task.dead_lettered:
            await self._queues.send_dead(task.task_id)
            await self._store.mark_dead_lettered(task.task_id)
            log.info(
                "task %s: dead after %d attempt(s), message in the dead-letter queue",
                task.task_id,
                task.attempts,
            )
        self._delete(message)

    def _receipts(self, message: Message) -> list[str]:
        """Every receipt handle of the message's task this process holds (the message's own first)."""
        return list(self._handles.get(message.task_id or "", [message.receipt_handle]))

    def _delete(self, message: Message) -> None:
        """Delete the task's message under every handle this process received it with, in the
        background (a batch call shared with other deletes; see ``Queues.discard``)."""
        for handle in self._receipts(message):
            self._queues.discard(handle)

    async def _set_visibility(self, message: Message, seconds: int) -> None:
        """Change a message's visibility (under each handle held); failures are logged (SQS will
        redeliver it anyway). A stale handle, superseded by a later delivery, is expected."""
        handles = self._receipts(message)
        try:
            changed = await asyncio.gather(*(self._queues.set_visibility(h, seconds) for h in handles))
        except BackendUnavailable as exc:
            log.warning("task %s: visibility not changed: %s", message.task_id, exc)
            return
        if not any(changed):
            log.info("task %s: message was received elsewhere meanwhile", message.task_id)
