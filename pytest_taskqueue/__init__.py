"""pytest-taskqueue: conformance toolkit for distributed task-queue services.

The public surface of the plugin, for scenarios and for users who write their own:

- ``TestHarness``: what the ``harness`` fixture gives a test (client, keys, waits, backends).
- ``TaskQueueClient``: the typed grpc.aio client of taskqueue.v1 (``harness.api``).
- ``WaitTimeout``: raised by ``harness.wait_for_status``; its message has the task's history.
- ``TERMINAL_STATUSES``: COMPLETED and DEAD.
- ``MAX_PAYLOAD_LIMIT``: the largest ``max_payload_bytes`` the spec allows (4 MiB, 8.3).
- ``pb``: the generated messages, ``taskqueue_proto.taskqueue_pb2``.

The plugin itself is ``pytest_taskqueue.plugin``; its fixtures and options are in docs/plugin.md.
"""

from pytest_taskqueue._client import MAX_PAYLOAD_LIMIT, TERMINAL_STATUSES, TaskQueueClient
from pytest_taskqueue._harness import HarnessNotOwnedError, TestHarness, WaitTimeout
from taskqueue_proto import taskqueue_pb2 as pb

__all__ = [
    "MAX_PAYLOAD_LIMIT",
    "TERMINAL_STATUSES",
    "HarnessNotOwnedError",
    "TaskQueueClient",
    "TestHarness",
    "WaitTimeout",
    "pb",
]
