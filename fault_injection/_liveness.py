"""Liveness of a run: did the target make progress, and did every unknown outcome get resolved?

Safety rules say nothing about a server that refuses everything. Like etcd's robustness tests
(a minimum rate for a valid result, a final write that must succeed), a run also needs:

- progress: of the operations made while no fault or crash was active (from invocation until the
  target was SERVING again after the last one), at least ``min_ack_fraction`` got a definite
  answer (OK, or a definite error such as ALREADY_EXISTS); health probes do not count;
- a final submit, made after every link was healed, that succeeds (``meta["final_submit_op"]``);
- every submit whose outcome was unknown (deadline, UNAVAILABLE, a cut connection) resolved after
  healing, by resubmitting the same request with the same key (spec 3.6): the idempotency key
  makes an indeterminate write decidable. A retry answering ``created=true`` shows the unknown
  submit had not created the task; ``created=false`` shows the task existed (made by it, or by an
  earlier submit of the key); ALREADY_EXISTS (a conflicting request) shows it changed nothing.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from fault_injection._history import History, Operation

__all__ = ["DEFAULT_MIN_ACK_FRACTION", "Liveness", "liveness"]

DEFAULT_MIN_ACK_FRACTION = 0.5
"""The fraction of fault-free operations that must get a definite answer, unless a run says otherwise."""

_MIN_SAMPLE = 10
"""Below this many fault-free operations a low fraction is not judged."""


@dataclass
class Liveness:
    """The liveness figures of a run (``to_json`` for the report) and what they mean."""

    min_ack_fraction: float
    offered: int = 0
    offered_fault_free: int = 0
    acknowledged_fault_free: int = 0
    unknown_submits: int = 0
    resolved_created_by_retry: int = 0
    resolved_existing: int = 0
    resolved_rejected: int = 0
    unresolved: list[int] | None = None
    final_submit: str = "not made"

    @property
    def fraction(self) -> float | None:
        """Acknowledged / offered while no fault was active (None: nothing offered then)."""
        if not self.offered_fault_free:
            return None
        return self.acknowledged_fault_free / self.offered_fault_free

    @property
    def progress_ok(self) -> bool:
        """Enough fault-free operations were answered (or too few were made to judge)."""
        fraction = self.fraction
        return fraction is None or self.offered_fault_free < _MIN_SAMPLE or fraction >= self.min_ack_fraction

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict, with the fraction."""
        data = asdict(self)
        data["unresolved"] = len(self.unresolved or [])
        fraction = self.fraction
        data["fraction_fault_free"] = round(fraction, 4) if fraction is not None else None
        return data


def _counted(op: Operation, final_op: int | None) -> bool:
    return not op.kind.startswith("health") and op.id != final_op


def liveness(history: History, min_ack_fraction: float | None = None) -> Liveness:
    """Measure a history's liveness (``min_ack_fraction``: default from the run's config, else 0.5)."""
    config = history.meta.get("config") or {}
    threshold = min_ack_fraction
    if threshold is None:
        threshold = float(config.get("min_ack_fraction", DEFAULT_MIN_ACK_FRACTION))
    final_op = history.meta.get("final_submit_op")
    live = Liveness(min_ack_fraction=threshold, unresolved=[])
    for op in history.operations:
        if not _counted(op, final_op):
            continue
        live.offered += 1
        if history.active_windows(op.invoke_ns, op.complete_ns):
            continue
        live.offered_fault_free += 1
        live.acknowledged_fault_free += op.outcome in ("ok", "fail")
    if isinstance(final_op, int) and 0 <= final_op < len(history.operations):
        final = history.operations[final_op]
        ended = f"{final.outcome or 'in flight'} {final.code or ''}".strip()
        live.final_submit = "ok" if final.outcome == "ok" else ended
    _resolve_unknown_submits(history, live)
    return live


def _resolve_unknown_submits(history: History, live: Liveness) -> None:
    by_request: dict[tuple[str | None, str | None], list[Operation]] = defaultdict(list)
    for op in history.operations:
        if op.kind == "submit":
            by_request[(op.idempotency_key, op.fingerprint)].append(op)
    unresolved: list[int] = []
    for op in history.operations:
        if op.kind != "submit" or op.outcome not in ("unknown", None):
            continue
        live.unknown_submits += 1
        answer = next(
            (
                later
                for later in by_request[(op.idempotency_key, op.fingerprint)]
                if later.invoke_ns >= op.invoke_ns
                and later.id != op.id
                and (later.outcome == "ok" or later.code == "ALREADY_EXISTS")
            ),
            None,
        )
        if answer is None:
            unresolved.append(op.id)
        elif answer.outcome == "fail":
            live.resolved_rejected += 1
        elif answer.value and answer.value.get("created") is True:
            live.resolved_created_by_retry += 1
        else:
            live.resolved_existing += 1
    live.unresolved = unresolved
