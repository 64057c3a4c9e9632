"""The open-loop generator: SubmitTask on a fixed arrival schedule, in several processes.

Arrival ``i`` of a run at ``rate`` tasks/s is due at ``start + i / rate``, whatever the target
answers (open loop: a slow answer never delays the next send, so there is no coordinated
omission). Each latency is measured from the arrival's *intended* time, not from when it was
actually sent. Arrivals are dealt round-robin to ``processes`` worker processes (spawned, each
with its own grpc.aio event loop and ``connections / processes`` channels, at least one), which
start together on a wall-clock instant chosen once all are connected.

When a process cannot keep to the schedule (a send more than ``max_lag_s`` behind its due time
for more than ``max_late_fraction`` of the arrivals and more than ``MIN_LATE_SENDS`` of them, or
more than ``max_in_flight`` calls
outstanding so arrivals had to be dropped), the result says so and ``valid`` is false: the
offered rate was not really offered, and the run must not be read as the target's figure.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Final, NamedTuple

from pytest_taskqueue.load.workload import Workload

__all__ = ["GeneratorConfig", "GeneratorError", "GeneratorResult", "SubmitRecord", "run_generator"]

MIN_LATE_SENDS: Final = 10
"""Fewer late sends than this never invalidate a run: a lone stall of a busy machine is in the
latencies already (measured from the intended times); falling behind shows as many late sends."""
_READY_TIMEOUT_S: Final = 20.0
_START_MARGIN_NS: Final = 200_000_000
_SLEEP_THRESHOLD_NS: Final = 200_000
_YIELD_EVERY: Final = 16


class GeneratorError(RuntimeError):
    """The generator could not run (a process did not start or connect, or died)."""


class SubmitRecord(NamedTuple):
    """One SubmitTask call: which arrival (and copy), when, how it ended.

    ``sent_ns``/``done_ns`` are wall-clock; ``latency_us`` is from the arrival's intended time to
    the answer (monotonic clock). ``code`` is ``OK`` or the gRPC status code name.
    """

    arrival: int
    copy: int
    sent_ns: int
    done_ns: int
    latency_us: int
    code: str
    task_id: str
    created: bool
    status: int
    detail: str


@dataclass(frozen=True)
class GeneratorConfig:
    """One open-loop run against ``target``."""

    target: str
    rate: float
    duration_s: float
    workload: Workload
    connections: int = 4
    processes: int = 1
    rpc_timeout_s: float = 5.0
    max_lag_s: float = 0.050
    max_late_fraction: float = 0.01
    max_in_flight: int = 20_000
    first_index: int = 0

    @property
    def arrivals(self) -> int:
        """How many arrivals the schedule has."""
        return int(self.rate * self.duration_s)


@dataclass
class GeneratorResult:
    """Every submit made, and how well the generator kept to its schedule."""

    config: GeneratorConfig
    start_ns: int
    submits: list[SubmitRecord] = field(default_factory=list)
    late: int = 0
    dropped: int = 0
    max_lag_us: int = 0
    lag_p99_us: int = 0
    cpu_s: float = 0.0
    """CPU seconds the generator processes spent from the start of the schedule to its last answer."""

    def intended_ns(self, index: int) -> int:
        """The wall-clock time arrival ``index`` was due."""
        return self.start_ns + int((index - self.config.first_index) * 1e9 / self.config.rate)

    @property
    def late_fraction(self) -> float:
        """Share of arrivals sent more than ``max_lag_s`` after their due time."""
        return self.late / self.config.arrivals if self.config.arrivals else 0.0

    @property
    def invalid_reason(self) -> str:
        """Why the schedule was not kept ('' when it was)."""
        reasons = []
        if self.late_fraction > self.config.max_late_fraction and self.late > MIN_LATE_SENDS:
            reasons.append(
                f"the generator fell behind its schedule: {100 * self.late_fraction:.1f}% of "
                f"arrivals were sent more than {1000 * self.config.max_lag_s:g} ms late "
                f"(worst {self.max_lag_us / 1000:.1f} ms)"
            )
        if self.dropped:
            reasons.append(
                f"{self.dropped} arrivals were not sent: more than {self.config.max_in_flight} "
                "calls were in flight in one process"
            )
        return "; ".join(reasons)

    @property
    def valid(self) -> bool:
        """True when the offered rate was really offered."""
        return not self.invalid_reason

    def generator_json(self) -> dict[str, Any]:
        """The report's ``generator`` object."""
        return {
            "valid": self.valid,
            "reason": self.invalid_reason,
            "processes": self.config.processes,
            "connections": self.config.connections,
            "arrivals": self.config.arrivals,
            "late_sends": self.late,
            "late_fraction": round(self.late_fraction, 5),
            "max_lag_allowed_ms": 1000 * self.config.max_lag_s,
            "lag_p99_ms": round(self.lag_p99_us / 1000, 3),
            "max_lag_ms": round(self.max_lag_us / 1000, 3),
            "dropped": self.dropped,
            "cpu_s": round(self.cpu_s, 3),
        }


def default_processes(rate: float, cpus: int) -> int:
    """Processes for ``rate``: one per 800 arrivals/s, at most one per CPU."""
    return max(1, min(cpus, math.ceil(rate / 800)))


# ---------------------------------------------------------------------------------------- a process


def _channel_options() -> list[tuple[str, Any]]:
    return [
        ("grpc.use_local_subchannel_pool", 1),  # each channel its own connection
        ("grpc.enable_retries", 0),
    ]


async def _drive(config: GeneratorConfig, part: int, conn: Connection) -> dict[str, Any]:
    import grpc
    import grpc.aio
    from hdrh.histogram import HdrHistogram

    from taskqueue_proto import taskqueue_pb2_grpc

    per_process = max(1, config.connections // config.processes)
    channels = [
        grpc.aio.insecure_channel(config.target, options=_channel_options()) for _ in range(per_process)
    ]
    try:
        await asyncio.wait_for(
            asyncio.gather(*(channel.channel_ready() for channel in channels)), _READY_TIMEOUT_S
        )
        stubs: list[taskqueue_pb2_grpc.TaskQueueAsyncStub] = [
            taskqueue_pb2_grpc.TaskQueueStub(channel) for channel in channels
        ]
        conn.send(("ready", part))
        message = await asyncio.to_thread(conn.recv)
        start_ns: int = message[1]
        period_ns = 1e9 / config.rate
        start_mono = time.perf_counter_ns() + (start_ns - time.time_ns())
        cpu_start = time.process_time()
        records: list[SubmitRecord] = []
        running: set[asyncio.Task[None]] = set()
        lags = HdrHistogram(1, 3_600_000_000, 2)
        max_lag_ns = int(config.max_lag_s * 1e9)
        late = dropped = fired = 0
        timeout = config.rpc_timeout_s
        workload = config.workload

        async def send(index: int, copy: int, due: int, stub: taskqueue_pb2_grpc.TaskQueueAsyncStub) -> None:
            request = workload.request(index)
            sent_ns = time.time_ns()
            task_id, created, status, code, detail = "", False, 0, "OK", ""
            try:
                answer = await stub.SubmitTask(request, timeout=timeout)
                task_id, created, status = answer.task_id, answer.created, answer.status
            except grpc.aio.AioRpcError as error:
                code, detail = error.code().name, (error.details() or "")[:200]
            latency_us = (time.perf_counter_ns() - due) // 1000
            records.append(
                SubmitRecord(
                    index, copy, sent_ns, time.time_ns(), latency_us, code, task_id, created, status, detail
                )
            )

        for local, index in enumerate(range(part, config.arrivals, config.processes)):
            due = start_mono + int(index * period_ns)
            now = time.perf_counter_ns()
            if due - now > _SLEEP_THRESHOLD_NS:
                await asyncio.sleep((due - now) / 1e9)  # the schedule itself, not synchronisation
                now = time.perf_counter_ns()
            elif fired % _YIELD_EVERY == 0:
                await asyncio.sleep(0)  # behind schedule: let answers in now and then
                now = time.perf_counter_ns()
            fired += 1
            lag = max(0, now - due)
            lags.record_value(max(1, min(lag // 1000, 3_600_000_000)))
            if lag > max_lag_ns:
                late += 1
            if len(running) >= config.max_in_flight:
                dropped += 1
                continue
            absolute = config.first_index + index
            for copy in range(workload.copies(absolute)):
                task = asyncio.create_task(send(absolute, copy, due, stubs[(local + copy) % len(stubs)]))
                running.add(task)
                task.add_done_callback(running.discard)
        if running:
            await asyncio.wait(set(running), timeout=timeout + 5.0)
        for task in running:
            task.cancel()
        return {
            "cpu_s": time.process_time() - cpu_start,
            "records": records,
            "late": late,
            "dropped": dropped,
            "max_lag_us": int(lags.get_max_value()) if fired else 0,
            "lag_p99_us": int(lags.get_value_at_percentile(99)) if fired else 0,
        }
    finally:
        for channel in channels:
            await channel.close()


def _process_main(config: GeneratorConfig, part: int, conn: Connection) -> None:
    """Entry point of one generator process: run its share, send the result back."""
    try:
        result = asyncio.run(_drive(config, part, conn))
        conn.send(("done", result))
    except BaseException as error:  # report anything to the parent, which raises GeneratorError
        with contextlib.suppress(OSError):
            conn.send(("error", f"{type(error).__name__}: {error}"))
    finally:
        conn.close()


# ------------------------------------------------------------------------------------------ parent


def _receive(conn: Connection, deadline: float, what: str, part: int) -> tuple[str, Any]:
    remaining = deadline - time.monotonic()
    if remaining <= 0 or not conn.poll(remaining):
        raise GeneratorError(f"generator process {part} did not {what} in time")
    try:
        message: tuple[str, Any] = conn.recv()
    except EOFError:
        raise GeneratorError(f"generator process {part} exited before it could {what}") from None
    if message[0] == "error":
        raise GeneratorError(f"generator process {part} failed: {message[1]}")
    return message


def run_generator(config: GeneratorConfig, progress: Callable[[str], None] | None = None) -> GeneratorResult:
    """Run the schedule in ``config.processes`` spawned processes; every process is stopped on exit."""
    context = multiprocessing.get_context("spawn")
    processes: list[Any] = []
    pipes: list[Connection] = []
    try:
        for part in range(config.processes):
            parent_end, child_end = context.Pipe()
            process = context.Process(
                target=_process_main,
                args=(config, part, child_end),
                name=f"taskqueue-load-{part}",
                daemon=True,
            )
            process.start()
            child_end.close()
            processes.append(process)
            pipes.append(parent_end)
        ready_by = time.monotonic() + _READY_TIMEOUT_S + 30.0
        for part, conn in enumerate(pipes):
            _receive(conn, ready_by, f"connect to {config.target}", part)
        start_ns = time.time_ns() + _START_MARGIN_NS
        for conn in pipes:
            conn.send(("start", start_ns))
        if progress is not None:
            progress(
                f"load: {config.rate:g} tasks/s for {config.duration_s:g} s "
                f"({config.processes} processes, {config.connections} connections)"
            )
        result = GeneratorResult(config, start_ns)
        done_by = time.monotonic() + config.duration_s + config.rpc_timeout_s + 60.0
        for part, conn in enumerate(pipes):
            _, data = _receive(conn, done_by, "finish its schedule", part)
            result.submits.extend(data["records"])
            result.late += data["late"]
            result.dropped += data["dropped"]
            result.max_lag_us = max(result.max_lag_us, data["max_lag_us"])
            result.lag_p99_us = max(result.lag_p99_us, data["lag_p99_us"])
            result.cpu_s += data["cpu_s"]
        return result
    finally:
        for conn in pipes:
            conn.close()
        for process in processes:
            process.join(5.0)
            if process.is_alive():
                process.terminate()
                process.join(5.0)
            if process.is_alive():
                process.kill()
                process.join()
