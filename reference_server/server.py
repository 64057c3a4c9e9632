"""Process lifecycle: backends, gRPC server (with health and reflection), worker, graceful shutdown.

Start-up binds the port first (and prints ``listening on HOST:PORT``) with health NOT_SERVING, then
sets the backends up, retrying until ``--startup-timeout`` so the processes may start together with
ElasticMQ and moto, and only then reports SERVING. The worker prints ``worker ready`` when it starts
polling. On SIGTERM or SIGINT: health NOT_SERVING first, then the gRPC server stops accepting calls
and gets the grace period for the ones in flight while the worker finishes or releases its attempts.
A second signal stops at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from typing import TYPE_CHECKING

from reference_server.backends import Backends, BackendUnavailable, retry_until
from reference_server.config import Config, Mode
from reference_server.queue import Queues
from reference_server.store import Store
from reference_server.worker import Worker

if TYPE_CHECKING:  # grpc loads only in processes that serve the API (a worker starts faster without)
    import grpc
    from grpc_health.v1 import health

    from reference_server.service import TaskQueueService

#: How long health answers NOT_SERVING before the server stops accepting calls (docs/spec.md 1.2).
NOT_SERVING_NOTICE_S = 0.3

#: Largest gRPC message accepted, in payload limits: far above max_payload_bytes so an oversized
#: payload gets a clear INVALID_ARGUMENT from the service rather than a transport-level RESOURCE_EXHAUSTED.
MAX_MESSAGE_PAYLOADS = 64

log = logging.getLogger(__name__)


def announce(line: str) -> None:
    """Print a line the harness waits for (stdout, flushed at once)."""
    print(line, flush=True)


async def _set_health(servicer: health.aio.HealthServicer, status: int) -> None:
    from taskqueue_proto import SERVICE_NAME

    for name in ("", SERVICE_NAME):
        await servicer.set(name, status)


async def _start_api(
    config: Config, store: Store, queues: Queues
) -> tuple[grpc.aio.Server, TaskQueueService, health.aio.HealthServicer] | None:
    """Bind and start the gRPC server (health NOT_SERVING); None when the port cannot be bound."""
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection

    from reference_server.service import MAX_PAYLOAD_BYTES, TaskQueueService
    from taskqueue_proto import SERVICE_NAME, taskqueue_pb2_grpc

    service = TaskQueueService(config, store, queues)
    health_servicer = health.aio.HealthServicer()
    await _set_health(health_servicer, health_pb2.HealthCheckResponse.NOT_SERVING)
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_PAYLOADS * MAX_PAYLOAD_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_PAYLOADS * MAX_PAYLOAD_BYTES),
            ("grpc.so_reuseport", 0),
        ]
    )
    taskqueue_pb2_grpc.add_TaskQueueServicer_to_server(service, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    port = server.add_insecure_port(f"{config.host}:{config.port}")
    if port == 0:
        log.error("cannot bind %s:%d", config.host, config.port)
        return None
    await server.start()
    announce(f"listening on {config.host}:{port}")
    return server, service, health_servicer


async def run(mode: Mode, config: Config) -> int:
    """Run ``mode`` until SIGTERM/SIGINT; returns the process exit status."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = 0
    main_task = asyncio.current_task()

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            log.info("received %s: shutting down gracefully", signal.Signals(signum).name)
            stop.set()
        elif main_task is not None:
            log.warning("received %s again: stopping now", signal.Signals(signum).name)
            main_task.cancel()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)

    async with Backends(config) as backends:
        store = Store(backends.dynamodb, config.table)
        queues = Queues(backends.sqs, config.queue, config.dead_letter_queue, config.visibility_timeout)
        server: grpc.aio.Server | None = None
        service: TaskQueueService | None = None
        health_servicer: health.aio.HealthServicer | None = None
        worker: Worker | None = None
        try:
            if mode.runs_api:
                started = await _start_api(config, store, queues)
                if started is None:
                    return 1
                server, service, health_servicer = started

            deadline = loop.time() + config.startup_timeout
            setups = [  # the table and the queues side by side: a round trip less before ready
                asyncio.ensure_future(
                    retry_until(
                        deadline, stop, "DynamoDB table", lambda: store.ensure_table(config.create_resources)
                    )
                ),
                asyncio.ensure_future(
                    retry_until(deadline, stop, "SQS queues", lambda: queues.ensure(config.create_resources))
                ),
            ]
            try:
                await asyncio.gather(*setups)
            finally:  # after a failure, the other stops too
                for setup in setups:
                    setup.cancel()
            log.info("backends ready: table %s, queue %s", config.table, queues.queue_url)

            if service is not None and health_servicer is not None:
                from grpc_health.v1 import health_pb2

                service.ready = True
                await _set_health(health_servicer, health_pb2.HealthCheckResponse.SERVING)
            if mode.runs_worker:
                worker = Worker(config, store, queues, announce)
                worker.start()
            await stop.wait()
        except (BackendUnavailable, TimeoutError) as exc:
            if not stop.is_set():
                log.error("start-up failed: %s", exc)
                await _shutdown(config, server, service, health_servicer, worker)
                return 1
        await _shutdown(config, server, service, health_servicer, worker)
    return 0


async def _shutdown(
    config: Config,
    server: grpc.aio.Server | None,
    service: TaskQueueService | None,
    health_servicer: health.aio.HealthServicer | None,
    worker: Worker | None,
) -> None:
    """Health NOT_SERVING, then stop the server and the worker side by side within the grace period."""
    if health_servicer is not None:
        await health_servicer.enter_graceful_shutdown()
        if server is not None:
            # Keep answering a moment, so health checks (a load balancer's) see NOT_SERVING (spec 1.2).
            await asyncio.sleep(NOT_SERVING_NOTICE_S)
    steps = []
    if server is not None:

        async def stop_server() -> None:
            # No unary call outlives the service's own deadline, so more grace would only be spent
            # on streams that never end by themselves (health watches).
            grace = min(
                config.shutdown_grace, service.deadline if service is not None else config.shutdown_grace
            )
            stopping = asyncio.ensure_future(server.stop(grace))
            if service is not None:
                await service.close()  # ends open watches so the grace is not spent on them
            await stopping

        steps.append(stop_server())
    if worker is not None:
        steps.append(worker.stop(config.shutdown_grace))
    await asyncio.gather(*steps)
    log.info("stopped")


def main(mode: Mode, config: Config) -> int:
    """Entry point used by ``python -m reference_server``."""
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("botocore").setLevel(logging.WARNING)
    logging.getLogger("aiobotocore").setLevel(logging.WARNING)
    with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):
        return asyncio.run(run(mode, config))
    return 1
