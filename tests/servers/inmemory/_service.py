"""The taskqueue.v1.TaskQueue servicer over the in-memory store (grpc.aio)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import grpc

from taskqueue_proto import taskqueue_pb2 as pb
from taskqueue_proto import taskqueue_pb2_grpc as pb_grpc

from ._store import Fingerprint, Store, TaskRecord
from ._tasks import TASK_TYPES, payload_error
from ._worker import Worker

DEFAULT_MAX_ATTEMPTS = 5
MAX_KEY_BYTES = 256
_SIMULATED_ROUND_TRIP_S = 0.01
"""How long the ``race_duplicates`` break pretends its storage lookup takes."""
_SIMULATED_QUEUE_SEND_S = 0.05
"""How long the ``cancel_strands_task`` break pretends sending the task's message takes."""
_OUTAGE_EVERY_S, _OUTAGE_S = 3.0, 0.5
"""The ``internal_on_backend_outage`` break's simulated outage: the first 0.5 s of every 3 s."""

Context = grpc.aio.ServicerContext[Any, Any]


class TaskQueueService(pb_grpc.TaskQueueServicer):
    """Validates requests, applies idempotency, and reads tasks for the API."""

    def __init__(
        self,
        store: Store,
        worker: Worker,
        breaks: frozenset[str],
        max_payload_bytes: int,
        lose_answers: int = 0,
    ) -> None:
        self._store = store
        self._worker = worker
        self._breaks = breaks
        self._max_payload_bytes = max_payload_bytes
        self._stale_turn = False
        self._lose_every = lose_answers
        self._created = 0

    def _loses_answer(self) -> bool:
        """``--lose-answers N``: whether this creating submit's answer is lost (every Nth)."""
        self._created += 1
        return self._lose_every > 0 and self._created % self._lose_every == 0

    async def _backend(self, context: Context) -> None:
        """The ``internal_on_backend_outage`` break: its simulated outage answers INTERNAL."""
        if "internal_on_backend_outage" in self._breaks and time.monotonic() % _OUTAGE_EVERY_S < _OUTAGE_S:
            await context.abort(grpc.StatusCode.INTERNAL, "backend unreachable: store timed out")

    async def _reject(self, context: Context, message: str) -> NoReturn:
        code = (
            grpc.StatusCode.INTERNAL
            if "wrong_error_codes" in self._breaks
            else grpc.StatusCode.INVALID_ARGUMENT
        )
        await context.abort(code, message)

    def _submit_error(self, request: pb.SubmitTaskRequest) -> str | None:
        """Why the submit is invalid (spec 9), or None."""
        key_bytes = len(request.idempotency_key.encode("utf-8"))
        key_limit = MAX_KEY_BYTES - 1 if "key_limit_off_by_one" in self._breaks else MAX_KEY_BYTES
        if key_bytes == 0:
            return "idempotency_key: must not be empty"
        if key_bytes > key_limit:
            return f"idempotency_key: {key_bytes} bytes, at most {key_limit} allowed"
        if request.task_type not in TASK_TYPES:
            return f"task_type: {request.task_type!r} is not one of {', '.join(TASK_TYPES)}"
        too_long = len(request.payload) > self._max_payload_bytes
        if too_long and not self._breaks & {"payload_limit_ignored", "payload_limit_unbounded"}:
            return f"payload: {len(request.payload)} bytes, at most {self._max_payload_bytes} allowed"
        if not 0 <= request.max_attempts <= 100:
            return f"max_attempts: {request.max_attempts} is outside 0..100"
        if "bad_payload_stuck" in self._breaks:
            return None
        return payload_error(request.task_type, request.payload, "extra_member_rejected" in self._breaks)

    def _fingerprint(self, request: pb.SubmitTaskRequest) -> Fingerprint:
        attempts = request.max_attempts
        if "raw_max_attempts_compare" not in self._breaks:
            attempts = attempts or DEFAULT_MAX_ATTEMPTS
        return (request.task_type, request.payload, attempts)

    async def SubmitTask(self, request: pb.SubmitTaskRequest, context: Context) -> pb.SubmitTaskResponse:
        await self._backend(context)
        error = self._submit_error(request)
        fingerprint = self._fingerprint(request)
        effective = request.max_attempts or DEFAULT_MAX_ATTEMPTS
        if error is not None:
            claimable = request.idempotency_key and self._store.by_key(request.idempotency_key) is None
            if "rejected_submit_reserves_key" in self._breaks and claimable:
                self._store.insert(request, fingerprint, effective)
            if "rejected_key_truncated" in self._breaks and error.startswith("idempotency_key"):
                kept = request.idempotency_key.encode()[:MAX_KEY_BYTES].decode(errors="ignore")
                self._store.insert(
                    pb.SubmitTaskRequest(
                        idempotency_key=kept, task_type=request.task_type, payload=request.payload
                    ),
                    fingerprint,
                    effective,
                )
            await self._reject(context, error)
        existing = self._store.by_key(request.idempotency_key)
        if existing is None and "race_duplicates" in self._breaks:
            await asyncio.sleep(_SIMULATED_ROUND_TRIP_S)
        if existing is not None:
            return await self._resubmit(existing, request, fingerprint, context)
        record = self._store.insert(request, fingerprint, effective)
        lost = self._loses_answer()
        if "cancel_strands_task" in self._breaks:
            # The break: queueing is a separate backend call; a client that cancels meanwhile
            # cancels this handler, and the task stays PENDING, unqueued, for ever.
            await asyncio.sleep(_SIMULATED_QUEUE_SEND_S)
            if lost:  # a submit that fails here strands its task just the same
                await context.abort(grpc.StatusCode.UNAVAILABLE, "the queue did not answer")
        self._worker.enqueue(record.task.task_id)
        if lost or "unavailable_after_create" in self._breaks:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "try again")
        created = "created_false_on_create" not in self._breaks
        return pb.SubmitTaskResponse(
            task_id=record.task.task_id, status=pb.TASK_STATUS_PENDING, created=created
        )

    async def _resubmit(
        self, existing: TaskRecord, request: pb.SubmitTaskRequest, fingerprint: Fingerprint, context: Context
    ) -> pb.SubmitTaskResponse:
        """A used key: the same request answers the existing task, a different one ALREADY_EXISTS."""
        if existing.fingerprint != fingerprint and "no_already_exists" not in self._breaks:
            if "conflict_overwrites" in self._breaks:
                existing.task.payload = request.payload
            await context.abort(
                grpc.StatusCode.ALREADY_EXISTS,
                f"idempotency_key: already used by a different request (task {existing.task.task_id})",
            )
        self._worker.rerun(existing.task.task_id)
        created = "created_true_on_resubmit" in self._breaks
        return pb.SubmitTaskResponse(
            task_id=existing.task.task_id, status=existing.task.status, created=created
        )

    async def _lookup(self, task_id: str, context: Context) -> TaskRecord:
        await self._backend(context)
        if not task_id:
            await self._reject(context, "task_id: must not be empty")
        record = self._store.get(task_id)
        if record is None:
            if "not_found_as_invalid" in self._breaks:
                await self._reject(context, f"task_id: no task {task_id!r}")
            await context.abort(grpc.StatusCode.NOT_FOUND, f"task_id: no task {task_id!r}")
        return record

    async def GetTask(self, request: pb.GetTaskRequest, context: Context) -> pb.Task:
        record = await self._lookup(request.task_id, context)
        if "stale_reads" in self._breaks:
            self._stale_turn = not self._stale_turn
            if self._stale_turn and record.before is not None:
                return record.before
        return record.snapshot(self._breaks)

    async def ListTaskEvents(
        self, request: pb.ListTaskEventsRequest, context: Context
    ) -> pb.ListTaskEventsResponse:
        record = await self._lookup(request.task_id, context)
        return pb.ListTaskEventsResponse(events=record.events)

    async def WatchTask(self, request: pb.WatchTaskRequest, context: Context) -> AsyncIterator[pb.Task]:
        record = await self._lookup(request.task_id, context)
        while True:
            seen, changed = record.version, record.changed
            snapshot = record.snapshot(self._breaks)
            yield snapshot
            # Judge by what was sent: the task may have ended while it was being sent (spec 8.2).
            sent_terminal = snapshot.status in (pb.TASK_STATUS_COMPLETED, pb.TASK_STATUS_DEAD)
            if "watch_one_snapshot_then_unavailable" in self._breaks and not sent_terminal:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "watch interrupted")
            if sent_terminal:
                if "watch_never_closes" in self._breaks:
                    await asyncio.Event().wait()
                return
            if record.version == seen:
                await changed.wait()

    async def GetServerInfo(self, request: pb.GetServerInfoRequest, context: Context) -> pb.ServerInfo:
        return pb.ServerInfo(
            implementation="pytest-taskqueue-tests-inmemory",
            version="1",
            task_types=TASK_TYPES,
            default_max_attempts=DEFAULT_MAX_ATTEMPTS,
            max_payload_bytes=self._max_payload_bytes,
            capabilities=["reflection"],
        )
