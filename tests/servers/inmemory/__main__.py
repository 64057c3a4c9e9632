"""``python -m tests.servers.inmemory --port 0 [--break NAME ...]``: run the in-memory TaskQueue server.

Prints ``listening on 127.0.0.1:PORT`` (flushed) once it accepts calls, and stops on SIGTERM,
SIGINT, or (with ``--exit-on-stdin-eof``) when its parent closes stdin, so an orphan cannot outlive
the test that started it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from taskqueue_proto import SERVICE_NAME
from taskqueue_proto import taskqueue_pb2_grpc as pb_grpc

from ._breaks import BREAKS, CHAOS_BREAKS, QUIRKS
from ._service import TaskQueueService
from ._store import Store
from ._worker import Worker

_GRACE_S = 1.0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.servers.inmemory", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument(
        "--break",
        dest="breaks",
        action="append",
        default=[],
        choices=sorted({**BREAKS, **CHAOS_BREAKS, **QUIRKS}),
        metavar="NAME",
        help="break one rule of the contract (or deviate from a SHOULD); repeatable. Names: "
        + ", ".join(sorted({**BREAKS, **CHAOS_BREAKS, **QUIRKS})),
    )
    parser.add_argument("--backoff-ms", type=int, default=20, help="delay before a retry")
    parser.add_argument("--concurrency", type=int, default=16, help="attempts running at once")
    parser.add_argument("--max-payload-bytes", type=int, default=65536)
    parser.add_argument(
        "--lose-answers",
        type=int,
        default=0,
        metavar="N",
        help="every Nth submit that creates a task writes and queues it, then answers UNAVAILABLE, "
        "as if its answer were lost (conforming, spec 3.3, 9.2; with the cancel_strands_task break "
        "the answer is lost before the task is queued); 0: never",
    )
    parser.add_argument("--exit-on-stdin-eof", action="store_true", help="stop when stdin closes")
    return parser.parse_args(argv)


def _watch_stdin(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Block on stdin in a daemon thread; EOF (the parent went away) stops the server."""

    def read() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=read, name="stdin-eof", daemon=True).start()


async def serve(args: argparse.Namespace) -> None:
    """Start the API, health and reflection services and the worker; run until told to stop."""
    breaks = frozenset(args.breaks)
    if "payload_limit_unbounded" in breaks:
        args.max_payload_bytes = 100_000_000
    store = Store(breaks)
    worker = Worker(store, breaks, backoff_s=args.backoff_ms / 1000, concurrency=args.concurrency)
    message_limit = max(4 * 1024 * 1024, 2 * args.max_payload_bytes)
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", message_limit),
            ("grpc.max_send_message_length", message_limit),
        ]
    )
    pb_grpc.add_TaskQueueServicer_to_server(
        TaskQueueService(store, worker, breaks, args.max_payload_bytes, args.lose_answers), server
    )
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        [SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        server,
    )
    port = server.add_insecure_port(f"{args.host}:{args.port}")
    worker.start()
    await server.start()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    if "health_overall_only" not in breaks:
        await health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if args.exit_on_stdin_eof:
        _watch_stdin(loop, stop)
    print(f"listening on {args.host}:{port}", flush=True)
    try:
        await stop.wait()
    finally:
        await health.enter_graceful_shutdown()
        await server.stop(_GRACE_S)
        await worker.stop()


def main(argv: list[str] | None = None) -> None:
    asyncio.run(serve(_parse(argv)))


if __name__ == "__main__":
    main()
