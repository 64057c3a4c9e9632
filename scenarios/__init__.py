"""Conformance scenarios for taskqueue.v1 (docs/spec.md), one module per area.

The plugin collects these modules as the bundled suite (``pytest --taskqueue-target=HOST:PORT``):
``lifecycle`` (and ``burst``), ``idempotency``, ``retry``, ``dlq``, ``errors``, ``watch``,
``recovery`` and ``faults`` (network faults through the harness's Toxiproxy proxies, process
restarts, the chaos run). Each scenario quotes the spec section it checks in its docstring and
carries an area marker and an obligation (``required`` or ``optional``).

The spec checks are public so that an implementation's own scenarios can reuse them: each
``*_violations`` function returns the broken rules, spec section first (empty when all hold).
"""

from scenarios._checks import (
    LEGAL_TRANSITIONS,
    TERMINAL,
    finished_task_violations,
    history_violations,
    snapshot_violations,
    terminal_task_violations,
)

__taskqueue_bundled__ = True
"""Marks this package as pytest-taskqueue's bundled suite (a user's own ``scenarios`` package is not)."""

__all__ = [
    "LEGAL_TRANSITIONS",
    "TERMINAL",
    "finished_task_violations",
    "history_violations",
    "snapshot_violations",
    "terminal_task_violations",
]
