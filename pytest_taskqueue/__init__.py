"""pytest-taskqueue: conformance toolkit for distributed task-queue services.

The public surface of the plugin, for scenarios and for users who write their own:

- ``TestHarness``: what the ``harness`` fixture gives a test (client, keys, waits, backends).
- ``TaskQueueClient``: the typed grpc.aio client of taskqueue.v1 (``harness.api``).
- ``WaitTimeout``: raised by ``harness.wait_for_status``; its message has the task's history.
- ``TERMINAL_STATUSES``: COMPLETED and DEAD.
- ``pb``: the generated messages, ``taskqueue_proto.taskqueue_pb2``.

The plugin itself is ``pytest_taskqueue.plugin``; its fixtures and options are in docs/plugin.md.
"""

from pytest_taskqueue._client import TERMINAL_STATUSES, TaskQueueClient
from pytest_taskqueue._harness import HarnessNotOwnedError, TestHarness, WaitTimeout
from taskqueue_proto import taskqueue_pb2 as pb

__all__ = ["TERMINAL_STATUSES", "HarnessNotOwnedError", "TaskQueueClient", "TestHarness", "WaitTimeout", "pb"]
