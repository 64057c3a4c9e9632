"""Record what a client did and saw, then check it against the contract.

``Recorder`` collects operations (invoke, then ok / fail / unknown) and, at the end, each task's
final snapshot and event history into a ``History``; ``History`` saves to and loads from JSON;
``check(history)`` returns the ``Anomaly`` list (empty when the run kept every rule in ``RULES``).
"""

from fault_injection._checker import RULES, Anomaly, check
from fault_injection._history import (
    DEFAULT_MAX_ATTEMPTS,
    FORMAT,
    INDETERMINATE_CODES,
    Event,
    History,
    Operation,
    Outcome,
    Recorder,
    TaskSnapshot,
    event_from_proto,
    fingerprint,
    snapshot_from_proto,
)

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "FORMAT",
    "INDETERMINATE_CODES",
    "RULES",
    "Anomaly",
    "Event",
    "History",
    "Operation",
    "Outcome",
    "Recorder",
    "TaskSnapshot",
    "check",
    "event_from_proto",
    "fingerprint",
    "snapshot_from_proto",
]
