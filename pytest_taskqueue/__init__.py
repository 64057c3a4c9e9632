"""pytest-taskqueue: conformance toolkit for distributed task-queue services.

The public surface of the plugin, for scenarios and for users who write their own (docs/plugin.md):

- ``TestHarness``: what the ``harness`` fixture gives a test (client, keys, waits, backends).
- ``TaskQueueClient``: the typed grpc.aio client of taskqueue.v1 (``harness.api``).
- ``WaitTimeout``: raised by ``harness.wait_for_status``; its message has the task's history.
- ``HarnessNotOwnedError``: a harness-owned part (``harness.db``...) used against a plain target.
- ``TERMINAL_STATUSES``: COMPLETED and DEAD.
- ``MAX_PAYLOAD_LIMIT``: the largest ``max_payload_bytes`` the spec allows (4 MiB, 8.3).
- ``RETRYABLE``, ``Submitted``, ``RetriesExhausted``: the retry policy of ``harness.submit``,
  ``harness.get`` and ``harness.events`` (spec 3.6: UNAVAILABLE and DEADLINE_EXCEEDED retried).
- ``TaskQueueConfig``: the parsed options (the ``taskqueue_config`` fixture).
- ``HarnessFaults``: the stack's fault proxies (``harness.faults``).
- ``ProcessControl``: kill, start, restart of an owned process (``harness.server``, ``harness.worker``).
- ``run_chaos_for_harness``: the seeded chaos run against the harness's stack, checked.
- ``pb``: the generated messages, ``taskqueue_proto.taskqueue_pb2``.

Each name is imported on first use (PEP 562), so ``import pytest_taskqueue.plugin``, which every
pytest run on a machine with the plugin installed does, loads neither grpc nor the stack code.
The plugin itself is ``pytest_taskqueue.plugin``; its fixtures and options are in docs/plugin.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_taskqueue._client import MAX_PAYLOAD_LIMIT, TERMINAL_STATUSES, TaskQueueClient
    from pytest_taskqueue._faults import HarnessFaults
    from pytest_taskqueue._harness import HarnessNotOwnedError, ProcessControl, TestHarness, WaitTimeout
    from pytest_taskqueue._harness_chaos import run_chaos_for_harness
    from pytest_taskqueue._options import TaskQueueConfig
    from pytest_taskqueue._retry import RETRYABLE, RetriesExhausted, Submitted
    from taskqueue_proto import taskqueue_pb2 as pb

__all__ = [
    "MAX_PAYLOAD_LIMIT",
    "RETRYABLE",
    "TERMINAL_STATUSES",
    "HarnessFaults",
    "HarnessNotOwnedError",
    "ProcessControl",
    "RetriesExhausted",
    "Submitted",
    "TaskQueueClient",
    "TaskQueueConfig",
    "TestHarness",
    "WaitTimeout",
    "pb",
    "run_chaos_for_harness",
]

_HOMES: dict[str, tuple[str, str | None]] = {
    "MAX_PAYLOAD_LIMIT": ("pytest_taskqueue._client", "MAX_PAYLOAD_LIMIT"),
    "TERMINAL_STATUSES": ("pytest_taskqueue._client", "TERMINAL_STATUSES"),
    "TaskQueueClient": ("pytest_taskqueue._client", "TaskQueueClient"),
    "HarnessFaults": ("pytest_taskqueue._faults", "HarnessFaults"),
    "HarnessNotOwnedError": ("pytest_taskqueue._harness", "HarnessNotOwnedError"),
    "ProcessControl": ("pytest_taskqueue._harness", "ProcessControl"),
    "TestHarness": ("pytest_taskqueue._harness", "TestHarness"),
    "WaitTimeout": ("pytest_taskqueue._harness", "WaitTimeout"),
    "run_chaos_for_harness": ("pytest_taskqueue._harness_chaos", "run_chaos_for_harness"),
    "TaskQueueConfig": ("pytest_taskqueue._options", "TaskQueueConfig"),
    "RETRYABLE": ("pytest_taskqueue._retry", "RETRYABLE"),
    "RetriesExhausted": ("pytest_taskqueue._retry", "RetriesExhausted"),
    "Submitted": ("pytest_taskqueue._retry", "Submitted"),
    "pb": ("taskqueue_proto.taskqueue_pb2", None),
}
"""Where each public name lives: (module, attribute; None for the module itself)."""


def __getattr__(name: str) -> Any:
    """Import a public name on use (PEP 562).

    Not cached here: the name always comes from the module in ``sys.modules``, so it stays the
    same object the toolkit uses even when that module is loaded again (pytester's in-process
    runs drop the modules a run imported).
    """
    try:
        module_name, attribute = _HOMES[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    return module if attribute is None else getattr(module, attribute)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
