"""One load run: the open-loop schedule, then tracking, the history check and the run's summary.

``run_load`` returns a ``RunOutcome``: the JSON-ready summary (the report's ``run`` object, see
docs/load.md), the figures SLOs and ``--find-max`` judge, and the anomalies the history checker of
``fault_injection.history`` found: the same rules as a chaos run, on every acknowledged task.
"""

from __future__ import annotations

import asyncio
import collections
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fault_injection.history import INDETERMINATE_CODES, Anomaly, History, Operation, check, fingerprint
from pytest_taskqueue.load.generator import GeneratorConfig, GeneratorResult, SubmitRecord, run_generator
from pytest_taskqueue.load.recording import PERCENTILES, LatencyRecorder
from pytest_taskqueue.load.tracking import (
    RESOLUTION,
    ClockCheck,
    Collected,
    backlog_series,
    collect,
    resolve_unknown,
    terminal_event,
)
from pytest_taskqueue.load.workload import Workload
from taskqueue_proto import taskqueue_pb2

__all__ = ["RunOutcome", "RunSettings", "run_load"]

_LIVENESS_RULES = frozenset({"no_progress", "unresolved_unknown", "final_submit_failed"})
_TAIL_SLOTS = 30
"""Intervals shown after the schedule while tasks are still finishing."""


@dataclass(frozen=True)
class RunSettings:
    """What one run offers the target."""

    rate: float
    duration_s: float
    workload: Workload
    warmup_s: float = 0.0
    connections: int = 4
    processes: int = 1
    rpc_timeout_s: float = 5.0
    drain_timeout_s: float = 60.0
    first_index: int = 0
    interval_s: float = 1.0
    max_lag_s: float = 0.05

    def generator_config(self, target: str) -> GeneratorConfig:
        """The generator's part of these settings."""
        return GeneratorConfig(
            target=target,
            rate=self.rate,
            duration_s=self.duration_s,
            workload=self.workload,
            connections=max(self.connections, self.processes),
            processes=self.processes,
            rpc_timeout_s=self.rpc_timeout_s,
            first_index=self.first_index,
            max_lag_s=self.max_lag_s,
        )


@dataclass
class RunOutcome:
    """A finished run: its summary, figures, anomalies and history."""

    summary: dict[str, Any]
    figures: dict[str, float | None]
    anomalies: list[Anomaly]
    history: History
    valid: bool
    invalid_reason: str = ""
    backlog_growing: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _short_status(status: int) -> str:
    return taskqueue_pb2.TaskStatus.Name(status).removeprefix("TASK_STATUS_")  # type: ignore[arg-type]


def build_history(result: GeneratorResult, collected: Collected, meta: dict[str, Any]) -> History:
    """The chaos checker's ``History`` of a load run: every submit, every task's final state."""
    workload = result.config.workload
    requests: dict[int, taskqueue_pb2.SubmitTaskRequest] = {}
    operations: list[Operation] = []
    for record in sorted(result.submits, key=lambda r: r.sent_ns):
        request = requests.get(record.arrival)
        if request is None:
            request = requests[record.arrival] = workload.request(record.arrival)
        ok = record.code == "OK"
        operations.append(
            Operation(
                id=len(operations),
                kind="submit",
                invoke_ns=record.sent_ns,
                idempotency_key=request.idempotency_key,
                fingerprint=fingerprint(request.task_type, request.payload, request.max_attempts),
                task_id=record.task_id or None,
                outcome="ok" if ok else ("unknown" if record.code in INDETERMINATE_CODES else "fail"),
                value=(
                    {
                        "task_id": record.task_id,
                        "created": record.created,
                        "status": _short_status(record.status),
                    }
                    if ok
                    else None
                ),
                code=None if ok else record.code,
                detail=record.detail,
                complete_ns=record.done_ns,
            )
        )
    return History(
        operations=operations, tasks=dict(collected.tasks), events=dict(collected.events), meta=meta
    )


def _slot(ns: int, start_ns: int, width_ns: int) -> int:
    return (ns - start_ns) // width_ns


def summarise(
    result: GeneratorResult, collected: Collected, settings: RunSettings
) -> tuple[dict[str, Any], dict[str, float | None], bool]:
    """The report's ``run`` object, the figures SLOs judge, and whether the backlog grew."""
    start = result.start_ns
    width = int(settings.interval_s * 1e9)
    warmup_end = start + int(settings.warmup_s * 1e9)
    window_s = max(settings.duration_s - settings.warmup_s, 1e-9)
    slots = math.ceil(settings.duration_s / settings.interval_s)

    submit = LatencyRecorder(settings.interval_s)
    # Submits made after the schedule to resolve unknown outcomes count toward the tasks, not the figures.
    codes: collections.Counter[str] = collections.Counter()
    first_answer: dict[str, SubmitRecord] = {}
    measured = measured_ok = 0
    sent = collections.Counter[int]()
    answered_ok = collections.Counter[int]()
    errors = collections.Counter[int]()
    resolving = collections.Counter[str]()
    for record in result.submits:
        if record.code == "OK":
            first = first_answer.get(record.task_id)
            if first is None or first.done_ns > record.done_ns:
                first_answer[record.task_id] = record
        if record.copy == RESOLUTION:
            resolving[record.code] += 1
            continue
        intended = result.intended_ns(record.arrival)
        in_window = intended >= warmup_end
        submit.record(record.latency_us, (intended - start) / 1e9, overall=in_window)
        if record.copy == 0:
            sent[_slot(record.sent_ns, start, width)] += 1
        if record.code == "OK":
            if record.copy == 0:
                answered_ok[_slot(record.done_ns, start, width)] += 1
        else:
            errors[_slot(record.done_ns, start, width)] += 1
        if in_window:
            measured += 1
            if record.code == "OK":
                measured_ok += record.copy == 0
            else:
                codes[record.code] += 1

    e2e = LatencyRecorder(settings.interval_s)
    clock = ClockCheck()
    completed = collections.Counter[int]()
    spans: dict[str, tuple[int, int | None]] = {}
    by_status: collections.Counter[str] = collections.Counter()
    for task_id, record in first_answer.items():
        intended = result.intended_ns(record.arrival)
        snapshot = collected.tasks.get(task_id)
        by_status[
            snapshot.status
            if snapshot is not None
            else ("NOT_FOUND" if task_id in collected.tasks else "NOT_COLLECTED")
        ] += 1
        events = collected.events.get(task_id, [])
        end = terminal_event(events)
        spans[task_id] = (intended, end.at_ns if end is not None else None)
        if events and events[0].type == "SUBMITTED" and record.created:
            clock.add(events[0].at_ns, record.sent_ns, record.done_ns)
        if end is not None:
            e2e.record(
                (end.at_ns - intended) // 1000, (intended - start) / 1e9, overall=intended >= warmup_end
            )
            completed[_slot(end.at_ns, start, width)] += 1

    last_end = max((end for _, end in spans.values() if end is not None), default=start)
    tail = min(_TAIL_SLOTS, max(0, math.ceil((last_end - start) / width) - slots))
    shown = slots + tail
    backlog = backlog_series(spans, start, shown, settings.interval_s)
    growing = _growing(backlog[:slots], settings)
    submit_summary, e2e_summary = submit.summary(), e2e.summary()
    error_fraction = sum(codes.values()) / measured if measured else 0.0
    achieved = measured_ok / window_s
    arrivals_per_slot = settings.rate * settings.interval_s
    summary = {
        "offered_rate": settings.rate,
        "achieved_rate": round(achieved, 2),
        "window_s": round(window_s, 3),
        "submits": {
            "sent": sum(1 for r in result.submits if r.copy != RESOLUTION),
            "measured": measured,
            "ok": sum(1 for r in result.submits if r.code == "OK"),
            "errors_by_code": dict(sorted(codes.items())),
            "error_fraction": round(error_fraction, 6),
            "resolving": dict(sorted(resolving.items())),
        },
        "tasks": {
            "acknowledged": len(first_answer),
            "by_status": dict(sorted(by_status.items())),
            "undrained": len(collected.undrained),
        },
        "generator": result.generator_json(),
        "latency_ms": {"submit": submit_summary, "e2e": e2e_summary},
        "hdr": {"submit": submit.encoded(), "e2e": e2e.encoded()},
        "clock_check": clock.to_json(),
        "backlog": {
            "max": max(backlog, default=0),
            "at_end": backlog[slots - 1] if backlog and slots else 0,
            "growing": growing,
        },
        "tracking": {
            "reads": collected.reads,
            "reads_per_task": round(collected.reads / len(first_answer), 2) if first_answer else 0.0,
            "during_window": 0,
            "seconds": round(collected.seconds, 2),
        },
        "series": {
            "interval_s": settings.interval_s,
            "warmup_slots": math.ceil(settings.warmup_s / settings.interval_s),
            "schedule_slots": slots,
            "t": [round((i + 1) * settings.interval_s, 3) for i in range(shown)],
            "offered": [arrivals_per_slot / settings.interval_s if i < slots else 0 for i in range(shown)],
            "sent": [sent[i] / settings.interval_s for i in range(shown)],
            "achieved": [answered_ok[i] / settings.interval_s for i in range(shown)],
            "completed": [completed[i] / settings.interval_s for i in range(shown)],
            "errors": [errors[i] / settings.interval_s for i in range(shown)],
            "backlog": backlog,
            "submit_ms": submit.series(shown),
            "e2e_ms": e2e.series(shown),
        },
        "distribution_ms": {"submit": submit.distribution(), "e2e": e2e.distribution()},
    }
    figures: dict[str, float | None] = {
        "offered_rate": settings.rate,
        "achieved_rate": achieved,
        "errors": error_fraction,
    }
    for name, recorder in (("submit", submit), ("e2e", e2e)):
        for p in PERCENTILES:
            figures[f"{name}_p{p:g}"] = recorder.percentile_ms(p)
        figures[f"{name}_max"] = recorder.percentile_ms(100)
        figures[f"{name}_mean"] = recorder.summary()["mean"]
    return summary, figures, growing


def _growing(backlog: list[int], settings: RunSettings) -> bool:
    """Backlog growing without bound over the measured window.

    The mean of the window's last quarter exceeds that of its second quarter by more than a
    quarter of a second of arrivals (and 5 tasks): a steady state keeps it flat.
    """
    skip = math.ceil(settings.warmup_s / settings.interval_s)
    window = backlog[skip:]
    if len(window) < 4:
        return False
    quarter = len(window) // 4
    second = window[quarter : 2 * quarter]
    last = window[-quarter:]
    growth = sum(last) / len(last) - sum(second) / len(second)
    return growth > max(5.0, 0.25 * settings.rate)


def _unresolved_arrivals(submits: list[SubmitRecord]) -> list[int]:
    """Arrivals whose every submit ended with an unknown outcome (no answer, no definite error)."""
    unknown: set[int] = set()
    decided: set[int] = set()
    for record in submits:
        (unknown if record.code in INDETERMINATE_CODES else decided).add(record.arrival)
    return sorted(unknown - decided)


def run_load(
    target: str, settings: RunSettings, progress: Callable[[str], None], meta: dict[str, Any] | None = None
) -> RunOutcome:
    """Run the schedule against ``target``, then track, check and summarise it."""
    result = run_generator(settings.generator_config(target), progress)
    progress(f"load: schedule done, {len(result.submits)} submits")
    unknown = _unresolved_arrivals(result.submits)
    if unknown:
        progress(f"load: resolving {len(unknown)} submits whose outcome is unknown (same key, same request)")
        workload = settings.workload
        result.submits.extend(
            asyncio.run(
                resolve_unknown(
                    target,
                    {arrival: workload.request(arrival) for arrival in unknown},
                    deadline_s=settings.drain_timeout_s,
                    rpc_timeout_s=settings.rpc_timeout_s,
                )
            )
        )
    acknowledged = list(dict.fromkeys(r.task_id for r in result.submits if r.code == "OK" and r.task_id))
    progress(f"load: {len(acknowledged)} tasks acknowledged; reading their outcome")
    collected = asyncio.run(
        collect(
            target,
            acknowledged,
            drain_timeout_s=settings.drain_timeout_s,
            rpc_timeout_s=settings.rpc_timeout_s,
            progress=progress,
        )
    )
    history = build_history(
        result,
        collected,
        {"target": target, "rate": settings.rate, "seed": settings.workload.seed, **(meta or {})},
    )
    # Liveness is judged by the load figures (errors, achieved rate, --slo, --find-max), not as anomalies:
    # a submit whose outcome stayed unknown after the drain timeout counts as an error there.
    anomalies = [a for a in check(history, min_ack_fraction=0.0) if a.rule not in _LIVENESS_RULES]
    summary, figures, growing = summarise(result, collected, settings)
    summary["submits"]["unresolved"] = len(_unresolved_arrivals(result.submits))
    return RunOutcome(
        summary=summary,
        figures=figures,
        anomalies=anomalies,
        history=history,
        valid=result.valid,
        invalid_reason=result.invalid_reason,
        backlog_growing=growing,
    )
