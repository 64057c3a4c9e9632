"""The committed stubs in taskqueue_proto/ match proto/taskqueue/v1/taskqueue.proto."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_committed_stubs_match_the_proto(tmp_path: Path) -> None:
    generate = runpy.run_path(str(ROOT / "proto" / "generate.py"))["generate"]
    generate(tmp_path)
    stale = [
        name
        for name in sorted(p.name for p in tmp_path.iterdir())
        if (tmp_path / name).read_text() != (ROOT / "taskqueue_proto" / name).read_text()
    ]
    if stale:
        pytest.fail(f"stale generated stubs {stale}: run `python proto/generate.py` and commit")


def test_service_name_comes_from_the_descriptor() -> None:
    from taskqueue_proto import SERVICE_NAME, taskqueue_pb2

    assert SERVICE_NAME == "taskqueue.v1.TaskQueue"
    assert taskqueue_pb2.DESCRIPTOR.package == "taskqueue.v1"
