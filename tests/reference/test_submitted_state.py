"""Unit tests of the submitted state a task's message carries (``reference_server.store``, ``queue``).

The worker claims a first delivery's task on this guess; the integration tests and the scenarios run
the whole path against moto and ElasticMQ.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from reference_server.queue import _submitted_of, message_body
from reference_server.store import (
    SUBMITTED_STATE_PAYLOAD_BYTES,
    Status,
    TaskRecord,
    from_submitted_state,
    submitted_state,
)


def pending(payload: bytes = b"\x00hi\xff") -> TaskRecord:
    return TaskRecord(
        task_id="t1",
        idempotency_key="key-\u00e9",
        task_type="echo",
        payload=payload,
        status=Status.PENDING,
        attempts=0,
        max_attempts=3,
        seq=1,
        created_at_us=1_700_000_000_123_456,
        updated_at_us=1_700_000_000_123_456,
    )


def test_the_submitted_state_survives_the_message_body() -> None:
    task = pending()
    body = message_body(task.task_id, submitted_state(task))
    assert json.loads(body)["task_id"] == "t1"  # spec 10.2: a JSON object with its task_id
    assert from_submitted_state("t1", _submitted_of(body)) == task


def test_no_state_for_a_large_payload_or_a_task_past_its_submission() -> None:
    assert submitted_state(pending(b"x" * (SUBMITTED_STATE_PAYLOAD_BYTES + 1))) is None
    assert submitted_state(replace(pending(), status=Status.RETRYING, seq=3, attempts=1)) is None
    assert json.loads(message_body("t1")) == {"task_id": "t1"}


@pytest.mark.parametrize(
    "state",
    [
        None,
        "text",
        {},
        {"idempotency_key": "k", "task_type": "echo", "payload": "!!", "max_attempts": 3, "created_at_us": 1},
        {"idempotency_key": "k", "task_type": "echo", "payload": "", "max_attempts": "3", "created_at_us": 1},
        {"idempotency_key": 1, "task_type": "echo", "payload": "", "max_attempts": 3, "created_at_us": 1},
        {
            "idempotency_key": "k",
            "task_type": "echo",
            "payload": "",
            "max_attempts": True,
            "created_at_us": 1,
        },
    ],
)
def test_a_malformed_state_is_no_guess(state: object) -> None:
    assert from_submitted_state("t1", state) is None
