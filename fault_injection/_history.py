"""The recorded history of a run: client operations, final task snapshots and event histories.

A run records every client call as an ``Operation`` (invoked, then ok / fail / unknown), every
fault or crash as a ``Window`` (what, where, from when until it was healed and the target was
SERVING again), and at the end the final ``TaskSnapshot`` (GetTask) and ``Event`` list
(ListTaskEvents) of each task. What a read returned is kept in full but compactly in its
operation's ``value`` (``compact_task``/``compact_events``; ``read_task``/``read_events`` decode).
The whole ``History`` is plain data that round-trips through JSON, so a run can be saved and
checked again offline. Enum values are kept as short names (``"COMPLETED"``), bytes as base64.
"""

from __future__ import annotations

import base64
import hashlib
import json
import pathlib
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, cast

import taskqueue_contract as contract
from taskqueue_proto import taskqueue_pb2

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "DETAIL_KEPT",
    "FORMAT",
    "INDETERMINATE_CODES",
    "PROCESS_FAULT_KINDS",
    "Event",
    "History",
    "Operation",
    "Outcome",
    "Recorder",
    "TaskSnapshot",
    "Window",
    "compact_events",
    "compact_task",
    "event_from_proto",
    "fingerprint",
    "read_events",
    "read_task",
    "snapshot_from_proto",
]

FORMAT = "pytest-taskqueue-history/1"
"""Value of the ``format`` member of a saved history."""

DEFAULT_MAX_ATTEMPTS = contract.DEFAULT_MAX_ATTEMPTS
"""The effective max_attempts of a submit that says 0 (docs/spec.md 3.2)."""

INDETERMINATE_CODES = frozenset({"DEADLINE_EXCEEDED", "UNAVAILABLE", "CANCELLED", "UNKNOWN", "INTERNAL"})
"""gRPC codes after which a client cannot know whether the call took effect: record ``unknown``."""

Outcome = Literal["ok", "fail", "unknown"]


def fingerprint(task_type: str, payload: bytes, max_attempts: int) -> str:
    """The identity of a submit request for idempotency (docs/spec.md 3.3).

    Two submits are the same request when task_type, payload and *effective* max_attempts match.
    """
    effective = contract.effective_max_attempts(max_attempts)
    return f"{task_type}:{hashlib.sha256(payload).hexdigest()}:{effective}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"))


def _short(enum_name: str, prefix: str) -> str:
    return enum_name[len(prefix) :] if enum_name.startswith(prefix) else enum_name


@dataclass
class Operation:
    """One client call: what was invoked and, once known, how it ended.

    ``outcome`` is ``None`` while the call is in flight. ``value`` holds the useful part of an
    ok answer (for a submit: ``task_id``, ``created``, ``status``). ``code`` is the gRPC status
    code name of a fail/unknown outcome. ``resolves`` names the op id of an unknown submit this
    one retries with the same key. ``client`` is the workload client that made the call (None for
    the run's own calls: health probes, resolving, draining). Times are wall-clock nanoseconds.

    Reads keep what they saw: ``get`` ``{"task": compact_task(...)}``, ``list_events``
    ``{"events": compact_events(...)}``, ``watch`` ``{"snapshots": [compact_task(...), ...],
    "end": "OK" | "cancelled" | code}``.
    """

    id: int
    kind: str
    invoke_ns: int
    idempotency_key: str | None = None
    fingerprint: str | None = None
    task_id: str | None = None
    resolves: int | None = None
    outcome: Outcome | None = None
    value: dict[str, Any] | None = None
    code: str | None = None
    detail: str = ""
    complete_ns: int | None = None
    client: int | None = None


@dataclass
class Window:
    """A fault or crash: ``kind`` (``latency``, ``down``, ``kill``, ``pause``...) on ``target``.

    ``target`` is a link (``api``, ``worker_sqs``...) or a process (``server``, ``worker``).
    It began at ``start_ns``, was healed at ``end_ns`` (None: never healed in the record) and the
    target answered SERVING again at ``recovered_ns``. Wall-clock nanoseconds.
    """

    id: int
    kind: str
    target: str
    start_ns: int
    end_ns: int | None = None
    recovered_ns: int | None = None
    detail: str = ""

    @property
    def process(self) -> bool:
        """A process fault (kill, pause) rather than a network one."""
        return self.kind in PROCESS_FAULT_KINDS

    def until_ns(self) -> int | None:
        """The end of its effect: recovery when known, else healing (None: open)."""
        return self.recovered_ns or self.end_ns

    def overlaps(self, start_ns: int, end_ns: int | None) -> bool:
        """Whether the window was open at some point of ``[start_ns, end_ns]`` (None: open-ended)."""
        until = self.until_ns()
        return (until is None or until >= start_ns) and (end_ns is None or self.start_ns <= end_ns)


PROCESS_FAULT_KINDS = ("kill", "pause")
"""Window kinds that act on a process, not a link."""

DETAIL_KEPT = 120
"""Characters of an event's detail or a task's last_error kept in a read's record."""


def compact_task(task: taskqueue_pb2.Task) -> list[Any]:
    """What a read of a task saw, compactly: ``[status, attempts, max_attempts, created_at_ns,
    updated_at_ns, last_error]`` (timestamps 0 when unset, last_error shortened)."""
    return [
        _short(taskqueue_pb2.TaskStatus.Name(task.status), "TASK_STATUS_")
        if task.status in taskqueue_pb2.TaskStatus.values()
        else str(task.status),
        task.attempts,
        task.max_attempts,
        task.created_at.ToNanoseconds() if task.HasField("created_at") else 0,
        task.updated_at.ToNanoseconds() if task.HasField("updated_at") else 0,
        task.last_error[:DETAIL_KEPT],
    ]


def compact_events(events: Iterable[taskqueue_pb2.TaskEvent]) -> list[list[Any]]:
    """What a read of a history saw: ``[sequence, type, attempt, at_ns, detail]`` per event."""
    return [
        [
            ev.sequence,
            _short(taskqueue_pb2.TaskEventType.Name(ev.type), "TASK_EVENT_TYPE_")
            if ev.type in taskqueue_pb2.TaskEventType.values()
            else str(ev.type),
            ev.attempt,
            ev.at.ToNanoseconds() if ev.HasField("at") else 0,
            ev.detail[:DETAIL_KEPT],
        ]
        for ev in events
    ]


def read_task(task_id: str, compact: list[Any]) -> contract.Task:
    """Decode ``compact_task`` for the contract's rules."""
    status, attempts, max_attempts, created_ns, updated_ns, last_error = compact
    return contract.Task(
        task_id=task_id,
        status=contract.status_from_name(status),
        attempts=attempts,
        max_attempts=max_attempts,
        last_error=last_error,
        created_at_ns=created_ns or None,
        updated_at_ns=updated_ns or None,
    )


def read_events(compact: list[list[Any]]) -> list[contract.Event]:
    """Decode ``compact_events`` for the contract's rules."""
    return [
        contract.Event(seq, contract.event_type_from_name(kind), attempt, at_ns or None, detail)
        for seq, kind, attempt, at_ns, detail in compact
    ]


@dataclass(frozen=True)
class Event:
    """One TaskEvent, as ListTaskEvents returned it."""

    sequence: int
    type: str
    attempt: int
    at_ns: int
    detail: str = ""

    def to_contract(self) -> contract.Event:
        """This event as the contract's rules take it (``at_ns`` 0 means no time)."""
        return contract.Event(
            self.sequence,
            contract.event_type_from_name(self.type),
            self.attempt,
            self.at_ns or None,
            self.detail,
        )


@dataclass(frozen=True)
class TaskSnapshot:
    """The final state of one task, as GetTask returned it."""

    task_id: str
    idempotency_key: str
    task_type: str
    payload: bytes
    status: str
    attempts: int
    max_attempts: int
    result: bytes = b""
    last_error: str = ""
    created_at_ns: int = 0
    updated_at_ns: int = 0

    def to_contract(self) -> contract.Task:
        """This snapshot as the contract's rules take it (timestamps 0 mean unset)."""
        return contract.Task(
            task_id=self.task_id,
            status=contract.status_from_name(self.status),
            attempts=self.attempts,
            max_attempts=self.max_attempts,
            idempotency_key=self.idempotency_key,
            task_type=self.task_type,
            payload=self.payload,
            result=self.result,
            last_error=self.last_error,
            created_at_ns=self.created_at_ns or None,
            updated_at_ns=self.updated_at_ns or None,
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (bytes as base64)."""
        data = asdict(self)
        data["payload"] = _b64(self.payload)
        data["result"] = _b64(self.result)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TaskSnapshot:
        """Inverse of ``to_json``."""
        fields = dict(data)
        fields["payload"] = _unb64(fields["payload"])
        fields["result"] = _unb64(fields.get("result", ""))
        return cls(**fields)


def snapshot_from_proto(task: taskqueue_pb2.Task) -> TaskSnapshot:
    """Convert a ``taskqueue.v1.Task`` message."""
    return TaskSnapshot(
        task_id=task.task_id,
        idempotency_key=task.idempotency_key,
        task_type=task.task_type,
        payload=bytes(task.payload),
        status=_short(taskqueue_pb2.TaskStatus.Name(task.status), "TASK_STATUS_"),
        attempts=task.attempts,
        max_attempts=task.max_attempts,
        result=bytes(task.result),
        last_error=task.last_error,
        created_at_ns=task.created_at.ToNanoseconds(),
        updated_at_ns=task.updated_at.ToNanoseconds(),
    )


def event_from_proto(event: taskqueue_pb2.TaskEvent) -> Event:
    """Convert a ``taskqueue.v1.TaskEvent`` message."""
    return Event(
        sequence=event.sequence,
        type=_short(taskqueue_pb2.TaskEventType.Name(event.type), "TASK_EVENT_TYPE_"),
        attempt=event.attempt,
        at_ns=event.at.ToNanoseconds(),
        detail=event.detail,
    )


@dataclass
class History:
    """Everything ``check`` needs; plain data, JSON round-trippable.

    ``tasks`` maps each task id to its final snapshot, or to ``None`` when GetTask answered
    NOT_FOUND. ``events`` maps task ids to their event histories. ``meta`` is free (seed, target).
    """

    operations: list[Operation] = field(default_factory=list)
    tasks: dict[str, TaskSnapshot | None] = field(default_factory=dict)
    events: dict[str, list[Event]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    windows: list[Window] = field(default_factory=list)

    def active_windows(self, start_ns: int, end_ns: int | None) -> list[Window]:
        """The faults and crashes open at some point of ``[start_ns, end_ns]``."""
        return [window for window in self.windows if window.overlaps(start_ns, end_ns)]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict with a ``format`` marker."""
        return {
            "format": FORMAT,
            "meta": self.meta,
            "operations": [asdict(op) for op in self.operations],
            "tasks": {tid: (snap.to_json() if snap else None) for tid, snap in self.tasks.items()},
            "events": {tid: [asdict(ev) for ev in evs] for tid, evs in self.events.items()},
            "windows": [asdict(window) for window in self.windows],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> History:
        """Inverse of ``to_json``; rejects other formats."""
        if data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} document (format={data.get('format')!r})")
        return cls(
            operations=[Operation(**op) for op in data.get("operations", [])],
            tasks={
                tid: (TaskSnapshot.from_json(snap) if snap is not None else None)
                for tid, snap in data.get("tasks", {}).items()
            },
            events={tid: [Event(**ev) for ev in evs] for tid, evs in data.get("events", {}).items()},
            meta=dict(data.get("meta", {})),
            windows=[Window(**window) for window in data.get("windows", [])],
        )

    def dumps(self) -> str:
        """Serialise to a JSON string."""
        return json.dumps(self.to_json(), indent=1, sort_keys=True)

    @classmethod
    def loads(cls, text: str) -> History:
        """Parse a JSON string made by ``dumps``."""
        return cls.from_json(cast(Mapping[str, Any], json.loads(text)))

    def save(self, path: pathlib.Path) -> None:
        """Write the history as JSON to ``path``."""
        path.write_text(self.dumps(), encoding="utf-8")

    @classmethod
    def load(cls, path: pathlib.Path) -> History:
        """Read a history saved by ``save``."""
        return cls.loads(path.read_text(encoding="utf-8"))


class Recorder:
    """Thread-safe recorder of client operations and of the final task state.

    Call ``invoke`` before sending a request and exactly one of ``ok``/``fail``/``unknown`` when
    its outcome is known (an op left in flight counts as unknown). At the end, record each task's
    final snapshot (``record_task`` or ``record_missing``) and events (``record_events``).
    """

    def __init__(self, meta: Mapping[str, Any] | None = None) -> None:
        self._lock = threading.Lock()
        self._ops: list[Operation] = []
        self._tasks: dict[str, TaskSnapshot | None] = {}
        self._events: dict[str, list[Event]] = {}
        self._windows: list[Window] = []
        self.meta: dict[str, Any] = dict(meta or {})

    def invoke(
        self,
        kind: str,
        *,
        idempotency_key: str | None = None,
        fingerprint: str | None = None,
        task_id: str | None = None,
        resolves: int | None = None,
        client: int | None = None,
    ) -> int:
        """Record that a call of ``kind`` (``"submit"``, ``"get"``, ...) starts; return its op id."""
        with self._lock:
            op = Operation(
                id=len(self._ops),
                kind=kind,
                invoke_ns=time.time_ns(),
                idempotency_key=idempotency_key,
                fingerprint=fingerprint,
                task_id=task_id,
                resolves=resolves,
                client=client,
            )
            self._ops.append(op)
            return op.id

    def invoke_submit(
        self,
        request: taskqueue_pb2.SubmitTaskRequest,
        *,
        resolves: int | None = None,
        client: int | None = None,
    ) -> int:
        """``invoke`` for a SubmitTask request (key and fingerprint taken from it)."""
        return self.invoke(
            "submit",
            idempotency_key=request.idempotency_key,
            fingerprint=fingerprint(request.task_type, request.payload, request.max_attempts),
            resolves=resolves,
            client=client,
        )

    def window_start(self, kind: str, target: str, detail: str = "") -> int:
        """A fault or crash begins now; returns its window id for ``window_end``/``window_recovered``."""
        with self._lock:
            window = Window(len(self._windows), kind, target, time.time_ns(), detail=detail)
            self._windows.append(window)
            return window.id

    def window_end(self, window_id: int) -> None:
        """The fault was healed (the process restarted or resumed) now."""
        with self._lock:
            self._windows[window_id].end_ns = time.time_ns()

    def window_recovered(self, window_id: int) -> None:
        """The target answered SERVING again after the fault, now."""
        with self._lock:
            self._windows[window_id].recovered_ns = time.time_ns()

    def _complete(self, op_id: int, outcome: Outcome, **changes: Any) -> None:
        with self._lock:
            op = self._ops[op_id]
            if op.outcome is not None:
                raise ValueError(f"operation {op_id} already completed as {op.outcome}")
            op.outcome = outcome
            op.complete_ns = time.time_ns()
            for name, value in changes.items():
                setattr(op, name, value)

    def ok(self, op_id: int, value: Mapping[str, Any] | None = None, *, task_id: str | None = None) -> None:
        """The call succeeded; ``value`` is the part of the answer worth keeping."""
        changes: dict[str, Any] = {"value": dict(value) if value is not None else None}
        if task_id is not None:
            changes["task_id"] = task_id
        self._complete(op_id, "ok", **changes)

    def ok_submit(self, op_id: int, response: taskqueue_pb2.SubmitTaskResponse) -> None:
        """``ok`` for a SubmitTask answer."""
        status = _short(taskqueue_pb2.TaskStatus.Name(response.status), "TASK_STATUS_")
        self.ok(
            op_id,
            {"task_id": response.task_id, "created": response.created, "status": status},
            task_id=response.task_id,
        )

    def fail(self, op_id: int, code: str, detail: str = "") -> None:
        """The call definitely failed (e.g. INVALID_ARGUMENT, ALREADY_EXISTS, NOT_FOUND)."""
        self._complete(op_id, "fail", code=code, detail=detail)

    def unknown(self, op_id: int, code: str | None = None, detail: str = "") -> None:
        """The call's effect is unknown (deadline passed, connection lost): it may have happened."""
        self._complete(op_id, "unknown", code=code, detail=detail)

    def record_task(self, task: taskqueue_pb2.Task | TaskSnapshot) -> None:
        """Record a task's final snapshot."""
        snap = task if isinstance(task, TaskSnapshot) else snapshot_from_proto(task)
        with self._lock:
            self._tasks[snap.task_id] = snap

    def record_missing(self, task_id: str) -> None:
        """Record that GetTask answered NOT_FOUND for ``task_id`` at the end."""
        with self._lock:
            self._tasks[task_id] = None

    def record_events(self, task_id: str, events: Iterable[taskqueue_pb2.TaskEvent | Event]) -> None:
        """Record a task's event history, in the order ListTaskEvents returned it."""
        converted = [ev if isinstance(ev, Event) else event_from_proto(ev) for ev in events]
        with self._lock:
            self._events[task_id] = converted

    @property
    def operation_count(self) -> int:
        """How many operations were invoked so far."""
        with self._lock:
            return len(self._ops)

    def acknowledged_task_ids(self) -> list[str]:
        """Task ids answered by ok submits, in first-seen order (what to collect at the end)."""
        with self._lock:
            seen: dict[str, None] = {}
            for op in self._ops:
                if op.kind == "submit" and op.outcome == "ok" and op.task_id:
                    seen.setdefault(op.task_id, None)
            return list(seen)

    def history(self) -> History:
        """A copy of everything recorded so far."""
        with self._lock:
            return History(
                operations=[replace(op, value=dict(op.value) if op.value else op.value) for op in self._ops],
                tasks=dict(self._tasks),
                events={tid: list(evs) for tid, evs in self._events.items()},
                meta=dict(self.meta),
                windows=[replace(window) for window in self._windows],
            )
