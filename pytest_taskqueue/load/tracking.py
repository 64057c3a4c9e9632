"""End-to-end tracking: every acknowledged task's final state and history, read after the schedule.

The measured window carries no tracking calls at all. Once the generator's schedule is over,
``collect`` reads each acknowledged task (a few calls at a time): GetTask until it is terminal
(rounds with a growing pause, until ``drain_timeout_s``), then ListTaskEvents once. That is two
reads per task, plus one GetTask per task per round while it is not terminal yet.

The end-to-end latency of a task is its terminal event's ``at`` (the server's own timestamp) minus
the arrival's intended send time (the client's clock). The two clocks are compared on every task:
the SUBMITTED event's ``at`` must fall inside the client's send..answer window of the submit that
created it, within ``CLOCK_TOLERANCE_MS``; ``ClockCheck`` counts the tasks outside it.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import grpc
import grpc.aio

from fault_injection.history import (
    INDETERMINATE_CODES,
    Event,
    TaskSnapshot,
    event_from_proto,
    snapshot_from_proto,
)
from pytest_taskqueue.load.generator import SubmitRecord
from taskqueue_proto import taskqueue_pb2, taskqueue_pb2_grpc

__all__ = [
    "CLOCK_TOLERANCE_MS",
    "RESOLUTION",
    "ClockCheck",
    "Collected",
    "backlog_series",
    "collect",
    "resolve_unknown",
    "terminal_event",
]

CLOCK_TOLERANCE_MS: Final = 10.0
_TERMINAL_STATUSES: Final = (taskqueue_pb2.TASK_STATUS_COMPLETED, taskqueue_pb2.TASK_STATUS_DEAD)
_TERMINAL_EVENTS: Final = ("COMPLETED", "DEAD")
_RETRY_CODES: Final = INDETERMINATE_CODES
_FINAL_TRIES: Final = 3
RESOLUTION: Final = -1
"""The ``copy`` of a submit made after the schedule to resolve an unknown outcome (not in the figures)."""


@dataclass
class Collected:
    """What the reads found: snapshots (None: NOT_FOUND), event histories, and what it cost."""

    tasks: dict[str, TaskSnapshot | None] = field(default_factory=dict)
    events: dict[str, list[Event]] = field(default_factory=dict)
    reads: int = 0
    undrained: list[str] = field(default_factory=list)
    seconds: float = 0.0


async def _read_one(
    stub: taskqueue_pb2_grpc.TaskQueueAsyncStub,
    task_id: str,
    out: Collected,
    final: bool,
    rpc_timeout_s: float,
) -> bool:
    """Read one task; True when it needs no more reads (terminal, gone, or ``final``).

    In the ``final`` round a read that fails with an indeterminate code is tried again (three times
    in all), so a busy target leaves as few tasks uncollected as it can."""
    tries = _FINAL_TRIES if final else 1
    for attempt in range(tries):
        try:
            out.reads += 1
            task = await stub.GetTask(taskqueue_pb2.GetTaskRequest(task_id=task_id), timeout=rpc_timeout_s)
            break
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                out.tasks[task_id] = None
                return True
            if error.code().name not in _RETRY_CODES or attempt + 1 == tries:
                return final
    else:  # pragma: no cover - the loop always breaks or returns
        return final
    if task.status not in _TERMINAL_STATUSES and not final:
        return False
    try:
        out.reads += 1
        answer = await stub.ListTaskEvents(
            taskqueue_pb2.ListTaskEventsRequest(task_id=task_id), timeout=rpc_timeout_s
        )
    except grpc.aio.AioRpcError:
        return final
    out.tasks[task_id] = snapshot_from_proto(task)
    out.events[task_id] = [event_from_proto(ev) for ev in answer.events]
    return True


async def collect(
    target: str,
    task_ids: Iterable[str],
    *,
    drain_timeout_s: float = 60.0,
    concurrency: int = 16,
    rpc_timeout_s: float = 5.0,
    progress: Callable[[str], None] | None = None,
) -> Collected:
    """Read every task until it is terminal or ``drain_timeout_s`` passes (then read it as it is)."""
    began = time.monotonic()
    deadline = began + drain_timeout_s
    pending = list(dict.fromkeys(task_ids))
    total = len(pending)
    out = Collected()
    gate = asyncio.Semaphore(concurrency)
    pause = 0.1
    async with grpc.aio.insecure_channel(target) as channel:
        stub: taskqueue_pb2_grpc.TaskQueueAsyncStub = taskqueue_pb2_grpc.TaskQueueStub(channel)
        final = False
        while pending:

            async def one(task_id: str, last: bool) -> bool:
                async with gate:
                    return await _read_one(stub, task_id, out, last, rpc_timeout_s)

            finished = await asyncio.gather(*(one(tid, final) for tid in pending))
            pending = [tid for tid, done in zip(pending, finished, strict=True) if not done]
            if not pending or final:
                break
            if progress is not None:
                progress(f"load: waiting for {len(pending)}/{total} tasks to become terminal")
            if time.monotonic() + pause >= deadline:
                final = True  # one last round reads them as they are, for the checker
                continue
            await asyncio.sleep(pause)  # between polling rounds, not synchronisation
            pause = min(pause * 2, 2.0)
    out.undrained = [
        tid for tid, snap in out.tasks.items() if snap is not None and snap.status not in _TERMINAL_EVENTS
    ]
    out.seconds = time.monotonic() - began
    return out


async def resolve_unknown(
    target: str,
    requests: Mapping[int, taskqueue_pb2.SubmitTaskRequest],
    *,
    deadline_s: float = 60.0,
    rpc_timeout_s: float = 5.0,
    concurrency: int = 16,
) -> list[SubmitRecord]:
    """Resubmit each arrival whose every submit ended with an unknown outcome (a deadline, a cut
    connection), with the same key and request, until a definite answer or ``deadline_s`` (spec 3.6:
    the key makes an indeterminate submit decidable). Returns those submits (``copy`` RESOLUTION)."""
    deadline = time.monotonic() + deadline_s
    gate = asyncio.Semaphore(concurrency)
    records: list[SubmitRecord] = []
    async with grpc.aio.insecure_channel(target) as channel:
        stub: taskqueue_pb2_grpc.TaskQueueAsyncStub = taskqueue_pb2_grpc.TaskQueueStub(channel)

        async def resolve(arrival: int, request: taskqueue_pb2.SubmitTaskRequest) -> None:
            pause = 0.05
            while True:
                async with gate:
                    if time.monotonic() >= deadline:
                        return  # left unknown: the run reports it
                    sent_ns, began = time.time_ns(), time.perf_counter_ns()
                    task_id, created, status, code, detail = "", False, 0, "OK", ""
                    try:
                        answer = await stub.SubmitTask(request, timeout=rpc_timeout_s)
                        task_id, created, status = answer.task_id, answer.created, answer.status
                    except grpc.aio.AioRpcError as failure:
                        code, detail = failure.code().name, (failure.details() or "")[:200]
                    latency_us = (time.perf_counter_ns() - began) // 1000
                    records.append(
                        SubmitRecord(
                            arrival,
                            RESOLUTION,
                            sent_ns,
                            time.time_ns(),
                            latency_us,
                            code,
                            task_id,
                            created,
                            status,
                            detail,
                        )
                    )
                if code not in _RETRY_CODES or time.monotonic() + pause >= deadline:
                    return
                await asyncio.sleep(pause)  # backing off between resubmits
                pause = min(pause * 2, 1.0)

        await asyncio.gather(*(resolve(arrival, request) for arrival, request in requests.items()))
    return records


def terminal_event(events: list[Event]) -> Event | None:
    """The first COMPLETED or DEAD event of a history."""
    return next((ev for ev in events if ev.type in _TERMINAL_EVENTS), None)


@dataclass
class ClockCheck:
    """Server event times against client times: SUBMITTED inside the submit's send..answer window."""

    checked: int = 0
    outside: int = 0
    max_offset_ms: float = 0.0
    tolerance_ms: float = CLOCK_TOLERANCE_MS

    def add(self, submitted_ns: int, sent_ns: int, done_ns: int) -> None:
        """Compare one task's SUBMITTED time with its submit's window."""
        self.checked += 1
        offset = (
            0
            if sent_ns <= submitted_ns <= done_ns
            else min(abs(submitted_ns - sent_ns), abs(submitted_ns - done_ns))
        )
        offset_ms = offset / 1e6
        self.max_offset_ms = max(self.max_offset_ms, offset_ms)
        if offset_ms > self.tolerance_ms:
            self.outside += 1

    @property
    def ok(self) -> bool:
        """True when every checked task's SUBMITTED time was inside its window (within tolerance)."""
        return self.outside == 0

    def to_json(self) -> dict[str, Any]:
        """The report's ``clock_check`` object."""
        return {
            "ok": self.ok,
            "checked": self.checked,
            "outside": self.outside,
            "max_offset_ms": round(self.max_offset_ms, 3),
            "tolerance_ms": self.tolerance_ms,
        }


def backlog_series(
    intervals: Mapping[str, tuple[int, int | None]], start_ns: int, slots: int, interval_s: float = 1.0
) -> list[int]:
    """Tasks submitted but not terminal at the end of each interval.

    ``intervals`` maps task ids to (intended send ns, terminal ns or None when never terminal).
    """
    starts = sorted(sent for sent, _ in intervals.values())
    ends = sorted(end for _, end in intervals.values() if end is not None)
    width = int(interval_s * 1e9)
    series = []
    for slot in range(slots):
        at = start_ns + (slot + 1) * width
        series.append(bisect.bisect_right(starts, at) - bisect.bisect_right(ends, at))
    return series
