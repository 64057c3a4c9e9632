"""Unit tests of the reference's SQS batching (``reference_server.queue``), with a stub SQS client.

The integration tests and the scenarios run the same code against ElasticMQ; these pin down how
calls are coalesced and how each caller gets its own entry's outcome.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from reference_server.backends import BackendUnavailable
from reference_server.queue import BATCH_LIMIT, Queues


class StubSqs:
    """Records batch calls; each answers after ``gate`` is set, failing the entries named in ``refuse``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[dict[str, Any]]]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.refuse: dict[str, tuple[str, bool]] = {}  # receipt handle -> (code, sender fault)
        self.error: Exception | None = None

    async def _answer(self, operation: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append((operation, entries))
        await self.gate.wait()
        if self.error is not None:
            raise self.error
        failed = [
            {
                "Id": e["Id"],
                "Code": self.refuse[e["ReceiptHandle"]][0],
                "SenderFault": self.refuse[e["ReceiptHandle"]][1],
            }
            for e in entries
            if e.get("ReceiptHandle") in self.refuse
        ]
        return {"Successful": [{"Id": e["Id"]} for e in entries if e not in failed], "Failed": failed}

    async def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        return await self._answer("send", Entries)

    async def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        return await self._answer("delete", Entries)

    async def change_message_visibility_batch(
        self, QueueUrl: str, Entries: list[dict[str, Any]]
    ) -> dict[str, Any]:
        return await self._answer("visibility", Entries)


def queues(sqs: StubSqs) -> Queues:
    found = Queues(sqs, "q", "q-dlq", visibility_timeout=1)
    found.queue_url = "http://sqs/q"
    return found


async def test_an_idle_send_goes_at_once_and_sends_during_a_call_share_the_next() -> None:
    sqs = StubSqs()
    queue = queues(sqs)
    await queue.send("t0")
    assert [len(entries) for _, entries in sqs.calls] == [1]
    sqs.gate.clear()
    first = asyncio.ensure_future(queue.send("t1"))
    await asyncio.sleep(0)  # the first call is in flight
    rest = [asyncio.ensure_future(queue.send(f"t{n}")) for n in range(2, 2 + 2 * BATCH_LIMIT + 3)]
    await asyncio.sleep(0)
    sqs.gate.set()
    await asyncio.gather(first, *rest)
    sizes = [len(entries) for _, entries in sqs.calls]
    assert sizes[:2] == [1, 1] and sorted(sizes[2:]) == [3, BATCH_LIMIT, BATCH_LIMIT]
    bodies = [entry["MessageBody"] for _, entries in sqs.calls for entry in entries]
    assert len(bodies) == len(set(bodies)) == 2 * BATCH_LIMIT + 5


async def test_each_caller_gets_its_own_entry_outcome() -> None:
    sqs = StubSqs()
    queue = queues(sqs)
    sqs.refuse = {
        "stale": ("ReceiptHandleIsInvalid", True),
        "down": ("InternalError", False),
        "bad": ("Oops", True),
    }
    sqs.gate.clear()
    blocker = asyncio.ensure_future(queue.set_visibility("first", 0))
    await asyncio.sleep(0)
    outcomes = [asyncio.ensure_future(queue.set_visibility(h, 0)) for h in ("ok", "stale", "down", "bad")]
    await asyncio.sleep(0)
    sqs.gate.set()
    assert await blocker is True
    ok, stale, down, bad = await asyncio.gather(*outcomes, return_exceptions=True)
    assert ok is True and stale is False
    assert isinstance(down, BackendUnavailable) and "InternalError" in str(down)
    assert isinstance(bad, RuntimeError) and "Oops" in str(bad)
    assert [len(entries) for _, entries in sqs.calls] == [1, 4]


async def test_a_failed_call_fails_every_entry_of_it() -> None:
    sqs = StubSqs()
    sqs.error = ConnectionResetError("reset by peer")
    queue = queues(sqs)
    answers = await asyncio.gather(queue.send("a"), queue.send("b"), return_exceptions=True)
    assert all(isinstance(answer, BackendUnavailable) for answer in answers)


async def test_a_cancelled_caller_entry_is_dropped_before_it_goes() -> None:
    sqs = StubSqs()
    queue = queues(sqs)
    sqs.gate.clear()
    blocker = asyncio.ensure_future(queue.send("first"))
    await asyncio.sleep(0)
    dropped = asyncio.ensure_future(queue.send("dropped"))
    kept = asyncio.ensure_future(queue.send("kept"))
    await asyncio.sleep(0)
    dropped.cancel()
    sqs.gate.set()
    await asyncio.gather(blocker, kept)
    sent = [entry["MessageBody"] for _, entries in sqs.calls for entry in entries]
    assert not any("dropped" in body for body in sent) and any("kept" in body for body in sent)


async def test_discarded_messages_are_deleted_together_and_drain_waits_for_them() -> None:
    sqs = StubSqs()
    queue = queues(sqs)
    for n in range(5):
        queue.discard(f"handle-{n}")
    assert sqs.calls == []  # they linger to share a call
    await queue.drain(within=5)
    assert [(operation, len(entries)) for operation, entries in sqs.calls] == [("delete", 5)]


@pytest.mark.parametrize("code", ["ReceiptHandleIsInvalid", "InternalError"])
async def test_a_discard_that_fails_is_only_logged(code: str, caplog: pytest.LogCaptureFixture) -> None:
    sqs = StubSqs()
    sqs.refuse = {"h": (code, code != "InternalError")}
    queue = queues(sqs)
    queue.discard("h")
    await queue.drain(within=5)
    warned = [r for r in caplog.records if "not deleted" in r.getMessage()]
    assert len(warned) == (0 if code == "ReceiptHandleIsInvalid" else 1)
