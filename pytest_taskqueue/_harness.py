"""``TestHarness``: what a scenario gets from the ``harness`` fixture, and ``WaitTimeout``.

The harness bundles the typed client, a per-test idempotency-key namespace, event-driven waits
and, when the harness owns the stack, the backends (DynamoDB/SQS clients, queue names, the worker).
Against an external target those backend attributes raise ``HarnessNotOwnedError``; scenarios
that need them are marked ``harness_only`` and skipped before they get that far.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

import grpc
import grpc.aio
import pytest

from fault_injection import Backoff
from pytest_taskqueue._client import TERMINAL_STATUSES, TaskQueueClient, describe_rpc_error
from pytest_taskqueue._collect import skip_for_level
from pytest_taskqueue._retry import Submitted, retrying
from taskqueue_contract import event_name, status_name
from taskqueue_proto import taskqueue_pb2 as pb

if TYPE_CHECKING:
    from fault_injection import Proxy
    from pytest_taskqueue._faults import HarnessFaults

__all__ = [
    "HarnessNotOwnedError",
    "KeyFactory",
    "OwnedBackends",
    "ProcessControl",
    "TestHarness",
    "WaitTimeout",
    "format_task",
]

T = TypeVar("T")

_MAX_KEY_BYTES: Final = 256
_POLL_BACKOFF_START_S: Final = 0.02
_POLL_BACKOFF_MAX_S: Final = 0.25
_DIAGNOSE_TIMEOUT_S: Final = 3.0


def format_task(task: pb.Task) -> str:
    """One line with what a failure message needs: status, attempts, last_error."""
    text = f"status {status_name(task.status)}, attempts {task.attempts}/{task.max_attempts}"
    return text + (f", last_error {task.last_error!r}" if task.last_error else "")


def _format_events(events: Sequence[pb.TaskEvent]) -> list[str]:
    return [
        f"    #{e.sequence} {event_name(e.type)} attempt={e.attempt}"
        + (f" detail={e.detail!r}" if e.detail else "")
        for e in events
    ]


class WaitTimeout(AssertionError):
    """A task did not reach the awaited status in time (or became terminal in another status).

    It is an ``AssertionError``: the implementation did not do what the contract says within the
    deadline. The message shows the task's current status, attempts, last error, the statuses seen
    while waiting and every event of its history; the same facts are attributes.
    """

    def __init__(
        self,
        message: str,
        *,
        task_id: str,
        wanted: tuple[int, ...],
        task: pb.Task | None,
        events: list[pb.TaskEvent] | None,
        seen: list[int],
    ) -> None:
        super().__init__(message)
        self.task_id = task_id
        self.wanted = wanted
        self.task = task
        self.events = events
        self.seen = seen


class HarnessNotOwnedError(RuntimeError):
    """A backend attribute was used against an external target (mark the scenario ``harness_only``)."""


# Failure output names the public import path (``pytest_taskqueue.WaitTimeout``).
WaitTimeout.__module__ = HarnessNotOwnedError.__module__ = "pytest_taskqueue"


class KeyFactory:
    """Fresh idempotency keys in one test's namespace: run id, worker id, test hash, then a counter.

    Two tests, two xdist workers or two runs against the same long-lived server never share a key,
    so a scenario's idempotent resubmits can only meet its own earlier submits.
    """

    def __init__(self, run_id: str, worker_id: str, nodeid: str) -> None:
        digest = hashlib.sha256(nodeid.encode()).hexdigest()[:10]
        self.namespace = f"tq-{run_id}-{worker_id}-{digest}"
        self._counter = itertools.count(1)

    def __call__(self, label: str = "") -> str:
        """A key never handed out before; ``label`` (shortened if needed) makes it readable."""
        n = next(self._counter)
        suffix = f"-{n}"
        if not label:
            return self.namespace + suffix
        room = _MAX_KEY_BYTES - len(self.namespace) - len(suffix) - 1
        clipped = label.encode()[: max(room, 0)].decode(errors="ignore")
        return f"{self.namespace}-{clipped}{suffix}"


class ProcessControl:
    """Kill, start and restart one harness-owned process (``harness.server``, ``harness.worker``).

    ``kill()`` is SIGKILL of its process group (a crash: an attempt dies mid-way, spec 7.2).
    ``start()`` and ``restart()`` (SIGTERM, a graceful stop within its shutdown grace, then a start)
    spawn it and return at once; ``await wait_ready()`` then waits, off the event loop, until it is
    ready (the API: gRPC health SERVING). Other attributes of the supervised process (``pid``,
    ``running``, ``log_tail()``) pass through.
    """

    def __init__(self, process: Any) -> None:
        self._process = process

    def __repr__(self) -> str:
        return f"<ProcessControl {self._process!r}>"

    @property
    def process(self) -> Any:
        """The supervised process itself (``pytest_taskqueue._procs.ManagedProcess``)."""
        return self._process

    def kill(self) -> None:
        """SIGKILL the process (and its process group) now."""
        self._process.kill()

    def start(self) -> None:
        """Spawn the process again (after ``kill``); then ``await wait_ready()``."""
        self._process.start(wait=False)

    def restart(self) -> None:
        """Stop the process gracefully (SIGTERM) if it runs, then spawn it; then ``await wait_ready()``."""
        self._process.restart(wait=False)

    async def wait_ready(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 (a thread's deadline)
        """Wait until it is ready (raises the supervisor's error, with its log tail, if not)."""
        await asyncio.to_thread(self._process.wait_ready, timeout)

    def __getattr__(self, name: str) -> Any:
        """Anything else the supervisor offers (pid, running, log_tail) is passed through."""
        return getattr(self._process, name)


class OwnedBackends:
    """Harness-owned resources, resolved once per session from the stack and its aioboto3 clients."""

    def __init__(self, stack: Any, db: Any, sqs: Any) -> None:
        self.stack = stack
        self.db = db
        self.sqs = sqs
        self.server = ProcessControl(stack.server)
        # An implementation run by --taskqueue-target-cmd may have no separate worker (spec 10.3):
        # its API process runs the work, so "the worker" is that process.
        self.worker_is_server = not getattr(stack, "has_worker", True)
        self.worker = self.server if self.worker_is_server else ProcessControl(stack.worker)


class TestHarness:
    """What a scenario works with (the ``harness`` fixture); see docs/plugin.md.

    Attributes:
        api: the typed client of the target.
        info: the target's ``ServerInfo``, fetched once per session.
        timeout: default deadline of one wait (``--taskqueue-timeout``).
        owned: True when the harness started the stack, so ``db``, ``sqs``, ``table``,
            ``queue_url``, ``dead_letter_queue_url``, ``worker`` and ``visibility_timeout`` exist.
    """

    __test__ = False  # not a test class, despite its name

    def __init__(
        self,
        *,
        api: TaskQueueClient,
        info: pb.ServerInfo,
        timeout: float,
        keys: Callable[[str], str],
        backends: OwnedBackends | None = None,
        faults: HarnessFaults | None = None,
        node: pytest.Item | None = None,
    ) -> None:
        self.api = api
        self.info = info
        self.timeout = timeout
        self._keys = keys
        self._backends = backends
        self._faults = faults
        self._node = node

    # -- keys and calls -------------------------------------------------------------------------

    def key(self, label: str = "") -> str:
        """A fresh idempotency key in this test's own namespace (unique per run, test and call)."""
        return self._keys(label)

    async def submit(
        self, task_type: str = "noop", payload: bytes = b"", max_attempts: int = 0, key: str | None = None
    ) -> pb.SubmitTaskResponse:
        """Submit a task (a fresh key unless one is given), retried as spec 3.6 allows.

        UNAVAILABLE and DEADLINE_EXCEEDED answers are retried with the same key and request until
        ``harness.timeout``; then ``RetriesExhausted`` (an AssertionError naming spec 9/3.6).
        """
        return (await self.submit_tracked(task_type, payload, max_attempts, key)).answer

    async def submit_tracked(
        self, task_type: str = "noop", payload: bytes = b"", max_attempts: int = 0, key: str | None = None
    ) -> Submitted:
        """``submit``, also saying how many tries failed first (``Submitted.retries``): after a
        retry, ``created=false`` is a legitimate answer for the task the first try created (3.6)."""
        used = key if key is not None else self.key(task_type)
        answer, retries = await retrying(
            lambda: self.api.submit(used, task_type, payload, max_attempts), "SubmitTask", self.timeout
        )
        return Submitted(answer, retries)

    async def get(self, task_id: str) -> pb.Task:
        """The task (GetTask), UNAVAILABLE and DEADLINE_EXCEEDED retried until ``harness.timeout``."""
        return await self.retry(lambda: self.api.get(task_id), "GetTask")

    async def events(self, task_id: str) -> list[pb.TaskEvent]:
        """The task's whole event history (ListTaskEvents), retried like ``get``."""
        return await self.retry(lambda: self.api.events(task_id), "ListTaskEvents")

    async def retry(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        """``await call()`` with the harness's retry policy (UNAVAILABLE, DEADLINE_EXCEEDED retried
        with a jittered backoff until ``harness.timeout``; ``what`` names the call in the failure)."""
        result, _ = await retrying(call, what, self.timeout)
        return result

    # -- waits ----------------------------------------------------------------------------------

    async def wait_for_terminal(self, task_id: str, timeout: float | None = None) -> pb.Task:  # noqa: ASYNC109 (the agreed API: a gRPC deadline)
        """Wait until the task is COMPLETED or DEAD; return that snapshot."""
        __tracebackhide__ = True
        return await self.wait_for_status(task_id, *sorted(TERMINAL_STATUSES), timeout=timeout)

    async def wait_for_status(self, task_id: str, *statuses: int, timeout: float | None = None) -> pb.Task:  # noqa: ASYNC109 (the agreed API: a gRPC deadline)
        """Wait until a snapshot of the task has one of ``statuses``; return it.

        Driven by WatchTask; if the server does not implement it, or the stream ends or breaks
        before the status is seen, it polls GetTask with a short backoff. A task that became
        terminal in another status can never get there (spec 2.3), so that fails at once.

        Raises:
            WaitTimeout: after ``timeout`` (default ``harness.timeout``) seconds, or at once for a
                terminal task in another status; the message has the task's current status,
                attempts, last error, the statuses seen and its whole event history.
        """
        __tracebackhide__ = True  # a failure shows the scenario's line and the message, not this code
        if not statuses:
            raise ValueError("wait_for_status needs at least one status")
        wanted = tuple(statuses)
        limit = self.timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        seen: list[int] = []
        notes: list[str] = []
        last: pb.Task | None = None

        def observe(task: pb.Task) -> pb.Task | None:
            nonlocal last
            last = task
            if not seen or seen[-1] != task.status:
                seen.append(task.status)
            return task if task.status in wanted else None

        try:
            async with asyncio.timeout_at(deadline):
                found = await self._watch_until(task_id, observe, notes)
                if found is not None:
                    return found
                if last is not None and last.status in TERMINAL_STATUSES:
                    raise await self._wait_failure(task_id, wanted, seen, notes, last, limit, terminal=True)
                found = await self._poll_until(task_id, observe, notes)
                if found is not None:
                    return found
                assert last is not None  # _poll_until returns only a match or a terminal snapshot
                raise await self._wait_failure(task_id, wanted, seen, notes, last, limit, terminal=True)
        except TimeoutError:
            raise await self._wait_failure(
                task_id, wanted, seen, notes, last, limit, terminal=False
            ) from None

    async def _watch_until(
        self, task_id: str, observe: Callable[[pb.Task], pb.Task | None], notes: list[str]
    ) -> pb.Task | None:
        """Follow WatchTask; return the matching snapshot, or None when the stream ended without one."""
        try:
            async with contextlib.aclosing(self.api.watch(task_id)) as stream:
                async for snapshot in stream:
                    if observe(snapshot) is not None:
                        return snapshot
            notes.append("WatchTask ended before the status was seen; polled GetTask after it")
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise
            notes.append(f"WatchTask failed ({describe_rpc_error(error)}); polled GetTask instead")
        return None

    async def _poll_until(
        self, task_id: str, observe: Callable[[pb.Task], pb.Task | None], notes: list[str]
    ) -> pb.Task | None:
        """Poll GetTask with a growing backoff; return a match, or None once the task is terminal."""
        # No deadline of its own: the caller's asyncio.timeout_at bounds the polling.
        backoff = Backoff(first=_POLL_BACKOFF_START_S, cap=_POLL_BACKOFF_MAX_S)
        while True:
            try:
                task = await self.api.get(task_id)
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                    raise
                notes.append(f"GetTask failed: {describe_rpc_error(error)}")
            else:
                if observe(task) is not None:
                    return task
                if task.status in TERMINAL_STATUSES:
                    return None
            await backoff.wait()

    async def _wait_failure(
        self,
        task_id: str,
        wanted: tuple[int, ...],
        seen: list[int],
        notes: list[str],
        last: pb.Task | None,
        limit: float,
        *,
        terminal: bool,
    ) -> WaitTimeout:
        """Build the ``WaitTimeout`` with a fresh look at the task and its events."""
        wanted_text = " or ".join(status_name(s) for s in wanted)
        task: pb.Task | None = last
        events: list[pb.TaskEvent] | None = None
        lines: list[str] = []
        try:
            task = await self.api.get(task_id, timeout=_DIAGNOSE_TIMEOUT_S)
            events = await self.api.events(task_id, timeout=_DIAGNOSE_TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            lines.append(f"  (could not read the task afterwards: {describe_rpc_error(error)})")
        if terminal and task is not None:
            status = status_name(task.status)
            head = f"task {task_id} became {status} (terminal) while waiting for {wanted_text}"
        else:
            head = f"task {task_id} did not reach {wanted_text} within {limit:g} s"
        lines.insert(0, head)
        lines.append(f"  current: {format_task(task)}" if task is not None else "  current: never seen")
        if seen:
            lines.append("  statuses seen: " + " -> ".join(status_name(s) for s in seen))
        lines.extend(f"  note: {note}" for note in _dedupe(notes))
        if events is not None:
            lines.append(f"  events ({len(events)}):")
            lines.extend(_format_events(events))
        return WaitTimeout(
            "\n".join(lines), task_id=task_id, wanted=wanted, task=task, events=events, seen=list(seen)
        )

    # -- harness-owned backends -----------------------------------------------------------------

    @property
    def owned(self) -> bool:
        """True when the harness started the stack and its backends are reachable."""
        return self._backends is not None

    def _owned(self, what: str) -> OwnedBackends:
        if self._backends is None:
            raise HarnessNotOwnedError(
                f"harness.{what} needs harness-owned backends, but the target is external; "
                "mark the scenario @pytest.mark.harness_only"
            )
        return self._backends

    @property
    def stack(self) -> Any:
        """The harness-owned ``Stack`` (endpoints, Toxiproxy, processes)."""
        return self._owned("stack").stack

    @property
    def db(self) -> Any:
        """aioboto3 DynamoDB client of the owned backend."""
        return self._owned("db").db

    @property
    def sqs(self) -> Any:
        """aioboto3 SQS client of the owned backend."""
        return self._owned("sqs").sqs

    @property
    def table(self) -> str:
        """Name of this worker's DynamoDB table."""
        return str(self._owned("table").stack.table)

    @property
    def queue_url(self) -> str:
        """URL of this worker's task queue."""
        return str(self._owned("queue_url").stack.queue_url)

    @property
    def dead_letter_queue_url(self) -> str:
        """URL of this worker's dead-letter queue."""
        return str(self._owned("dead_letter_queue_url").stack.dead_letter_queue_url)

    @property
    def visibility_timeout(self) -> float:
        """The task queue's visibility timeout, in seconds (how long an abandoned attempt blocks)."""
        return float(self._owned("visibility_timeout").stack.visibility_timeout)

    @property
    def worker(self) -> ProcessControl:
        """The process that runs the work: ``kill()``, ``start()``, ``restart()``, ``await wait_ready()``.

        The separate worker process, or, for an implementation run without
        ``--taskqueue-worker-cmd``, its API process (``worker_is_server``): killing the worker then
        kills the API process too.
        """
        return self._owned("worker").worker

    @property
    def worker_is_server(self) -> bool:
        """True when the work runs inside the API process (no ``--taskqueue-worker-cmd``), so
        ``harness.worker`` and ``harness.server`` control the same process."""
        return self._owned("worker_is_server").worker_is_server

    @property
    def server(self) -> ProcessControl:
        """The API process (the reference server, or the ``--taskqueue-target-cmd`` one):
        ``kill()`` (SIGKILL), ``start()``, ``restart()`` (graceful), ``await wait_ready()``."""
        return self._owned("server").server

    @contextlib.asynccontextmanager
    async def second_api(self) -> AsyncIterator[TaskQueueClient]:
        """A second API process of the same implementation on the same backends, while the block runs.

        ``async with harness.second_api() as client:`` starts it on a free port of its own, waits
        until its gRPC health answers SERVING and yields a ``TaskQueueClient`` connected to it
        directly (not through a Toxiproxy proxy; its DynamoDB and SQS links go through the same
        ``server_dynamodb``/``server_sqs`` proxies as the first API's). On exit the client is
        closed and the process stopped (SIGTERM, then SIGKILL), whatever happened in the block.
        A process that cannot start raises ``BackendStartError`` with its command and log tail.
        """
        stack = self._owned("second_api").stack
        extra = stack.api_process("second")
        try:
            await asyncio.to_thread(extra.process.start)
            client = self.api.for_target(extra.target)
            try:
                yield client
            finally:
                await client.close()
        finally:
            await asyncio.to_thread(extra.process.stop)

    # -- faults ---------------------------------------------------------------------------------

    @property
    def faults(self) -> HarnessFaults:
        """The stack's Toxiproxy links and named faults (``pytest_taskqueue._faults.HarnessFaults``).

        Skips the test when there are none: a plain ``--taskqueue-target`` is not proxied.
        """
        if self._faults is None:
            from pytest_taskqueue._faults import NO_PROXIES_REASON

            skip_for_level(self._node, NO_PROXIES_REASON)
        return self._faults

    @property
    def proxies(self) -> dict[str, Proxy]:
        """The named Toxiproxy proxies (``api``, ``server_dynamodb``, ...), as ``fault_injection.Proxy``."""
        return self.faults.proxies


def _dedupe(items: Iterable[str]) -> list[str]:
    """Drop repeats (a poll loop may note the same error many times), keeping the order."""
    return list(dict.fromkeys(items))
