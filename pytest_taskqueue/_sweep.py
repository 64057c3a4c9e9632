"""The closing sweep: after the last scenario, re-read every task the session created and judge it
against everything seen of it before (docs/plugin.md, "The closing sweep").

``SessionTasks`` watches the session's client through a channel interceptor, so every call counts,
also those made through ``harness.api.stub``: which scenario's SubmitTask first answered each
``task_id``, and every snapshot (GetTask, WatchTask) and history (ListTaskEvents) read of it.
``sweep`` waits until the visibility timeout has passed since the last task was created (only what
remains of it), re-reads each task's history (one ListTaskEvents: the sweep re-reads, it does not
wait per task), and checks with ``taskqueue_contract`` that the final history is well formed
(nothing after a terminal event, so no rerun) and that it extends every history and snapshot read
earlier (each history a prefix of it, each snapshot one of its states).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final, TypeVar

import grpc
import grpc.aio

from pytest_taskqueue._client import TaskQueueClient, describe_rpc_error
from taskqueue_contract import (
    Event,
    Task,
    Violation,
    as_event,
    as_task,
    history_violations,
    observed_violations,
)
from taskqueue_proto import taskqueue_pb2 as pb

__all__ = ["SessionTasks", "SweepFindings", "sweep"]

T = TypeVar("T")

_CONCURRENCY: Final = 16
"""Tasks re-read at once."""
_PER_TASK: Final = 3
"""At most this many violations are reported per task (the first ones found)."""
_RETRYABLE: Final = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
_OUTSIDE: Final = "(outside any scenario)"


def _method(details: grpc.aio.ClientCallDetails) -> str:
    method = details.method
    text = method.decode() if isinstance(method, bytes) else str(method)
    return text.rsplit("/", 1)[-1]


class SessionTasks:
    """What the session's client saw: the tasks each scenario created, and every read of them."""

    def __init__(self) -> None:
        self.scenario = ""
        """The running scenario's id (set by the ``harness`` fixture)."""
        self.created: dict[str, str] = {}
        """task_id -> id of the scenario whose SubmitTask first answered it."""
        self.reads: dict[str, list[Task | list[Event]]] = {}
        """task_id -> its snapshots and histories, in the order they arrived."""
        self.last_created: float | None = None
        """``time.monotonic()`` of the last SubmitTask answer."""

    def interceptors(self) -> list[grpc.aio.ClientInterceptor]:
        """The channel interceptor that feeds this record."""
        return [_Observer(self)]

    def note(self, method: str, request: Any, response: Any) -> None:
        """Record one answer (``SubmitTask``, ``GetTask``, ``ListTaskEvents`` or a ``WatchTask`` message)."""
        if method == "SubmitTask" and response.task_id:
            self.created.setdefault(response.task_id, self.scenario or _OUTSIDE)
            self.last_created = time.monotonic()
        elif method in ("GetTask", "WatchTask") and response.task_id:
            self.reads.setdefault(response.task_id, []).append(as_task(response))
        elif method == "ListTaskEvents" and request.task_id:
            self.reads.setdefault(request.task_id, []).append([as_event(e) for e in response.events])


class _Observer(grpc.aio.UnaryUnaryClientInterceptor, grpc.aio.UnaryStreamClientInterceptor):
    """Hands each answer of the session's channel to ``SessionTasks.note``; changes no call."""

    def __init__(self, tasks: SessionTasks) -> None:
        self._tasks = tasks

    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        """Forward the call; note its answer once it has one."""
        call = await continuation(client_call_details, request)
        method = _method(client_call_details)
        if method in ("SubmitTask", "GetTask", "ListTaskEvents"):
            try:
                response = await call
            except grpc.aio.AioRpcError:
                return call  # the caller sees the error as it would without this interceptor
            self._tasks.note(method, request, response)
        return call

    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        """Forward the call; note each WatchTask message as the caller reads it."""
        call = await continuation(client_call_details, request)
        if _method(client_call_details) != "WatchTask":
            return call
        return self._messages(call, request)

    async def _messages(self, call: Any, request: Any) -> AsyncIterator[Any]:
        async for message in call:
            self._tasks.note("WatchTask", request, message)
            yield message


@dataclasses.dataclass
class SweepFindings:
    """What the sweep found: how many tasks it re-read, the violations, and a note on how it ran."""

    tasks: int = 0
    violations: list[dict[str, str]] = dataclasses.field(default_factory=list)
    note: str = ""


class _Unanswered(Exception):
    """A re-read kept answering UNAVAILABLE/DEADLINE_EXCEEDED until the sweep's deadline."""


async def _answered(call: Callable[[], Awaitable[T]], deadline: float) -> T:
    """``call()``, retried with a short backoff while it answers a retryable code and time remains."""
    loop = asyncio.get_running_loop()
    backoff = 0.05
    while True:
        try:
            return await call()
        except grpc.aio.AioRpcError as error:
            if error.code() not in _RETRYABLE or loop.time() + backoff >= deadline:
                raise
        await asyncio.sleep(backoff)  # a retry's backoff, not a synchronisation
        backoff = min(backoff * 2, 1.0)


def _judge(history: list[pb.TaskEvent], reads: list[Task | list[Event]]) -> list[Violation]:
    """Every rule the final history breaks on its own, and every earlier read it does not extend."""
    max_attempts = next((read.max_attempts for read in reads if isinstance(read, Task)), None)
    found = history_violations(history, max_attempts=max_attempts)
    for read in reads:
        found += observed_violations([read], history, max_attempts=max_attempts)
    unique = list(dict.fromkeys(found))
    return unique[:_PER_TASK]


async def _sweep_one(
    client: TaskQueueClient, task_id: str, reads: list[Task | list[Event]], deadline: float
) -> list[Violation]:
    try:
        history = await _answered(lambda: client.events(task_id), deadline)
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.NOT_FOUND:
            message = "a task answered with a task_id is gone: GetTask/ListTaskEvents answer NOT_FOUND"
            return [Violation("7.3", message, "task_lost")]
        section = "9.2" if error.code() in _RETRYABLE else "9"
        message = f"re-reading an existing task failed: {describe_rpc_error(error)}"
        return [Violation(section, message, "read_failed")]
    return _judge(history, reads)


async def sweep(
    client: TaskQueueClient, tasks: SessionTasks, *, wait_s: float, deadline_s: float
) -> SweepFindings:
    """Re-read every task ``tasks`` saw created, once ``wait_s`` has passed since the last was.

    ``deadline_s`` bounds the re-reads (retries of UNAVAILABLE included) after the wait.
    """
    waited = 0.0
    if tasks.last_created is not None:
        waited = max(0.0, tasks.last_created + wait_s - time.monotonic())
        if waited:
            # A deadline, not a synchronisation: a late rerun may show up only after it.
            await asyncio.sleep(waited)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    limit = asyncio.Semaphore(_CONCURRENCY)

    async def one(task_id: str) -> list[Violation]:
        async with limit:
            return await _sweep_one(client, task_id, tasks.reads.get(task_id, []), deadline)

    ids = list(tasks.created)
    started = loop.time()
    results = await asyncio.gather(*(one(task_id) for task_id in ids))
    took = loop.time() - started
    note = f"{wait_s:g} s after the last task was created; waited {waited:.1f} s, re-read in {took:.1f} s"
    findings = SweepFindings(tasks=len(ids), note=note)
    for task_id, violations in zip(ids, results, strict=True):
        findings.violations += [
            {
                "scenario": tasks.created[task_id],
                "task_id": task_id,
                "rule": f"spec {v.section} ({v.rule})",
                "detail": v.message,
            }
            for v in violations
        ]
    return findings
