"""A seeded chaos run: a mixed client workload while a seeded schedule injects network faults.

``run_chaos`` drives every conformance task type against a TaskQueue target, records each call
in a ``Recorder``, and meanwhile applies the faults of ``fault_schedule(seed, ...)`` one at a
time to named Toxiproxy proxies, checking the target's health before and after each. Then it
heals every link, resolves submits whose outcome is unknown (resubmitting with the same key, as
a real client would), waits for every acknowledged task to become terminal (WatchTask, falling
back to GetTask), collects final snapshots and histories, and returns the ``History`` for
``fault_injection.history.check``.

The same seed gives the same fault schedule and the same workload choices per client loop; the
interleaving of calls still depends on timing. Independent of pytest; runs in one asyncio loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fault_injection import faults
from fault_injection._backoff import Backoff
from fault_injection._history import INDETERMINATE_CODES, History, Recorder
from fault_injection._toxiproxy import Proxy, Toxiproxy, ToxiproxyError
from fault_injection.faults import ActiveFault
from taskqueue_contract import TERMINAL
from taskqueue_proto import SERVICE_NAME, taskqueue_pb2, taskqueue_pb2_grpc

__all__ = [
    "FAULT_KINDS",
    "ChaosConfig",
    "ChaosResult",
    "ScheduledFault",
    "fault_schedule",
    "open_fault",
    "run_chaos",
]

FAULT_KINDS = ("latency", "bandwidth", "timeout", "reset_peer", "slicer", "limit_data", "down")
"""Every fault kind the schedule draws from."""

_CHANNEL_OPTIONS = [
    # Reconnect quickly once a link heals, instead of gRPC's default backoff of up to two minutes.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.enable_retries", 0),
]
_T = TypeVar("_T")


@dataclass(frozen=True)
class ScheduledFault:
    """One fault of a schedule: what, where, in which direction, when and for how long."""

    index: int
    start_s: float
    duration_s: float
    proxy: str
    kind: str
    stream: faults.Direction
    params: Mapping[str, int]

    def describe(self) -> str:
        """A one-line description for progress lines and reports."""
        params = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return (
            f"fault {self.index}: {self.kind}({params}) on {self.proxy}/{self.stream} "
            f"at {self.start_s:.1f}s for {self.duration_s:.1f}s"
        )


def _fault_params(rng: random.Random, kind: str) -> dict[str, int]:
    if kind == "latency":
        return {"ms": rng.randrange(50, 1500, 50), "jitter_ms": rng.randrange(0, 200, 10)}
    if kind == "bandwidth":
        return {"kbps": rng.choice((1, 4, 16, 64))}
    if kind == "timeout":
        return {"ms": rng.choice((0, 0, 500, 2000))}
    if kind == "reset_peer":
        return {"after_ms": rng.choice((0, 10, 100, 500))}
    if kind == "slicer":
        return {
            "avg_size": rng.choice((1, 8, 64)),
            "size_variation": 0,
            "delay_us": rng.choice((10, 100, 1000)),
        }
    if kind == "limit_data":
        return {"bytes": rng.choice((64, 512, 4096, 32768))}
    if kind == "down":
        return {}
    raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")


def fault_schedule(
    seed: int,
    duration_s: float,
    proxies: Sequence[str],
    *,
    kinds: Sequence[str] = FAULT_KINDS,
    gap_s: tuple[float, float] = (0.5, 2.5),
    length_s: tuple[float, float] = (0.5, 3.0),
) -> list[ScheduledFault]:
    """The faults of a run, one after another, all healed before ``duration_s``.

    A pure function of its arguments: the same seed gives the same schedule.
    """
    if not proxies or not kinds:
        return []
    rng = random.Random(f"fault-schedule:{seed}")
    schedule: list[ScheduledFault] = []
    at = rng.uniform(*gap_s)
    while True:
        length = round(rng.uniform(*length_s), 3)
        if at + length > duration_s:
            return schedule
        kind = rng.choice(list(kinds))
        stream: faults.Direction = (
            "both" if kind == "down" else rng.choice(("upstream", "downstream", "both"))
        )
        schedule.append(
            ScheduledFault(
                index=len(schedule),
                start_s=round(at, 3),
                duration_s=length,
                proxy=rng.choice(list(proxies)),
                kind=kind,
                stream=stream,
                params=_fault_params(rng, kind),
            )
        )
        at += length + rng.uniform(*gap_s)


def open_fault(fault: ScheduledFault, proxy: Proxy) -> AbstractContextManager[ActiveFault]:
    """The named fault context for one scheduled fault."""
    p, s = fault.params, fault.stream
    if fault.kind == "latency":
        return faults.latency(proxy, p["ms"], p.get("jitter_ms", 0), stream=s)
    if fault.kind == "bandwidth":
        return faults.bandwidth(proxy, p["kbps"], stream=s)
    if fault.kind == "timeout":
        return faults.timeout(proxy, p.get("ms", 0), stream=s)
    if fault.kind == "reset_peer":
        return faults.reset_peer(proxy, p.get("after_ms", 0), stream=s)
    if fault.kind == "slicer":
        return faults.slicer(proxy, p["avg_size"], p.get("size_variation", 0), p.get("delay_us", 0), stream=s)
    if fault.kind == "limit_data":
        return faults.limit_data(proxy, p["bytes"], stream=s)
    if fault.kind == "down":
        return faults.down(proxy)
    raise ValueError(f"unknown fault kind {fault.kind!r}")


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
    drain_timeout_s: float = 180.0
    drain_concurrency: int = 8
    collect_timeout_s: float = 60.0
    race_width: int = 4
    progress_every_s: float = 5.0


@dataclass
class ChaosResult:
    """What a run produced: the history to check, the faults applied, and counters."""

    history: History
    schedule: list[ScheduledFault]
    applied: list[str] = field(default_factory=list)
    codes: dict[str, int] = field(default_factory=dict)
    undrained: list[str] = field(default_factory=list)

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

    def _count(self, code: str) -> None:
        self.codes[code] = self.codes.get(code, 0) + 1

    async def submit(
        self, request: taskqueue_pb2.SubmitTaskRequest, resolves: int | None = None
    ) -> tuple[str, int]:
        """One recorded SubmitTask; returns its outcome (``ok``/``fail``/``unknown``) and op id."""
        op = self.recorder.invoke_submit(request, resolves=resolves)
        try:
            response = await self.stub.SubmitTask(request, timeout=self.config.rpc_timeout_s)
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
            self._count(code)
            if code in INDETERMINATE_CODES:
                self.recorder.unknown(op, code, exc.details() or "")
                self.unresolved.setdefault(resolves if resolves is not None else op, request)
                return "unknown", op
            self.recorder.fail(op, code, exc.details() or "")
            self._resolved(request)
            return "fail", op
        self._count("OK")
        self.recorder.ok_submit(op, response)
        self.acknowledged.setdefault(response.task_id, request)
        self._resolved(request)
        return "ok", op

    def _resolved(self, request: taskqueue_pb2.SubmitTaskRequest) -> None:
        """A definite answer to ``request``: its earlier unknown submits need no more resolving."""
        for op_id in [op_id for op_id, pending in self.unresolved.items() if pending == request]:
            del self.unresolved[op_id]

    async def submit_resolving(self, request: taskqueue_pb2.SubmitTaskRequest, deadline: float) -> None:
        """Submit; while the outcome is unknown, resubmit the same key and request until ``deadline``."""
        outcome, first = await self.submit(request)
        backoff = Backoff(deadline - time.monotonic(), cap=1.0)
        while outcome == "unknown" and await backoff.wait():
            outcome, _ = await self.submit(request, resolves=self._first_op(first, request))

    def _first_op(self, hint: int, request: taskqueue_pb2.SubmitTaskRequest) -> int:
        for op_id, pending in self.unresolved.items():
            if pending.idempotency_key == request.idempotency_key:
                return op_id
        return hint

    async def read(self, kind: str, task_id: str) -> None:
        """A recorded GetTask (``get``) or ListTaskEvents (``list_events``)."""
        op = self.recorder.invoke(kind, task_id=task_id)
        try:
            if kind == "get":
                task = await self.stub.GetTask(
                    taskqueue_pb2.GetTaskRequest(task_id=task_id), timeout=self.config.rpc_timeout_s
                )
                value: dict[str, Any] = {"status": taskqueue_pb2.TaskStatus.Name(task.status)}
            else:
                answer = await self.stub.ListTaskEvents(
                    taskqueue_pb2.ListTaskEventsRequest(task_id=task_id), timeout=self.config.rpc_timeout_s
                )
                value = {"events": len(answer.events)}
        except grpc.aio.AioRpcError as exc:
            self._count(exc.code().name)
            record = self.recorder.unknown if exc.code().name in INDETERMINATE_CODES else self.recorder.fail
            record(op, exc.code().name, exc.details() or "")
            return
        self._count("OK")
        self.recorder.ok(op, value)

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
            await client.submit_resolving(request, resolve_by)
        elif roll < 0.65:
            await client.submit_resolving(rng.choice(mine), resolve_by)
        elif roll < 0.72:
            request = _new_request(rng, key)
            mine.append(request)
            width = max(2, config.race_width)
            await asyncio.gather(*(client.submit_resolving(request, resolve_by) for _ in range(width)))
        elif roll < 0.77:
            base = rng.choice(mine)
            conflict = taskqueue_pb2.SubmitTaskRequest()
            conflict.CopyFrom(base)
            conflict.payload = base.payload + b"-conflict"
            if base.task_type in ("sleep", "fail_times"):
                conflict.max_attempts = (base.max_attempts or 5) % 100 + 1
                conflict.payload = base.payload
            await client.submit(conflict)
        else:
            known = list(client.acknowledged)
            if known:
                await client.read(rng.choice(("get", "list_events")), rng.choice(known))
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
    started: float,
    applied: list[str],
    state: dict[str, str],
    progress: Callable[[str], None],
) -> None:
    """Apply the schedule's faults one at a time, each between two health checks."""
    for fault in schedule:
        wait = started + fault.start_s - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)  # the schedule's own timing
        await client.health("health_before", client.config.health_timeout_s, f"before {fault.describe()}")
        context = open_fault(fault, proxies[fault.proxy])
        await asyncio.to_thread(context.__enter__)
        state["current"] = f"{fault.kind} on {fault.proxy}"
        progress(f"chaos: {fault.describe()}")
        try:
            await asyncio.sleep(fault.duration_s)  # the fault lasts this long by design
        finally:
            await asyncio.to_thread(context.__exit__, None, None, None)
            state["current"] = "none"
        applied.append(fault.describe())
        await client.health("health_after", client.config.health_timeout_s, f"after {fault.describe()}")


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
    """Wait for one task to be terminal: WatchTask first, GetTask polling as the fallback."""
    backoff = Backoff(deadline - time.monotonic(), cap=1.0)
    while not backoff.expired:
        try:
            call = client.stub.WatchTask(
                taskqueue_pb2.WatchTaskRequest(task_id=task_id), timeout=max(0.1, deadline - time.monotonic())
            )
            async for snapshot in call:
                if snapshot.status in TERMINAL:
                    call.cancel()
                    return True
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return False
        try:
            task = await client.stub.GetTask(
                taskqueue_pb2.GetTaskRequest(task_id=task_id), timeout=client.config.rpc_timeout_s
            )
            if task.status in TERMINAL:
                return True
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return False
        await backoff.wait()
    return False


async def _collect(client: _Client, task_id: str, deadline: float) -> None:
    """Record one task's final snapshot (or NOT_FOUND) and its events."""
    stub, timeout = client.stub, client.config.rpc_timeout_s
    try:
        task = await _retrying(
            lambda: stub.GetTask(taskqueue_pb2.GetTaskRequest(task_id=task_id), timeout=timeout), deadline
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            client.recorder.record_missing(task_id)
        return
    client.recorder.record_task(task)
    with contextlib.suppress(grpc.aio.AioRpcError):
        answer = await _retrying(
            lambda: stub.ListTaskEvents(
                taskqueue_pb2.ListTaskEventsRequest(task_id=task_id), timeout=timeout
            ),
            deadline,
        )
        client.recorder.record_events(task_id, answer.events)


async def _drain(
    client: _Client, task_ids: Sequence[str], config: ChaosConfig, progress: Callable[[str], None]
) -> set[str]:
    """Wait (a few watches at a time, so the target is not flooded) until every task is terminal."""
    deadline = time.monotonic() + config.drain_timeout_s
    terminal: set[str] = set()
    gate = asyncio.Semaphore(config.drain_concurrency)

    async def wait_one(task_id: str) -> None:
        async with gate:
            if await _wait_terminal(client, task_id, deadline):
                terminal.add(task_id)

    reporter = asyncio.create_task(
        _every(
            config.progress_every_s,
            lambda: f"chaos: draining, {len(terminal)}/{len(task_ids)} terminal",
            progress,
        )
    )
    try:
        await asyncio.gather(*(wait_one(tid) for tid in task_ids))
    finally:
        reporter.cancel()
    return terminal


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


async def run_chaos(
    target: str,
    toxiproxy: Toxiproxy | None,
    config: ChaosConfig,
    *,
    channel: grpc.aio.Channel | None = None,
    progress: Callable[[str], None] = _stderr,
) -> ChaosResult:
    """Run the workload and fault schedule against ``target`` and return the recorded history.

    ``toxiproxy`` and ``config.fault_proxies`` name the links to break (none: a run without
    faults). ``channel`` overrides the insecure channel to ``target`` (e.g. for TLS); it is
    not closed here. Check the result with ``fault_injection.history.check(result.history)``.
    """
    schedule = fault_schedule(config.seed, config.duration_s, config.fault_proxies, kinds=config.fault_kinds)
    proxies: dict[str, Proxy] = {}
    if schedule:
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
                k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in asdict(config).items()
            },
            "schedule": [asdict(f) for f in schedule],
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
                group.create_task(_fault_loop(client, schedule, proxies, started, applied, state, progress))
                for i in range(config.clients):
                    group.create_task(_client_loop(client, i, stop_at))
        finally:
            reporter.cancel()
            await asyncio.to_thread(_heal, proxies)
        progress(f"chaos: workload done, {recorder.operation_count} ops; healing, resolving and draining")
        await client.health("health_after_heal", config.health_timeout_s, "after healing every link")
        resolve_by = time.monotonic() + config.resolve_timeout_s
        for request in list(client.unresolved.values()):
            await client.submit_resolving(request, resolve_by)
        task_ids = recorder.acknowledged_task_ids()
        terminal = await _drain(client, task_ids, config, progress)
        undrained = [tid for tid in task_ids if tid not in terminal]
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
        )
    finally:
        if proxies:
            with contextlib.suppress(ToxiproxyError):
                await asyncio.to_thread(_heal, proxies)
        if own_channel:
            await chan.close()
