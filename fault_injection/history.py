"""Record what a client did and saw, then check it against the contract.

``Recorder`` collects operations (invoke, then ok / fail / unknown), fault and crash windows and,
at the end, each task's final snapshot and event history into a ``History``; ``History`` saves to
and loads from JSON; ``check(history)`` returns the ``Anomaly`` list (empty when the run kept every
rule in ``RULES``); ``liveness(history)`` gives the run's liveness figures (``Liveness``);
``render_timeline(history, anomalies)`` the self-contained HTML page of the run.
"""

from fault_injection._checker import RULES, Anomaly, check
from fault_injection._history import (
    DEFAULT_MAX_ATTEMPTS,
    DETAIL_KEPT,
    FORMAT,
    INDETERMINATE_CODES,
    PROCESS_FAULT_KINDS,
    Event,
    History,
    Operation,
    Outcome,
    Recorder,
    TaskSnapshot,
    Window,
    compact_events,
    compact_task,
    event_from_proto,
    fingerprint,
    read_events,
    read_task,
    snapshot_from_proto,
)
from fault_injection._liveness import DEFAULT_MIN_ACK_FRACTION, Liveness, liveness
from fault_injection._timeline import render_timeline

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_MIN_ACK_FRACTION",
    "DETAIL_KEPT",
    "FORMAT",
    "INDETERMINATE_CODES",
    "PROCESS_FAULT_KINDS",
    "RULES",
    "Anomaly",
    "Event",
    "History",
    "Liveness",
    "Operation",
    "Outcome",
    "Recorder",
    "TaskSnapshot",
    "Window",
    "check",
    "compact_events",
    "compact_task",
    "event_from_proto",
    "fingerprint",
    "liveness",
    "read_events",
    "read_task",
    "render_timeline",
    "snapshot_from_proto",
]
