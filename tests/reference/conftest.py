"""Fixtures of the reference-server integration tests: real moto and ElasticMQ, real processes.

One moto and one ElasticMQ serve the whole session; every test module gets its own table and queue
names, so modules do not see each other's tasks. ``stack`` starts reference_server processes for a
test and stops every one of them afterwards, whatever happens.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from taskqueue_proto import SERVICE_NAME, taskqueue_pb2_grpc

from ._client import Stub
from ._procs import (
    ReferenceProcess,
    Stoppable,
    start_elasticmq,
    start_moto,
    start_reference,
)

#: Test-friendly timings (docs/architecture.md): visibility 1 s, backoff 50 ms doubling to 200 ms.
TIMINGS = ["--visibility-timeout", "1", "--retry-backoff-ms", "50", "--retry-backoff-max-ms", "200"]


@dataclass(frozen=True)
class Endpoints:
    """Where the session's backends listen."""

    dynamodb: str
    sqs: str


@pytest.fixture(scope="session")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoints]:
    """moto (serialised) and ElasticMQ for the whole session."""
    log_dir = tmp_path_factory.mktemp("backends")
    started: list[Stoppable] = []
    try:
        moto, dynamodb = start_moto(log_dir)
        started.append(moto)
        elasticmq, sqs = start_elasticmq(log_dir)
        started.append(elasticmq)
        yield Endpoints(dynamodb, sqs)
    finally:
        for process in reversed(started):
            process.stop()


@dataclass
class Stack:
    """Starts reference_server processes against one set of names; stops them all at the end."""

    endpoints: Endpoints
    log_dir: Path
    names: dict[str, str]
    processes: list[ReferenceProcess] = field(default_factory=list)

    def args(self, *, dynamodb: str | None = None) -> list[str]:
        """The flags every process of this stack gets."""
        return [
            "--port",
            "0",
            "--dynamodb-endpoint",
            dynamodb or self.endpoints.dynamodb,
            "--sqs-endpoint",
            self.endpoints.sqs,
            "--region",
            "us-east-1",
            "--table",
            self.names["table"],
            "--queue",
            self.names["queue"],
            "--dead-letter-queue",
            self.names["dlq"],
            *TIMINGS,
        ]

    async def start(self, mode: str, *extra: str, dynamodb: str | None = None) -> ReferenceProcess:
        """Start a process in ``mode``; an API process is returned once its health says SERVING."""
        name = f"{mode}-{len(self.processes)}"
        process = await asyncio.to_thread(
            start_reference, mode, [*self.args(dynamodb=dynamodb), *extra], self.log_dir, name
        )
        self.processes.append(process)
        if mode in ("serve", "all"):
            await wait_serving(process)
        return process

    def stop_all(self) -> None:
        """Stop every process still running (SIGTERM, then SIGKILL)."""
        for process in reversed(self.processes):
            process.stop()


async def wait_serving(process: ReferenceProcess, within: float = 60.0) -> None:
    """Wait until the process's health says SERVING for the TaskQueue service."""
    async with grpc.aio.insecure_channel(process.target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            async with asyncio.timeout(within):
                async for answer in stub.Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME)):
                    if answer.status == health_pb2.HealthCheckResponse.SERVING:
                        return
        except (TimeoutError, grpc.aio.AioRpcError) as exc:
            raise AssertionError(
                f"{process.name} never became SERVING: {exc!r}\n{process.describe()}"
            ) from exc
    raise AssertionError(f"{process.name}: health stream ended before SERVING\n{process.describe()}")


def _new_stack(backends: Endpoints, log_dir: Path) -> Stack:
    suffix = uuid.uuid4().hex[:10]
    names = {"table": f"tq-{suffix}", "queue": f"tq-{suffix}", "dlq": f"tq-{suffix}-dlq"}
    return Stack(backends, log_dir, names)


@pytest.fixture
def stack(backends: Endpoints, tmp_path: Path) -> Iterator[Stack]:
    """A fresh set of names and the processes a test starts on them, all stopped afterwards."""
    created = _new_stack(backends, tmp_path)
    try:
        yield created
    finally:
        created.stop_all()


@pytest.fixture(scope="module")
def shared_stack(backends: Endpoints, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One stack for a whole module (tests that only need a running server and worker)."""
    created = _new_stack(backends, tmp_path_factory.mktemp("stack"))
    try:
        yield created
    finally:
        created.stop_all()


@pytest.fixture(scope="module")
async def api(shared_stack: Stack) -> AsyncIterator[Stub]:
    """A stub on an ``all`` process (API and worker) of the module's shared stack."""
    process = await shared_stack.start("all")
    async with grpc.aio.insecure_channel(process.target) as channel:
        yield taskqueue_pb2_grpc.TaskQueueStub(channel)
