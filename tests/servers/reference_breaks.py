"""The reference server with one rule of the contract broken, for rules that need real backends.

    python -m tests.servers.reference_breaks BREAK serve|worker|all [reference_server flags]

Imports ``reference_server``, replaces one function as ``BREAKS`` says, then runs it exactly as
``python -m reference_server`` would. The reference server itself has no break flags; the tests
run these variants through ``--taskqueue-target-cmd`` (and ``--taskqueue-worker-cmd``), so the
harness starts them against backends and fault proxies it owns.
"""

from __future__ import annotations

import asyncio
import os
import sys
import urllib.parse
import uuid
from collections.abc import Callable
from typing import Any

import aioboto3
import grpc
from grpc_health.v1 import health

from reference_server import queue, server, service, store, worker
from reference_server.backends import BackendUnavailable
from reference_server.config import parse_args
from reference_server.server import main

BREAKS: dict[str, str] = {
    "no_dead_letter": "a DEAD task's message is deleted from the work queue but never put in the "
    "dead-letter queue (spec 5.3, 10.2)",
    "no_heartbeat": "a running attempt's lease and message visibility are never extended (and a "
    "redelivered message does not join the running attempt), so an attempt longer than the visibility "
    "timeout is run a second time (spec 6.3)",
    "idempotency_per_process": "idempotency keys are kept under a name of this process only, so "
    "another or a restarted process creates a second task for a used key (spec 3.5, 10.4)",
    "internal_when_unreachable": "a call that fails because a backend is unreachable answers "
    "INTERNAL instead of UNAVAILABLE (spec 9.2)",
    "abandoned_attempt_stuck": "an attempt whose worker died is never given up: the task stays "
    "PROCESSING for ever (spec 7.2)",
    "never_queued": "a submitted task's message is never sent, so an answered submit never runs (spec 7.3)",
    "message_not_json": "a task's SQS message is the text 'task <id>', not a JSON object with its "
    "task_id (spec 10.2)",
    "no_not_serving_notice": "on SIGTERM the server stops at once, health never answers NOT_SERVING; "
    "a SHOULD, so only the optional scenario fails (spec 1.2)",
    "sqs_via_queue_url_host": "once the queue URLs are known, SQS is reached at the host and port in "
    "them (ElasticMQ's own), around the harness's fault proxy (spec 10.1)",
}
"""Every break of the reference, with the rule it violates."""


async def _never_dead_letter(self: queue.Queues, task_id: str) -> None:
    """``Queues.send_dead`` that sends nothing."""


async def _no_heartbeat(self: worker.Worker, *args: Any) -> None:
    """``Worker._heartbeat`` that never beats: it waits until the attempt ends and cancels it."""
    await asyncio.Event().wait()


def _never_join(self: worker.Worker, message: Any) -> bool:
    """``Worker._join_running`` that treats every redelivery as new work."""
    return False


def _per_process_keys() -> None:
    """Idempotency items named after this process: a fresh process never finds a used key."""
    process = uuid.uuid4().hex[:12]
    original: Callable[[str], dict[str, Any]] = store._s

    def named(value: str) -> dict[str, Any]:
        if value.startswith("IDEM#"):
            value = f"IDEM#{process}#{value.removeprefix('IDEM#')}"
        return original(value)

    store._s = named


def _internal_instead_of_unavailable() -> None:
    """The service's abort answers INTERNAL where it would answer UNAVAILABLE."""
    original = service.TaskQueueService._abort

    async def abort(context: Any, code: grpc.StatusCode, message: str) -> Any:
        if code == grpc.StatusCode.UNAVAILABLE:
            code = grpc.StatusCode.INTERNAL
        return await original(context, code, message)

    service.TaskQueueService._abort = staticmethod(abort)  # type: ignore[method-assign]


def _abandoned_attempts_stuck() -> None:
    """Recording an abandoned attempt always fails, so the task is never taken up again."""
    original = worker.Worker._record_failure

    async def record(self: worker.Worker, task: store.TaskRecord, error: str, backoff_ms: int) -> Any:
        if error.startswith("attempt abandoned"):
            raise BackendUnavailable("the break: abandoned attempts are never recorded")
        return await original(self, task, error, backoff_ms)

    worker.Worker._record_failure = record  # type: ignore[method-assign]


def _sqs_via_queue_url_host() -> None:
    """After ``Queues.ensure``, a new SQS client whose endpoint is the work queue URL's own host."""
    original = queue.Queues.ensure

    async def ensure(self: queue.Queues, create: bool) -> None:
        await original(self, create)
        parts = urllib.parse.urlsplit(self.queue_url)
        session = aioboto3.Session(region_name=os.environ.get("AWS_REGION", "us-east-1"))
        client = session.client("sqs", endpoint_url=f"{parts.scheme}://{parts.netloc}")
        self._sqs = await client.__aenter__()  # lives as long as the process (a test break)

    queue.Queues.ensure = ensure  # type: ignore[method-assign]


def _plain_text_messages() -> None:
    """Message bodies ``task <id>``; the worker reads them back (so only the format is broken)."""
    original = queue._task_id_of

    def task_id_of(body: str) -> str | None:
        return body.removeprefix("task ") if body.startswith("task ") else original(body)

    queue.message_body = lambda task_id, submitted=None: f"task {task_id}"
    queue._task_id_of = task_id_of


async def _stay_serving(self: object) -> None:
    """``HealthServicer.enter_graceful_shutdown`` that leaves every status as it is."""


async def _never_send(self: queue.Queues, task_id: str, submitted: dict[str, Any] | None = None) -> None:
    """``Queues.send`` that sends nothing."""


def _install(name: str) -> None:
    if name == "no_dead_letter":
        queue.Queues.send_dead = _never_dead_letter  # type: ignore[method-assign]
    elif name == "no_heartbeat":
        worker.Worker._heartbeat = _no_heartbeat  # type: ignore[method-assign,assignment]
        worker.Worker._join_running = _never_join  # type: ignore[method-assign]
    elif name == "idempotency_per_process":
        _per_process_keys()
    elif name == "internal_when_unreachable":
        _internal_instead_of_unavailable()
    elif name == "abandoned_attempt_stuck":
        _abandoned_attempts_stuck()
    elif name == "message_not_json":
        _plain_text_messages()
    elif name == "no_not_serving_notice":
        server.NOT_SERVING_NOTICE_S = 0
        health.aio.HealthServicer.enter_graceful_shutdown = _stay_serving
    elif name == "sqs_via_queue_url_host":
        _sqs_via_queue_url_host()
    elif name == "never_queued":
        queue.Queues.send = _never_send  # type: ignore[method-assign]


def run(argv: list[str]) -> int:
    """``BREAK MODE [flags]``: install the break, then run the reference server."""
    if not argv or argv[0] not in BREAKS:
        known = ", ".join(sorted(BREAKS))
        print(f"usage: python -m tests.servers.reference_breaks BREAK MODE [flags]; BREAK is one of {known}")
        return 2
    _install(argv[0])
    mode, config = parse_args(argv[1:])
    return main(mode, config)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
