"""The recorder: proto messages in, plain data out, and a JSON round trip that loses nothing."""

from __future__ import annotations

import pathlib
import threading

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from fault_injection.history import (
    FORMAT,
    History,
    Recorder,
    TaskSnapshot,
    check,
    compact_task,
    fingerprint,
    read_task,
)
from taskqueue_proto import taskqueue_pb2 as pb


def _ts(ns: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(ns)
    return stamp


def _recorded_run() -> Recorder:
    rec = Recorder(meta={"seed": 7, "target": "127.0.0.1:1"})
    request = pb.SubmitTaskRequest(
        idempotency_key="k1", task_type="echo", payload=b"\xffbin\x00", max_attempts=0
    )
    lost = rec.invoke_submit(request)
    rec.unknown(lost, "DEADLINE_EXCEEDED", "deadline passed")
    retry = rec.invoke_submit(request, resolves=lost)
    rec.ok_submit(retry, pb.SubmitTaskResponse(task_id="t1", status=pb.TASK_STATUS_PENDING, created=False))
    bad = rec.invoke("submit", idempotency_key="")
    rec.fail(bad, "INVALID_ARGUMENT", "idempotency_key is empty")
    rec.invoke("get", task_id="t1")  # left in flight
    t0 = 1_750_000_000_123_456_789
    rec.record_task(
        pb.Task(
            task_id="t1",
            idempotency_key="k1",
            task_type="echo",
            payload=b"\xffbin\x00",
            status=pb.TASK_STATUS_COMPLETED,
            attempts=1,
            max_attempts=5,
            result=b"\xffbin\x00",
            created_at=_ts(t0),
            updated_at=_ts(t0 + 3),
        )
    )
    rec.record_events(
        "t1",
        [
            pb.TaskEvent(sequence=1, type=pb.TASK_EVENT_TYPE_SUBMITTED, at=_ts(t0)),
            pb.TaskEvent(sequence=2, type=pb.TASK_EVENT_TYPE_PROCESSING, attempt=1, at=_ts(t0 + 1)),
            pb.TaskEvent(
                sequence=3, type=pb.TASK_EVENT_TYPE_COMPLETED, attempt=1, at=_ts(t0 + 3), detail="ok"
            ),
        ],
    )
    rec.record_missing("t-gone")
    crash = rec.window_start("kill", "worker", "SIGKILL, then started again")
    rec.window_end(crash)
    rec.window_recovered(crash)
    read = rec.invoke("get", task_id="t1", client=3)
    rec.ok(read, {"task": compact_task(pb.Task(task_id="t1", status=pb.TASK_STATUS_PENDING, max_attempts=5))})
    return rec


def test_recorder_converts_proto_messages() -> None:
    history = _recorded_run().history()

    retry = history.operations[1]
    assert retry.kind == "submit" and retry.outcome == "ok" and retry.resolves == 0
    assert retry.value == {"task_id": "t1", "created": False, "status": "PENDING"}
    assert retry.fingerprint == fingerprint("echo", b"\xffbin\x00", 5)
    assert history.operations[0].code == "DEADLINE_EXCEEDED"
    assert history.operations[3].outcome is None
    snap = history.tasks["t1"]
    assert isinstance(snap, TaskSnapshot)
    assert (snap.status, snap.created_at_ns) == ("COMPLETED", 1_750_000_000_123_456_789)
    assert [(e.type, e.attempt) for e in history.events["t1"]] == [
        ("SUBMITTED", 0),
        ("PROCESSING", 1),
        ("COMPLETED", 1),
    ]
    assert history.tasks["t-gone"] is None


def test_windows_and_reads_are_recorded() -> None:
    history = _recorded_run().history()
    (window,) = history.windows
    assert (window.kind, window.target, window.process) == ("kill", "worker", True)
    assert window.end_ns is not None and window.recovered_ns is not None
    assert history.active_windows(window.start_ns, window.start_ns) == [window]
    read = history.operations[-1]
    assert read.client == 3 and read.value is not None
    snap = read_task("t1", read.value["task"])
    assert (snap.status, snap.attempts, snap.created_at_ns) == (pb.TASK_STATUS_PENDING, 0, None)


def test_json_round_trip_is_lossless(tmp_path: pathlib.Path) -> None:
    history = _recorded_run().history()

    again = History.loads(history.dumps())
    assert again == history
    assert check(again) == check(history)

    path = tmp_path / "history.json"
    history.save(path)
    assert History.load(path) == history
    assert '"format": "' + FORMAT + '"' in path.read_text()


def test_loading_rejects_other_documents() -> None:
    with pytest.raises(ValueError, match="format"):
        History.loads('{"operations": []}')


def test_an_operation_completes_once() -> None:
    rec = Recorder()
    op = rec.invoke("get", task_id="t")
    rec.fail(op, "NOT_FOUND")
    with pytest.raises(ValueError, match="already completed"):
        rec.ok(op)


def test_recorder_is_thread_safe_and_lists_acknowledged_tasks() -> None:
    rec = Recorder()

    def submit_many(worker: int) -> None:
        for i in range(200):
            op = rec.invoke("submit", idempotency_key=f"{worker}-{i}")
            rec.ok(op, {"task_id": f"t{worker}-{i}", "created": True}, task_id=f"t{worker}-{i}")

    threads = [threading.Thread(target=submit_many, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    history = rec.history()
    assert rec.operation_count == 800
    assert [op.id for op in history.operations] == list(range(800))
    assert len(rec.acknowledged_task_ids()) == 800
