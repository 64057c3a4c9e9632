"""The taskqueue.v1.TaskQueue gRPC service (grpc.aio), on top of Store, Queues and WatchHub.

Requests are validated first, so bad input always answers INVALID_ARGUMENT with a message naming the
field, before any backend is touched. Backend failures answer UNAVAILABLE (the client may retry; a
submit with the same idempotency key is safe to repeat). Nothing here keeps task state in memory:
several server processes can share one table and queue.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from functools import partial
from typing import NoReturn, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from reference_server.backends import BackendUnavailable
from reference_server.config import Config
from reference_server.queue import Queues
from reference_server.store import (
    EventRecord,
    IdempotencyConflict,
    Status,
    Store,
    TaskRecord,
    submitted_state,
)
from reference_server.tasks import TASK_TYPES, InvalidPayload
from reference_server.watch import WatchHub
from taskqueue_proto import taskqueue_pb2, taskqueue_pb2_grpc

log = logging.getLogger(__name__)

T = TypeVar("T")

IMPLEMENTATION = "pytest-taskqueue-reference"
DEFAULT_MAX_ATTEMPTS = 5
MAX_ATTEMPTS_LIMIT = 100
MAX_PAYLOAD_BYTES = 262_144
MAX_KEY_BYTES = 256
#: Optional features listed by GetServerInfo (docs/spec.md 8.3): reflection is served.
CAPABILITIES = ("reflection",)

_STATUS = {
    Status.PENDING: taskqueue_pb2.TASK_STATUS_PENDING,
    Status.PROCESSING: taskqueue_pb2.TASK_STATUS_PROCESSING,
    Status.RETRYING: taskqueue_pb2.TASK_STATUS_RETRYING,
    Status.COMPLETED: taskqueue_pb2.TASK_STATUS_COMPLETED,
    Status.DEAD: taskqueue_pb2.TASK_STATUS_DEAD,
}


def _version() -> str:
    try:
        return importlib.metadata.version("pytest-taskqueue")
    except importlib.metadata.PackageNotFoundError:
        return "0.1.0"


def _timestamp(micros: int) -> Timestamp:
    return Timestamp(seconds=micros // 1_000_000, nanos=(micros % 1_000_000) * 1000)


def task_message(task: TaskRecord) -> taskqueue_pb2.Task:
    """The proto Task of a stored task."""
    return taskqueue_pb2.Task(
        task_id=task.task_id,
        idempotency_key=task.idempotency_key,
        task_type=task.task_type,
        payload=task.payload,
        status=_STATUS[task.status],
        attempts=task.attempts,
        max_attempts=task.max_attempts,
        result=task.result if task.status == Status.COMPLETED else b"",
        last_error=task.last_error,
        created_at=_timestamp(task.created_at_us),
        updated_at=_timestamp(task.updated_at_us),
    )


def event_message(event: EventRecord) -> taskqueue_pb2.TaskEvent:
    """The proto TaskEvent of a stored event."""
    return taskqueue_pb2.TaskEvent(
        sequence=event.seq,
        type=taskqueue_pb2.TaskEventType.Value(f"TASK_EVENT_TYPE_{event.type.value}"),
        attempt=event.attempt,
        at=_timestamp(event.at_us),
        detail=event.detail,
    )


class RpcError(Exception):
    """Ends an RPC with ``code`` and ``message`` (raised by validation and by the handlers)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _invalid(message: str) -> RpcError:
    return RpcError(grpc.StatusCode.INVALID_ARGUMENT, message)


def validate_submit(request: taskqueue_pb2.SubmitTaskRequest) -> int:
    """Check a SubmitTaskRequest; returns the effective max_attempts or raises INVALID_ARGUMENT."""
    key_bytes = len(request.idempotency_key.encode("utf-8"))
    if key_bytes == 0:
        raise _invalid("idempotency_key is required (1 to 256 bytes of UTF-8)")
    if key_bytes > MAX_KEY_BYTES:
        raise _invalid(f"idempotency_key is {key_bytes} bytes of UTF-8; at most {MAX_KEY_BYTES} are allowed")
    if not request.task_type:
        raise _invalid(f"task_type is required; this server accepts {sorted(TASK_TYPES)}")
    kind = TASK_TYPES.get(request.task_type)
    if kind is None:
        raise _invalid(
            f"task_type {request.task_type!r} is unknown; this server accepts {sorted(TASK_TYPES)}"
        )
    if len(request.payload) > MAX_PAYLOAD_BYTES:
        raise _invalid(f"payload is {len(request.payload)} bytes; at most {MAX_PAYLOAD_BYTES} are allowed")
    if request.max_attempts < 0 or request.max_attempts > MAX_ATTEMPTS_LIMIT:
        raise _invalid(
            f"max_attempts is {request.max_attempts}; it must be 0 (server default, "
            f"{DEFAULT_MAX_ATTEMPTS}) or 1..{MAX_ATTEMPTS_LIMIT}"
        )
    try:
        kind.validate(request.payload)
    except InvalidPayload as exc:
        raise _invalid(str(exc)) from None
    return request.max_attempts or DEFAULT_MAX_ATTEMPTS


def _require_task_id(task_id: str) -> None:
    if not task_id:
        raise _invalid("task_id is required")


def _not_found(task_id: str) -> RpcError:
    return RpcError(grpc.StatusCode.NOT_FOUND, f"task_id {task_id!r} does not name a task")


class TaskQueueService(taskqueue_pb2_grpc.TaskQueueServicer):
    """Implements taskqueue.v1.TaskQueue; ``ready`` is False until the backends are set up."""

    def __init__(self, config: Config, store: Store, queues: Queues) -> None:
        self._config = config
        self._store = store
        self._queues = queues
        self._background: set[asyncio.Task[None]] = set()
        self._closing = asyncio.Event()
        self.ready = False
        #: Longest a unary call may take before it answers UNAVAILABLE, seconds.
        self.deadline = config.backend_timeout * 3 + 1
        self._hub = WatchHub(store, tolerance=self.deadline)

    # ------------------------------------------------------------------ helpers

    async def _answer(
        self,
        context: grpc.aio.ServicerContext[object, object],
        work: Callable[[], Awaitable[T]],
        *,
        deadline: bool = True,
    ) -> T:
        """Run ``work()`` and turn RpcError, BackendUnavailable and timeouts into gRPC status codes.

        With ``deadline`` the call is bounded (a few backend timeouts), so a hung backend still
        answers UNAVAILABLE in seconds even if botocore's own timeouts did not fire.
        """
        limit = self.deadline
        try:
            if not self.ready:
                raise RpcError(grpc.StatusCode.UNAVAILABLE, "the server is still connecting to its backends")
            remaining = context.time_remaining()
            if remaining is not None:  # answer UNAVAILABLE before the client gives up (spec 9.2)
                limit = max(0.05, min(limit, remaining * 0.9 - 0.05))
            async with asyncio.timeout(limit if deadline else None):
                return await work()
        except RpcError as exc:
            await self._abort(context, exc.code, exc.message)
        except IdempotencyConflict as exc:
            await self._abort(context, grpc.StatusCode.ALREADY_EXISTS, str(exc))
        except BackendUnavailable as exc:
            await self._abort(context, grpc.StatusCode.UNAVAILABLE, f"backend unavailable: {exc}")
        except TimeoutError:
            await self._abort(
                context, grpc.StatusCode.UNAVAILABLE, f"backends did not answer within {limit:.1f}s"
            )

    @staticmethod
    async def _abort(
        context: grpc.aio.ServicerContext[object, object], code: grpc.StatusCode, message: str
    ) -> NoReturn:
        if code != grpc.StatusCode.INVALID_ARGUMENT and code != grpc.StatusCode.NOT_FOUND:
            log.info("answering %s: %s", code.name, message)
        await context.abort(code, message)
        raise AssertionError("context.abort returned")  # pragma: no cover - abort always raises

    def _in_background(self, work: Awaitable[None], what: str) -> None:
        async def guarded() -> None:
            try:
                await work
            except BackendUnavailable as exc:
                log.warning("%s failed: %s", what, exc)

        task = asyncio.create_task(guarded(), name=what)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        """End open watches (UNAVAILABLE) and wait briefly for background bookkeeping."""
        self._closing.set()
        await self._hub.close()
        if self._background:
            await asyncio.wait(set(self._background), timeout=self._config.backend_timeout * 2)

    # --------------------------------------------------------------------- RPCs

    async def SubmitTask(
        self,
        request: taskqueue_pb2.SubmitTaskRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> taskqueue_pb2.SubmitTaskResponse:
        """Create the task (or find the one of this idempotency key) and make sure it is queued."""
        return await self._answer(context, lambda: self._submit(request))

    async def _submit(self, request: taskqueue_pb2.SubmitTaskRequest) -> taskqueue_pb2.SubmitTaskResponse:
        max_attempts = validate_submit(request)
        task, created = await self._store.create_task(
            request.idempotency_key, request.task_type, request.payload, max_attempts
        )
        if created or task.status == Status.PENDING:
            # A new task, or a pending one whose first submit may have died between its write and its
            # message: send (again). Duplicate messages are harmless (the worker's claim is conditional,
            # and a worker already driving the task absorbs its duplicates); a lost one would strand the
            # task. Not recording "sent" saves a write on every submit; only repeats of a task that is
            # still pending pay with a message.
            try:
                await self._queues.send(task.task_id, submitted_state(task))
            except BackendUnavailable as exc:
                raise BackendUnavailable(
                    f"task {task.task_id} is stored but not queued yet; retry with the same idempotency_key "
                    f"({exc})"
                ) from exc
        return taskqueue_pb2.SubmitTaskResponse(
            task_id=task.task_id, status=_STATUS[task.status], created=created
        )

    async def GetTask(
        self,
        request: taskqueue_pb2.GetTaskRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> taskqueue_pb2.Task:
        """The task's current state."""
        return await self._answer(context, lambda: self._get(request.task_id))

    async def _get(self, task_id: str) -> taskqueue_pb2.Task:
        _require_task_id(task_id)
        task = await self._store.get_task(task_id)
        if task is None:
            raise _not_found(task_id)
        return task_message(task)

    async def ListTaskEvents(
        self,
        request: taskqueue_pb2.ListTaskEventsRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> taskqueue_pb2.ListTaskEventsResponse:
        """The task's whole history, in sequence order."""
        return await self._answer(context, lambda: self._events(request.task_id))

    async def _events(self, task_id: str) -> taskqueue_pb2.ListTaskEventsResponse:
        _require_task_id(task_id)
        events = await self._store.list_events(task_id)
        if not events:  # every task has its SUBMITTED event, written with it
            raise _not_found(task_id)
        return taskqueue_pb2.ListTaskEventsResponse(events=[event_message(e) for e in events])

    async def WatchTask(
        self,
        request: taskqueue_pb2.WatchTaskRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> AsyncIterator[taskqueue_pb2.Task]:
        """The current snapshot, then one snapshot per change, ending after a terminal status."""
        task_id = request.task_id
        task = await self._answer(context, lambda: self._watch_start(task_id))
        yield task_message(task)
        if task.status.terminal:
            return
        async with self._hub.subscribe(task_id) as subscription:
            while True:
                waiting = subscription.next_state(task.version)
                state = await self._answer(context, partial(self._next_change, waiting), deadline=False)
                if state.status == Status.COMPLETED:  # the poller leaves the result out
                    state = await self._answer(context, lambda: self._watch_start(task_id))
                task = replace(state, payload=task.payload)
                yield task_message(task)
                if task.status.terminal:
                    return

    async def _watch_start(self, task_id: str) -> TaskRecord:
        _require_task_id(task_id)
        task = await self._store.get_task(task_id)
        if task is None:
            raise _not_found(task_id)
        return task

    async def _next_change(self, waiting: Awaitable[TaskRecord]) -> TaskRecord:
        """Wait for the next state, without the per-call deadline, until the server closes."""
        change = asyncio.ensure_future(waiting)
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait({change, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
            if not change.done():
                change.cancel()
        if change.cancelled():
            raise RpcError(grpc.StatusCode.UNAVAILABLE, "the server is shutting down; watch again elsewhere")
        return change.result()

    async def GetServerInfo(
        self,
        request: taskqueue_pb2.GetServerInfoRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> taskqueue_pb2.ServerInfo:
        """What this implementation is and supports (answers even before the backends are ready)."""
        return taskqueue_pb2.ServerInfo(
            implementation=IMPLEMENTATION,
            version=_version(),
            task_types=sorted(TASK_TYPES),
            default_max_attempts=DEFAULT_MAX_ATTEMPTS,
            max_payload_bytes=MAX_PAYLOAD_BYTES,
            capabilities=list(CAPABILITIES),
        )
