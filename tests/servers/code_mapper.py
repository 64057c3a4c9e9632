"""A broken implementation for the fault scenarios: another implementation with one status code rewritten.

    python -m tests.servers.code_mapper --port PORT --map UNAVAILABLE=INTERNAL -- INNER COMMAND...

Starts INNER COMMAND (the literal word ``INNER_PORT`` in it becomes a free port), waits for its health
check, and serves taskqueue.v1 and grpc.health.v1 on PORT by forwarding every call to it. Answers keep
their content, except that an error with a mapped code comes back with the new code. Wrapped around the
reference server with ``UNAVAILABLE=INTERNAL`` it is a server that answers INTERNAL when DynamoDB is
unreachable, which spec 9.2 forbids: the DynamoDB-partition scenario must fail against it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pytest_taskqueue._procs import free_port
from taskqueue_proto import taskqueue_pb2 as pb
from taskqueue_proto import taskqueue_pb2_grpc as pb_grpc

T = TypeVar("T")
Context = grpc.aio.ServicerContext[Any, Any]


class _Mapper:
    """Forwards calls to the inner server's channel, rewriting mapped error codes."""

    def __init__(self, channel: grpc.aio.Channel, mapping: dict[grpc.StatusCode, grpc.StatusCode]) -> None:
        self.stub = pb_grpc.TaskQueueStub(channel)
        self.health = health_pb2_grpc.HealthStub(channel)
        self.mapping = mapping

    async def unary(self, call: Awaitable[T], context: Context) -> T:
        try:
            return await call
        except grpc.aio.AioRpcError as error:
            code = self.mapping.get(error.code(), error.code())
            await context.abort(code, error.details() or "")
            raise  # abort raises; this keeps type checkers content

    def deadline(self, context: Context) -> float | None:
        return context.time_remaining()


class _TaskQueue(pb_grpc.TaskQueueServicer):
    def __init__(self, mapper: _Mapper) -> None:
        self.m = mapper

    async def SubmitTask(self, request: pb.SubmitTaskRequest, context: Context) -> pb.SubmitTaskResponse:
        return await self.m.unary(self.m.stub.SubmitTask(request, timeout=self.m.deadline(context)), context)

    async def GetTask(self, request: pb.GetTaskRequest, context: Context) -> pb.Task:
        return await self.m.unary(self.m.stub.GetTask(request, timeout=self.m.deadline(context)), context)

    async def ListTaskEvents(
        self, request: pb.ListTaskEventsRequest, context: Context
    ) -> pb.ListTaskEventsResponse:
        return await self.m.unary(
            self.m.stub.ListTaskEvents(request, timeout=self.m.deadline(context)), context
        )

    async def GetServerInfo(self, request: pb.GetServerInfoRequest, context: Context) -> pb.ServerInfo:
        return await self.m.unary(
            self.m.stub.GetServerInfo(request, timeout=self.m.deadline(context)), context
        )

    async def WatchTask(self, request: pb.WatchTaskRequest, context: Context) -> AsyncIterator[pb.Task]:
        stream = self.m.stub.WatchTask(request, timeout=self.m.deadline(context))
        try:
            async for snapshot in stream:
                yield snapshot
        except grpc.aio.AioRpcError as error:
            await context.abort(self.m.mapping.get(error.code(), error.code()), error.details() or "")


class _Health(health_pb2_grpc.HealthServicer):  # type: ignore[misc]  # grpc_health ships no types
    def __init__(self, mapper: _Mapper) -> None:
        self.m = mapper

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: Context
    ) -> health_pb2.HealthCheckResponse:
        return await self.m.unary(self.m.health.Check(request, timeout=self.m.deadline(context)), context)


def _parse_mapping(pairs: list[str]) -> dict[grpc.StatusCode, grpc.StatusCode]:
    mapping = {}
    for pair in pairs:
        source, _, target = pair.partition("=")
        mapping[grpc.StatusCode[source]] = grpc.StatusCode[target]
    return mapping


async def _serve(
    port: int,
    mapping: dict[grpc.StatusCode, grpc.StatusCode],
    process: subprocess.Popen[bytes],
    inner_port: int,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{inner_port}") as channel:
        await asyncio.wait_for(channel.channel_ready(), timeout=60)
        mapper = _Mapper(channel, mapping)
        server = grpc.aio.server()
        pb_grpc.add_TaskQueueServicer_to_server(_TaskQueue(mapper), server)
        health_pb2_grpc.add_HealthServicer_to_server(_Health(mapper), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        print(f"listening on 127.0.0.1:{port}", flush=True)
        exited: Callable[[], bool] = lambda: process.poll() is not None  # noqa: E731
        while not stop.is_set() and not exited():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.5)
        await server.stop(1)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.servers.code_mapper", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--map", action="append", default=[], metavar="FROM=TO", help="e.g. UNAVAILABLE=INTERNAL"
    )
    parser.add_argument("inner", nargs=argparse.REMAINDER, help="-- then the inner server's command")
    args = parser.parse_args()
    inner = args.inner[1:] if args.inner[:1] == ["--"] else args.inner
    if not inner:
        parser.error("give the inner server's command after --")
    inner_port = free_port()
    process = subprocess.Popen(
        [word.replace("INNER_PORT", str(inner_port)) for word in inner], start_new_session=True
    )
    try:
        asyncio.run(_serve(args.port, _parse_mapping(args.map), process, inner_port))
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
