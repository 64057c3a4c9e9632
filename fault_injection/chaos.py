"""A seeded chaos run: a mixed client workload while a seeded schedule injects faults.

``run_chaos`` drives every conformance task type against a TaskQueue target (submits, resubmits,
races, conflicts, GetTask, ListTaskEvents and WatchTask), records each call and everything each
read saw in a ``Recorder``, and meanwhile applies the faults of ``fault_schedule(seed, ...)`` one
at a time: network faults on named Toxiproxy proxies, and, when the harness hands over its
processes, SIGKILL+restart and SIGSTOP/SIGCONT of the API server and the worker. Each fault is a
window of the history (from its start until the target is SERVING again). Then it heals every
link, makes a final submit that must succeed, resolves submits whose outcome is unknown
(resubmitting the same request with the same key), waits for every acknowledged task to become
terminal (WatchTask, falling back to GetTask; progress lines name the tasks still waited for),
reports the tasks it gave up on with their evidence at once, collects final snapshots and
histories, and returns the ``History`` for ``fault_injection.history.check``.

``run_and_check`` is the run followed by that check: its ``ChaosOutcome`` holds the result, the
anomalies and where the history was saved, and shapes them for reports (``history_summary``, the
anomalies in ``Anomaly.to_json``'s one shape) and terminals (``anomaly_lines``).

The same seed gives the same fault schedule and the same workload choices per client loop; the
interleaving of calls still depends on timing. Independent of pytest; runs in one asyncio loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import pathlib
import random
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fault_injection._backoff import Backoff
from fault_injection._checker import Anomaly, check
from fault_injection._history import (
    INDETERMINATE_CODES,
    History,
    Recorder,
    compact_events,
    compact_task,
    event_from_proto,
)
from fault_injection._liveness import DEFAULT_MIN_ACK_FRACTION, liveness
from fault_injection._schedule import (
    FAULT_KINDS,
    ProcessControl,
    ScheduledFault,
    fault_schedule,
    open_fault,
)
from fault_injection._toxiproxy import Proxy, Toxiproxy, ToxiproxyError
from taskqueue_contract import TERMINAL, status_name
from taskqueue_proto import SERVICE_NAME, taskqueue_pb2, taskqueue_pb2_grpc

__all__ = [
    "FAULT_KINDS",
    "ChaosConfig",
    "ChaosOutcome",
    "ChaosResult",
    "ProcessControl",
    "ScheduledFault",
    "default_drain_timeout",
    "fault_schedule",
    "open_fault",
    "run_and_check",
    "run_chaos",
]

_CHANNEL_OPTIONS = [
    # Reconnect quickly once a link heals, instead of gRPC's default backoff of up to two minutes.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.enable_retries", 0),
]
_T = TypeVar("_T")


@dataclass(frozen=True)
class ChaosConfig:
    """Knobs of a chaos run; the defaults suit a local reference stack."""

    seed: int = 0
    duration_s: float = 60.0
    fault_proxies: Sequence[str] = ()
    fault_kinds: Sequence[str] = FAULT_KINDS
    clients: int = 8
    ops_per_second: float = 20.0
    rpc_timeout_s: float = 2.0
    resolve_timeout_s: float = 60.0
    health_timeout_s: float = 30.0
    drain_timeout_s: float | None = None
    """Seconds to wait for every task to be terminal after healing (None: ``default_drain_timeout``)."""
    drain_concurrency: int = 8
    collect_timeout_s: float = 60.0
    race_width: int = 4
    progress_every_s: float = 5.0
    watch_timeout_s: float = 3.0
    """How long a workload WatchTask follows its task before the client stops watching."""
    final_submit_timeout_s: float = 10.0
    min_ack_fraction: float = DEFAULT_MIN_ACK_FRACTION
    """Liveness: the share of operations made while no fault was active that must be answered."""
    fault_processes: Sequence[str] = ()
    """Processes the schedule may kill or pause (``server``, ``worker``): only those the harness owns."""
    skipped_links: Mapping[str, str] = field(default_factory=dict)
    """Links not faulted and why (recorded in the history's meta for the report)."""

    def drain_timeout(self) -> float:
        """``drain_timeout_s``, or the default sized from the run."""
        return (
            self.drain_timeout_s
            if self.drain_timeout_s is not None
            else default_drain_timeout(self.duration_s)
        )


def default_drain_timeout(duration_s: float) -> float:
    """30 s plus half the run's duration: time for the backlog, retries and abandoned attempts."""
    return 30.0 + duration_s / 2


@dataclass
class ChaosResult:
    """What a run produced: the history to check, the faults applied, and counters."""

    history: History
    schedule: list[ScheduledFault]
    applied: list[str] = field(default_factory=list)
    codes: dict[str, int] = field(default_factory=dict)
    undrained: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    """One line of evidence per task the drain gave up on (its last snapshot and history)."""

    @property
    def operations(self) -> int:
        """How many client operations were recorded."""
        return len(self.history.operations)


class _Client:
    """The workload's gRPC calls, each recorded; shared by every client loop."""

    def __init__(self, channel: grpc.aio.Channel, recorder: Recorder, config: ChaosConfig) -> None:
        self.stub = taskqueue_pb2_grpc.TaskQueueStub(channel)
        self.health_stub = health_pb2_grpc.HealthStub(channel)
        self.recorder = recorder
        self.config = config
        self.codes: dict[str, int] = {}
        self.acknowledged: dict[str, taskqueue_pb2.SubmitTaskRequest] = {}
        self.unresolved: dict[int, taskqueue_pb2.SubmitTaskRequest] = {}
        self.last_seen: dict[str, taskqueue_pb2.Task] = {}
        self.recent: dict[int, list[str]] = {}
        """Per client, the task ids its own submits were answered with, newest last."""

    def _count(self, code: str) -> None:
        self.codes[code] = self.codes.get(code, 0) + 1

    def _failed(self, op: int, exc: grpc.aio.AioRpcError) -> str:
        """Record a failed call as unknown (indeterminate codes) or fail; return the outcome."""
        code = exc.code().name
        self._count(code)
        if code in INDETERMINATE_CODES:
            self.recorder.unknown(op, code, exc.details() or "")
            return "unknown"
        self.recorder.fail(op, code, exc.details() or "")
        return "fail"

    async def submit(
        self,
        request: taskqueue_pb2.SubmitTaskRequest,
        resolves: int | None = None,
        *,
        client: int | None = None,
        rpc_timeout_s: float | None = None,
    ) -> tuple[str, int]:
        """One recorded SubmitTask; returns its outcome (``ok``/``fail``/``unknown``) and op id."""
        op = self.recorder.invoke_submit(request, resolves=resolves, client=client)
        try:
            response = await self.stub.SubmitTask(request, timeout=rpc_timeout_s or self.config.rpc_timeout_s)
        except grpc.aio.AioRpcError as exc:
            outcome = self._failed(op, exc)
            if outcome == "unknown":
                self.unresolved.setdefault(resolves if resolves is not None else op, request)
            else:
                self._resolved(request)
            return outcome, op
        self._count("OK")
        self.recorder.ok_submit(op, response)
        if client is not None and response.task_id not in self.acknowledged:
            self.recent.setdefault(client, []).append(response.task_id)
        self.acknowledged.setdefault(response.task_id, request)
        self._resolved(request)
        return "ok", op

    def _resolved(self, request: taskqueue_pb2.SubmitTaskRequest) -> None:
        """A definite answer to ``request``: its earlier unknown submits need no more resolving."""
        for op_id in [op_id for op_id, pending in self.unresolved.items() if pending == request]:
            del self.unresolved[op_id]

    async def submit_resolving(
        self, request: taskqueue_pb2.SubmitTaskRequest, deadline: float, client: int | None = None
    ) -> None:
        """Submit; while the outcome is unknown, resubmit the same key and request until ``deadline``."""
        outcome, first = await self.submit(request, client=client)
        backoff = Backoff(deadline - time.monotonic(), cap=1.0)
        while outcome == "unknown" and await backoff.wait():
            outcome, _ = await self.submit(request, resolves=self._first_op(first, request), client=client)

    def _first_op(self, hint: int, request: taskqueue_pb2.SubmitTaskRequest) -> int:
        for op_id, pending in self.unresolved.items():
            if pending.idempotency_key == request.idempotency_key:
                return op_id
        return hint

    def _seen(self, task: taskqueue_pb2.Task) -> None:
        self.last_seen[task.task_id] = task

    async def get(self, task_id: str, client: int | None = None) -> taskqueue_pb2.Task | None:
        """A recorded GetTask; the task, or None when the call failed."""
        op = self.recorder.invoke("get", task_id=task_id, client=client)
        try:
            task = await self.stub.GetTask(
                taskqueue_pb2.GetTaskRequest(task_id=task_id), timeout=self.config.rpc_timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            self._failed(op, exc)
            return None
        self._count("OK")
        self._seen(task)
        self.recorder.ok(op, {"task": compact_task(task)})
        return task

    async def list_events(self, task_id: str, client: int | None = None) -> None:
        """A recorded ListTaskEvents."""
        op = self.recorder.invoke("list_events", task_id=task_id, client=client)
        try:
            answer = await self.stub.ListTaskEvents(
                taskqueue_pb2.ListTaskEventsRequest(task_id=task_id), timeout=self.config.rpc_timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            self._failed(op, exc)
            return
        self._count("OK")
        self.recorder.ok(op, {"events": compact_events(answer.events)})

    async def watch(self, task_id: str, timeout_s: float, client: int | None = None) -> str:
        """A recorded WatchTask followed for up to ``timeout_s``: ``terminal``, ``stopped``, or a code.

        ``end`` in the record is ``OK`` (the server closed the stream), ``cancelled`` (the client's
        deadline ended the stream: a watch of a task that takes longer) or the error code.
        """
        op = self.recorder.invoke("watch", task_id=task_id, client=client)
        snapshots: list[list[Any]] = []
        call = self.stub.WatchTask(taskqueue_pb2.WatchTaskRequest(task_id=task_id), timeout=timeout_s)
        end, result = "OK", "stopped"
        try:
            async for snapshot in call:
                snapshots.append(compact_task(snapshot))
                self._seen(snapshot)
                if snapshot.status in TERMINAL:
                    result = "terminal"
        except grpc.aio.AioRpcError as exc:
            if not snapshots:
                self._failed(op, exc)
                return exc.code().name
            end = "cancelled" if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED else exc.code().name
            result = result if result == "terminal" else end
        self._count("OK" if end in ("OK", "cancelled") else end)
        self.recorder.ok(op, {"snapshots": snapshots, "end": end})
        return result

    async def health(self, kind: str, timeout_s: float, detail: str) -> bool:
        """Probe health until SERVING or ``timeout_s``; record one ``kind`` op with the result."""
        op = self.recorder.invoke(kind)
        backoff = Backoff(timeout_s)
        last = "no answer"
        while True:
            try:
                answer = await self.health_stub.Check(
                    health_pb2.HealthCheckRequest(service=SERVICE_NAME),
                    timeout=max(0.05, min(self.config.rpc_timeout_s, backoff.remaining())),
                )
                last = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    self.recorder.ok(op, {"status": last, "detail": detail})
                    return True
            except grpc.aio.AioRpcError as exc:
                last = exc.code().name
            if not await backoff.wait():
                self.recorder.fail(op, last, f"{detail}: not SERVING within {timeout_s:.0f}s")
                return False


def _new_request(rng: random.Random, key: str) -> taskqueue_pb2.SubmitTaskRequest:
    """A seeded request of one of the conformance task types."""
    kind = rng.choices(("noop", "echo", "sleep", "fail_always", "fail_times"), weights=(30, 20, 15, 10, 25))[
        0
    ]
    max_attempts = rng.choice((0, 0, 0, 3, 5, 7))
    if kind == "echo":
        payload = rng.randbytes(rng.randrange(0, 64))
    elif kind == "sleep":
        payload = json.dumps({"ms": rng.randrange(0, 300, 10)}).encode()
    elif kind == "fail_times":
        payload = json.dumps({"times": rng.randrange(0, 4)}).encode()
    else:
        payload = b""
    if kind == "fail_always" and max_attempts == 0:
        max_attempts = rng.choice((0, 2, 3))
    return taskqueue_pb2.SubmitTaskRequest(
        idempotency_key=key, task_type=kind, payload=payload, max_attempts=max_attempts
    )


async def _client_loop(client: _Client, index: int, stop_at: float) -> None:
    """One client: a seeded mix of new submits, resubmits, races, conflicts and reads."""
    config = client.config
    rng = random.Random(f"chaos-client:{config.seed}:{index}")
    interval = config.clients / max(config.ops_per_second, 0.001)
    next_at = time.monotonic()
    mine: list[taskqueue_pb2.SubmitTaskRequest] = []
    counter = 0
    while time.monotonic() < stop_at:
        counter += 1
        key = f"chaos-{config.seed}-{index}-{counter}"
        roll = rng.random()
        # Unknown outcomes still open at the end of the workload are resolved after healing.
        resolve_by = min(time.monotonic() + config.resolve_timeout_s, stop_at)
        if roll < 0.55 or not mine:
            request = _new_request(rng, key)
            mine.append(request)
            await client.submit_resolving(request, resolve_by, index)
            follow = rng.random()
            if follow < 0.35:  # read the new task at once: its states while it runs
                task_id = next(
                    (t for t in client.recent.get(index, [])[-3:] if client.acknowledged[t] is request), None
                )
                if task_id is not None and follow < 0.2:
                    await client.watch(task_id, config.watch_timeout_s, index)
                elif task_id is not None:
                    await client.get(task_id, index)
        elif roll < 0.65:
            await client.submit_resolving(rng.choice(mine), resolve_by, index)
        elif roll < 0.72:
            request = _new_request(rng, key)
            mine.append(request)
            width = max(2, config.race_width)
            await asyncio.gather(*(client.submit_resolving(request, resolve_by, index) for _ in range(width)))
        elif roll < 0.77:
            base = rng.choice(mine)
            conflict = taskqueue_pb2.SubmitTaskRequest()
            conflict.CopyFrom(base)
            conflict.payload = base.payload + b"-conflict"
            if base.task_type in ("sleep", "fail_times"):
                conflict.max_attempts = (base.max_attempts or 5) % 100 + 1
                conflict.payload = base.payload
            await client.submit(conflict, client=index)
        else:
            recent = client.recent.get(index, [])[-5:]  # mostly tasks still in flight: mid-run states
            known = recent if recent and rng.random() < 0.7 else list(client.acknowledged)
            if known:
                task_id = rng.choice(known)
                read = rng.choice(("get", "list_events", "watch"))
                if read == "get":
                    await client.get(task_id, index)
                elif read == "list_events":
                    await client.list_events(task_id, index)
                else:
                    await client.watch(task_id, config.watch_timeout_s, index)
        next_at += interval
        delay = next_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)  # pacing of the workload, not synchronisation
        else:
            next_at = time.monotonic()


async def _fault_loop(
    client: _Client,
    schedule: Sequence[ScheduledFault],
    proxies: Mapping[str, Proxy],
    processes: Mapping[str, ProcessControl],
    started: float,
    applied: list[str],
    state: dict[str, str],
    progress: Callable[[str], None],
) -> None:
    """Apply the schedule's faults one at a time, each between two health checks, each a window."""
    recorder = client.recorder
    for fault in schedule:
        wait = started + fault.start_s - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)  # the schedule's own timing
        await client.health("health_before", client.config.health_timeout_s, f"before {fault.describe()}")
        state["current"] = f"{fault.kind} on {fault.proxy}"
        progress(f"chaos: {fault.describe()}")
        window = recorder.window_start(fault.kind, fault.proxy, fault.describe())
        try:
            if fault.process:
                await _process_fault(fault, processes[fault.proxy])
            else:
                context = open_fault(fault, proxies[fault.proxy])
                await asyncio.to_thread(context.__enter__)
                try:
                    await asyncio.sleep(fault.duration_s)  # the fault lasts this long by design
                finally:
                    await asyncio.to_thread(context.__exit__, None, None, None)
        finally:
            recorder.window_end(window)
            state["current"] = "none"
        applied.append(fault.describe())
        if await client.health("health_after", client.config.health_timeout_s, f"after {fault.describe()}"):
            recorder.window_recovered(window)


async def _process_fault(fault: ScheduledFault, process: ProcessControl) -> None:
    """SIGKILL then start again, or SIGSTOP then SIGCONT, ``fault.duration_s`` apart."""
    if fault.kind == "kill":
        await asyncio.to_thread(process.kill)
        try:
            await asyncio.sleep(fault.duration_s)  # down this long by design
        finally:
            await asyncio.to_thread(process.start)
    else:
        await asyncio.to_thread(process.pause)
        try:
            await asyncio.sleep(fault.duration_s)  # stopped this long by design
        finally:
            await asyncio.to_thread(process.resume)


async def _every(interval_s: float, line: Callable[[], str], progress: Callable[[str], None]) -> None:
    """Emit ``line()`` every ``interval_s`` until cancelled."""
    while True:
        await asyncio.sleep(interval_s)
        progress(line())


def _heal(proxies: Mapping[str, Proxy]) -> None:
    """Enable every fault proxy and remove any toxic left on it (a belt to the faults' braces)."""
    for proxy in proxies.values():
        proxy.enable()
        for toxic in proxy.toxics():
            with contextlib.suppress(ToxiproxyError):
                proxy.remove_toxic(toxic.name)


async def _retrying(call: Callable[[], Awaitable[_T]], deadline: float) -> _T:
    """Retry a read on indeterminate errors until ``deadline``; other errors propagate."""
    backoff = Backoff(deadline - time.monotonic(), cap=1.0)
    while True:
        try:
            return await call()
        except grpc.aio.AioRpcError as exc:
            if exc.code().name not in INDETERMINATE_CODES or not await backoff.wait():
                raise


async def _wait_terminal(client: _Client, task_id: str, deadline: float) -> bool:
    """Wait for one task to be terminal: WatchTask first, GetTask polling as the fallback (all recorded)."""
    backoff = Backoff(deadline - time.monotonic(), cap=1.0)
    while not backoff.expired:
        ended = await client.watch(task_id, max(0.1, backoff.remaining()))
        if ended == "terminal":
            return True
        if ended == "NOT_FOUND":
            return False
        task = await client.get(task_id)
        if task is not None and task.status in TERMINAL:
            return True
        await backoff.wait()
    return False


async def _collect(client: _Client, task_id: str, deadline: float) -> None:
    """Record one task's final snapshot (or NOT_FOUND) and its events; the GetTask is a recorded read too."""
    stub, timeout = client.stub, client.config.rpc_timeout_s
    op = client.recorder.invoke("get", task_id=task_id)
    try:
        task = await _retrying(
            lambda: stub.GetTask(taskqueue_pb2.GetTaskRequest(task_id=task_id), timeout=timeout), deadline
        )
    except grpc.aio.AioRpcError as exc:
        client._failed(op, exc)
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            client.recorder.record_missing(task_id)
        return
    client.recorder.ok(op, {"task": compact_task(task)})
    client.recorder.record_task(task)
    with contextlib.suppress(grpc.aio.AioRpcError):
        answer = await _retrying(
            lambda: stub.ListTaskEvents(
                taskqueue_pb2.ListTaskEventsRequest(task_id=task_id), timeout=timeout
            ),
            deadline,
        )
        client.recorder.record_events(task_id, answer.events)


def _waiting_for(client: _Client, task_ids: Sequence[str], terminal: set[str], limit: int = 5) -> str:
    """``t1 (PENDING, 0 attempts), t2 (never seen), ... and 3 more``: tasks still not terminal."""
    left = [task_id for task_id in task_ids if task_id not in terminal]
    shown = []
    for task_id in left[:limit]:
        seen = client.last_seen.get(task_id)
        shown.append(
            f"{task_id} ({status_name(seen.status)}, {seen.attempts} attempts)"
            if seen is not None
            else f"{task_id} (not read yet)"
        )
    more = f" and {len(left) - limit} more" if len(left) > limit else ""
    return ", ".join(shown) + more


async def _drain(
    client: _Client, task_ids: Sequence[str], config: ChaosConfig, progress: Callable[[str], None]
) -> set[str]:
    """Wait (a few watches at a time, so the target is not flooded) until every task is terminal."""
    timeout = config.drain_timeout()
    deadline = time.monotonic() + timeout
    terminal: set[str] = set()
    gate = asyncio.Semaphore(config.drain_concurrency)

    async def wait_one(task_id: str) -> None:
        async with gate:
            if await _wait_terminal(client, task_id, deadline):
                terminal.add(task_id)

    def line() -> str:
        left = deadline - time.monotonic()
        text = f"chaos: draining, {len(terminal)}/{len(task_ids)} terminal, {left:.0f}s left"
        return text + (
            f"; waiting for {_waiting_for(client, task_ids, terminal)}"
            if len(terminal) < len(task_ids)
            else ""
        )

    progress(f"chaos: draining {len(task_ids)} tasks (gives up after {timeout:.0f}s, --drain-timeout)")
    reporter = asyncio.create_task(_every(config.progress_every_s, line, progress))
    try:
        await asyncio.gather(*(wait_one(tid) for tid in task_ids))
    finally:
        reporter.cancel()
    return terminal


async def _evidence(client: _Client, task_id: str) -> str:
    """One line on a task the drain gave up on: its key, last snapshot and history as read now."""
    request = client.acknowledged.get(task_id)
    key = request.idempotency_key if request is not None else "?"
    what = f"task {task_id} key {key} ({request.task_type if request is not None else '?'})"
    try:
        task = await client.stub.GetTask(
            taskqueue_pb2.GetTaskRequest(task_id=task_id), timeout=client.config.rpc_timeout_s
        )
        answer = await client.stub.ListTaskEvents(
            taskqueue_pb2.ListTaskEventsRequest(task_id=task_id), timeout=client.config.rpc_timeout_s
        )
    except grpc.aio.AioRpcError as exc:
        return f"{what}: reading it failed {exc.code().name} {exc.details() or ''}".rstrip()
    events = (
        " ".join(event_from_proto(event).to_contract().label() for event in answer.events) or "(no events)"
    )
    state = (
        f"{status_name(task.status)}, attempts {task.attempts}, updated_at {task.updated_at.ToJsonString()}"
    )
    return f"{what}: {state}; events: {events}"


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


async def run_chaos(
    target: str,
    toxiproxy: Toxiproxy | None,
    config: ChaosConfig,
    *,
    channel: grpc.aio.Channel | None = None,
    progress: Callable[[str], None] = _stderr,
    processes: Mapping[str, ProcessControl] | None = None,
) -> ChaosResult:
    """Run the workload and fault schedule against ``target`` and return the recorded history.

    ``toxiproxy`` and ``config.fault_proxies`` name the links to break (none: a run without
    network faults); ``processes`` the harness's own processes by name, of which those in
    ``config.fault_processes`` are killed and paused too. ``channel`` overrides the insecure
    channel to ``target`` (e.g. for TLS); it is not closed here. Check the result with
    ``fault_injection.history.check(result.history)``.
    """
    owned = dict(processes or {})
    missing = [name for name in config.fault_processes if name not in owned]
    if missing:
        raise ValueError(f"fault_processes {', '.join(missing)} were named but not handed over")
    schedule = fault_schedule(
        config.seed,
        config.duration_s,
        config.fault_proxies,
        kinds=config.fault_kinds,
        processes=tuple(config.fault_processes),
    )
    proxies: dict[str, Proxy] = {}
    if any(not fault.process for fault in schedule):
        if toxiproxy is None:
            raise ValueError("fault_proxies were named but no Toxiproxy client was given")
        for name in config.fault_proxies:
            proxies[name] = await asyncio.to_thread(toxiproxy.get_proxy, name)
    own_channel = channel is None
    chan = channel or grpc.aio.insecure_channel(target, options=_CHANNEL_OPTIONS)
    recorder = Recorder(
        meta={
            "seed": config.seed,
            "target": target,
            "config": {
                k: (list(v) if isinstance(v, (list, tuple)) else dict(v) if isinstance(v, Mapping) else v)
                for k, v in asdict(config).items()
            },
            "drain_timeout_s": config.drain_timeout(),
            "schedule": [asdict(f) for f in schedule],
            "skipped_links": dict(config.skipped_links),
        }
    )
    client = _Client(chan, recorder, config)
    applied: list[str] = []
    state = {"current": "none"}
    try:
        progress(f"chaos: seed={config.seed} {config.duration_s:.0f}s target={target} faults={len(schedule)}")
        if not await client.health("health_start", config.health_timeout_s, "before the run"):
            raise RuntimeError(f"{target} is not SERVING; chaos run not started")
        started = time.monotonic()
        stop_at = started + config.duration_s
        reporter = asyncio.create_task(
            _every(
                config.progress_every_s,
                lambda: (
                    f"chaos: {time.monotonic() - started:5.1f}s/{config.duration_s:.0f}s "
                    f"ops={recorder.operation_count} tasks={len(client.acknowledged)} "
                    f"faults={len(applied)}/{len(schedule)} current={state['current']}"
                ),
                progress,
            )
        )
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(
                    _fault_loop(client, schedule, proxies, owned, started, applied, state, progress)
                )
                for i in range(config.clients):
                    group.create_task(_client_loop(client, i, stop_at))
        finally:
            reporter.cancel()
            await asyncio.to_thread(_heal, proxies)
        progress(f"chaos: workload done, {recorder.operation_count} ops; healing, resolving and draining")
        await client.health("health_after_heal", config.health_timeout_s, "after healing every link")
        final = taskqueue_pb2.SubmitTaskRequest(
            idempotency_key=f"chaos-{config.seed}-final", task_type="noop"
        )
        outcome, final_op = await client.submit(final, rpc_timeout_s=config.final_submit_timeout_s)
        recorder.meta["final_submit_op"] = final_op
        progress(f"chaos: final submit after healing: {outcome}")
        resolve_by = time.monotonic() + config.resolve_timeout_s
        for request in list(client.unresolved.values()):
            await client.submit_resolving(request, resolve_by)
        task_ids = recorder.acknowledged_task_ids()
        terminal = await _drain(client, task_ids, config, progress)
        undrained = [tid for tid in task_ids if tid not in terminal]
        lost: list[str] = []
        if undrained:
            progress(
                f"chaos: gave up draining after {config.drain_timeout():.0f}s (--drain-timeout): "
                f"{len(undrained)} of {len(task_ids)} tasks not terminal"
            )
            for task_id in undrained:
                lost.append(await _evidence(client, task_id))
                progress(f"chaos:   {lost[-1]}")
        progress(f"chaos: {len(terminal)}/{len(task_ids)} tasks terminal; collecting final state")
        collect_by = time.monotonic() + config.collect_timeout_s
        gate = asyncio.Semaphore(4)

        async def collect_one(task_id: str) -> None:
            async with gate:
                await _collect(client, task_id, collect_by)

        await asyncio.gather(*(collect_one(tid) for tid in task_ids))
        return ChaosResult(
            history=recorder.history(),
            schedule=schedule,
            applied=applied,
            codes=dict(client.codes),
            undrained=undrained,
            lost=lost,
        )
    finally:
        if proxies:
            with contextlib.suppress(ToxiproxyError):
                await asyncio.to_thread(_heal, proxies)
        if own_channel:
            await chan.close()


# ------------------------------------------------------------------------------ the run, checked

SHOWN_ANOMALIES = 20
"""How many anomalies ``ChaosOutcome.anomaly_lines`` lists before "... and N more"."""


@dataclass
class ChaosOutcome:
    """A checked chaos run: the run's result, the checker's anomalies, where the history went."""

    result: ChaosResult
    anomalies: list[Anomaly]
    history_path: pathlib.Path | None = None
    links: Sequence[str] = ()

    def history_summary(self) -> dict[str, Any]:
        """A report's ``history`` object: counts, the anomalies (``Anomaly.to_json``), the saved path."""
        history = self.result.history
        first = history.operations[0].invoke_ns if history.operations else 0
        kinds = collections.Counter(op.kind for op in history.operations)
        health = [op for op in history.operations if op.kind.startswith("health")]
        return {
            "operations": self.result.operations,
            "operations_by_kind": dict(sorted(kinds.items())),
            "tasks": len(history.tasks),
            "undrained": list(self.result.undrained),
            "health_checks": {
                "ok": sum(1 for op in health if op.outcome == "ok"),
                "failed": sum(1 for op in health if op.outcome != "ok"),
            },
            "codes": dict(sorted(self.result.codes.items())),
            "liveness": liveness(history).to_json(),
            "windows": [
                {
                    "kind": window.kind,
                    "target": window.target,
                    "process": window.process,
                    "start_s": round((window.start_ns - first) / 1e9, 3),
                    "healed_s": round((window.end_ns - first) / 1e9, 3) if window.end_ns else None,
                    "recovered_s": round((window.recovered_ns - first) / 1e9, 3)
                    if window.recovered_ns
                    else None,
                    "detail": window.detail,
                }
                for window in history.windows
            ],
            "skipped_links": dict(history.meta.get("skipped_links", {})),
            "lost": list(self.result.lost),
            "anomalies": [anomaly.to_json() for anomaly in self.anomalies],
            "anomalies_by_rule": dict(collections.Counter(anomaly.rule for anomaly in self.anomalies)),
            "path": str(self.history_path) if self.history_path is not None else None,
        }

    def anomaly_lines(self, limit: int = SHOWN_ANOMALIES) -> list[str]:
        """One line per anomaly (the first ``limit``), for terminals and failure messages."""
        lines = [anomaly.line() for anomaly in self.anomalies[:limit]]
        if len(self.anomalies) > limit:
            lines.append(
                f"... and {len(self.anomalies) - limit} more (see the report or `taskqueue-harness check`)"
            )
        return lines


async def run_and_check(
    target: str,
    toxiproxy: Toxiproxy | None,
    config: ChaosConfig,
    *,
    history_path: pathlib.Path | None = None,
    progress: Callable[[str], None] | None = None,
    processes: Mapping[str, ProcessControl] | None = None,
) -> ChaosOutcome:
    """``run_chaos``, then ``check`` on its history, saved to ``history_path`` when given.

    ``progress`` receives the progress lines (default: stderr); ``processes`` as ``run_chaos``.
    """
    result = await run_chaos(target, toxiproxy, config, progress=progress or _stderr, processes=processes)
    anomalies = check(result.history)
    if history_path is not None:
        history_path.parent.mkdir(parents=True, exist_ok=True)
        result.history.save(history_path)
    return ChaosOutcome(result, anomalies, history_path, tuple(config.fault_proxies))
