"""A tiny taskqueue.v1 server for the plugin's own tests: ``python fake_server.py [options]``.

Not a conforming implementation (tests/servers/ has that): just enough to drive the plugin's
code paths. ``noop`` and ``echo`` tasks go PENDING -> PROCESSING -> COMPLETED as soon as they are
submitted, unless ``--stall`` keeps them PENDING forever. ``--no-watch`` answers WatchTask with
UNIMPLEMENTED (the harness must poll), ``--capabilities`` fills ServerInfo.capabilities, and
``--token`` rejects calls without ``authorization: Bearer TOKEN``, ``--tls-cert``/``--tls-key``
serve TLS. Prints ``listening on HOST:PORT`` once
serving and exits when stdin closes, so it cannot outlive the test that started it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import pathlib
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from taskqueue_proto import SERVICE_NAME
from taskqueue_proto import taskqueue_pb2 as pb
from taskqueue_proto import taskqueue_pb2_grpc as pb_grpc

_TYPES = ("noop", "echo")


class _Task:
    def __init__(self, task: pb.Task) -> None:
        self.task = task
        self.events: list[pb.TaskEvent] = []
        self.changed = asyncio.Condition()


class FakeTaskQueue(pb_grpc.TaskQueueServicer):
    """In-memory tasks; each completes at once unless stalled."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tasks: dict[str, _Task] = {}
        self.keys: dict[str, str] = {}
        self.ids = itertools.count(1)
        self.background: set[asyncio.Task[None]] = set()

    async def _append(self, entry: _Task, kind: int, status: int, attempt: int = 0) -> None:
        async with entry.changed:
            event = pb.TaskEvent(sequence=len(entry.events) + 1, type=kind, attempt=attempt)  # type: ignore[arg-type]
            event.at.GetCurrentTime()
            entry.events.append(event)
            entry.task.updated_at.CopyFrom(event.at)
            if not entry.task.HasField("created_at"):
                entry.task.created_at.CopyFrom(event.at)
            entry.task.status = status  # type: ignore[assignment]
            if kind == pb.TASK_EVENT_TYPE_PROCESSING:
                entry.task.attempts = attempt
            if kind == pb.TASK_EVENT_TYPE_COMPLETED and entry.task.task_type == "echo":
                entry.task.result = entry.task.payload
            entry.changed.notify_all()

    async def _run(self, entry: _Task) -> None:
        await self._append(entry, pb.TASK_EVENT_TYPE_PROCESSING, pb.TASK_STATUS_PROCESSING, 1)
        await self._append(entry, pb.TASK_EVENT_TYPE_COMPLETED, pb.TASK_STATUS_COMPLETED, 1)

    async def SubmitTask(self, request: pb.SubmitTaskRequest, context: Any) -> pb.SubmitTaskResponse:
        if not request.idempotency_key or request.task_type not in _TYPES:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "idempotency_key or task_type is invalid")
        if request.idempotency_key in self.keys:
            existing = self.tasks[self.keys[request.idempotency_key]]
            return pb.SubmitTaskResponse(
                task_id=existing.task.task_id, status=existing.task.status, created=False
            )
        task_id = f"fake-{next(self.ids)}"
        entry = _Task(
            pb.Task(
                task_id=task_id,
                idempotency_key=request.idempotency_key,
                task_type=request.task_type,
                payload=request.payload,
                max_attempts=request.max_attempts or 5,
            )
        )
        self.tasks[task_id] = entry
        self.keys[request.idempotency_key] = task_id
        await self._append(entry, pb.TASK_EVENT_TYPE_SUBMITTED, pb.TASK_STATUS_PENDING)
        if not self.args.stall:
            job = asyncio.get_running_loop().create_task(self._run(entry))
            self.background.add(job)
            job.add_done_callback(self.background.discard)
        return pb.SubmitTaskResponse(task_id=task_id, status=pb.TASK_STATUS_PENDING, created=True)

    async def _find(self, task_id: str, context: Any) -> _Task:
        if not task_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "task_id is empty")
        if task_id not in self.tasks:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no task {task_id}")
        return self.tasks[task_id]

    async def GetTask(self, request: pb.GetTaskRequest, context: Any) -> pb.Task:
        return (await self._find(request.task_id, context)).task

    async def ListTaskEvents(
        self, request: pb.ListTaskEventsRequest, context: Any
    ) -> pb.ListTaskEventsResponse:
        return pb.ListTaskEventsResponse(events=(await self._find(request.task_id, context)).events)

    async def WatchTask(self, request: pb.WatchTaskRequest, context: Any) -> AsyncIterator[pb.Task]:
        if self.args.no_watch:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "WatchTask is not implemented here")
        entry = await self._find(request.task_id, context)
        sent = -1

        def changed() -> bool:
            return len(entry.events) != sent

        while True:
            async with entry.changed:
                await entry.changed.wait_for(changed)
                sent = len(entry.events)
                snapshot = pb.Task()
                snapshot.CopyFrom(entry.task)
            yield snapshot
            if snapshot.status in (pb.TASK_STATUS_COMPLETED, pb.TASK_STATUS_DEAD):
                return

    async def GetServerInfo(self, request: pb.GetServerInfoRequest, context: Any) -> pb.ServerInfo:
        return pb.ServerInfo(
            implementation=self.args.implementation,
            version="0.0-test",
            task_types=list(_TYPES),
            default_max_attempts=5,
            max_payload_bytes=65536,
            capabilities=[c for c in self.args.capabilities.split(",") if c],
        )


class _RequireToken(grpc.aio.ServerInterceptor):
    """Rejects every call (health included) without the expected bearer token."""

    def __init__(self, token: str) -> None:
        self.expected = f"Bearer {token}"

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        metadata = dict(handler_call_details.invocation_metadata or ())
        if metadata.get("authorization") == self.expected:
            return await continuation(handler_call_details)

        async def deny(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")

        return grpc.unary_unary_rpc_method_handler(deny)


async def serve(args: argparse.Namespace) -> None:
    """Serve until stdin closes."""
    interceptors = [_RequireToken(args.token)] if args.token else []
    server = grpc.aio.server(interceptors=interceptors)
    pb_grpc.add_TaskQueueServicer_to_server(FakeTaskQueue(args), server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    if args.key_pair:
        port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([args.key_pair]))
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    for service in ("", SERVICE_NAME):
        await health.set(service, health_pb2.HealthCheckResponse.SERVING)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    threading.Thread(
        target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(stop.set)), daemon=True
    ).start()
    print(f"listening on 127.0.0.1:{port}", flush=True)
    await stop.wait()
    await server.stop(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-watch", action="store_true")
    parser.add_argument("--stall", action="store_true")
    parser.add_argument("--capabilities", default="")
    parser.add_argument("--token", default="")
    parser.add_argument("--implementation", default="plugin-tests-fake")
    parser.add_argument("--tls-cert", default="", help="serve TLS with this PEM certificate")
    parser.add_argument("--tls-key", default="", help="and this PEM private key")
    args = parser.parse_args()
    args.key_pair = (
        (pathlib.Path(args.tls_key).read_bytes(), pathlib.Path(args.tls_cert).read_bytes())
        if args.tls_cert
        else None
    )
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
