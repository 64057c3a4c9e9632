"""Test-only helpers over the Linux process table and polling (the toolkit itself needs none of them).

``descendants`` and ``still_running`` let a test see which processes a stack left behind;
``poll_until`` waits for a condition with the toolkit's ``Backoff``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from fault_injection import Backoff
from pytest_taskqueue._procs import ProcessRecord, read_process

__all__ = ["ProcessRecord", "descendants", "list_processes", "poll_until", "still_running"]


def list_processes() -> list[ProcessRecord]:
    """Every process visible in ``/proc`` now."""
    records = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            record = read_process(int(entry))
            if record is not None:
                records.append(record)
    return records


def descendants(pid: int) -> list[ProcessRecord]:
    """The children of ``pid``, their children, and so on (by parent pid, now)."""
    by_parent: dict[int, list[ProcessRecord]] = {}
    for record in list_processes():
        by_parent.setdefault(record.ppid, []).append(record)
    found: list[ProcessRecord] = []
    frontier = [pid]
    while frontier:
        children = by_parent.get(frontier.pop(), [])
        found.extend(children)
        frontier.extend(child.pid for child in children)
    return found


def still_running(record: ProcessRecord) -> bool:
    """True if the very process of ``record`` (same pid and start time) exists and is not a zombie."""
    now = read_process(record.pid)
    return now is not None and now.start_ticks == record.start_ticks and now.state != "Z"


def poll_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Call ``predicate`` until it returns True; TimeoutError("<what> not reached after N s") if not."""
    backoff = Backoff(timeout, first=0.005, factor=1.5, cap=0.1)
    while not predicate():
        if not backoff.sleep():
            raise TimeoutError(f"{what} not reached after {timeout:.1f} s")
