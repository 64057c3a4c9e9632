"""The seeded fault schedule of a chaos run: network faults on links, crashes of processes.

``fault_schedule(seed, duration_s, proxies, processes=...)`` is a pure function: the same
arguments give the same faults, one after another, all healed before the end. Network faults
(``FAULT_KINDS``) go through Toxiproxy proxies (``open_fault``); process faults, like Jepsen's kill
and pause nemeses, act on a ``ProcessControl`` the harness gives for each process it owns:
``kill`` (SIGKILL, down for the fault's duration, then started again) and ``pause`` (SIGSTOP, then
SIGCONT).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from fault_injection import faults
from fault_injection._history import PROCESS_FAULT_KINDS
from fault_injection._toxiproxy import Proxy
from fault_injection.faults import ActiveFault

__all__ = [
    "FAULT_KINDS",
    "PROCESS_FAULT_KINDS",
    "ProcessControl",
    "ScheduledFault",
    "fault_schedule",
    "open_fault",
]

FAULT_KINDS = ("latency", "bandwidth", "timeout", "reset_peer", "slicer", "limit_data", "down")
"""Every network fault kind the schedule draws from."""

_PROCESS_SHARE = 0.3
"""The share of scheduled faults that act on a process, when processes are given."""


class ProcessControl(Protocol):
    """A process the run may crash (the harness's API server or worker). Each call blocks until done."""

    def kill(self) -> object:
        """SIGKILL the process and wait until it has exited."""

    def start(self) -> object:
        """Start it again and wait until it is ready."""

    def pause(self) -> object:
        """SIGSTOP it."""

    def resume(self) -> object:
        """SIGCONT it."""


@dataclass(frozen=True)
class ScheduledFault:
    """One fault of a schedule: what, where, in which direction, when and for how long."""

    index: int
    start_s: float
    duration_s: float
    proxy: str
    """The link's proxy, or for a process fault (``process``) the process's name."""
    kind: str
    stream: faults.Direction
    params: Mapping[str, int]

    @property
    def process(self) -> bool:
        """A fault of a process (kill, pause) rather than of a link."""
        return self.kind in PROCESS_FAULT_KINDS

    def describe(self) -> str:
        """A one-line description for progress lines and reports."""
        if self.process:
            what = "SIGKILL, restart after" if self.kind == "kill" else "SIGSTOP, SIGCONT after"
            return (
                f"fault {self.index}: {self.kind} {self.proxy} ({what} {self.duration_s:.1f}s) "
                f"at {self.start_s:.1f}s"
            )
        params = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return (
            f"fault {self.index}: {self.kind}({params}) on {self.proxy}/{self.stream} "
            f"at {self.start_s:.1f}s for {self.duration_s:.1f}s"
        )


def _fault_params(rng: random.Random, kind: str) -> dict[str, int]:
    if kind == "latency":
        return {"ms": rng.randrange(50, 1500, 50), "jitter_ms": rng.randrange(0, 200, 10)}
    if kind == "bandwidth":
        return {"kbps": rng.choice((1, 4, 16, 64))}
    if kind == "timeout":
        return {"ms": rng.choice((0, 0, 500, 2000))}
    if kind == "reset_peer":
        return {"after_ms": rng.choice((0, 10, 100, 500))}
    if kind == "slicer":
        return {
            "avg_size": rng.choice((1, 8, 64)),
            "size_variation": 0,
            "delay_us": rng.choice((10, 100, 1000)),
        }
    if kind == "limit_data":
        return {"bytes": rng.choice((64, 512, 4096, 32768))}
    if kind == "down":
        return {}
    raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")


def fault_schedule(
    seed: int,
    duration_s: float,
    proxies: Sequence[str],
    *,
    kinds: Sequence[str] = FAULT_KINDS,
    gap_s: tuple[float, float] = (0.5, 2.5),
    length_s: tuple[float, float] = (0.5, 3.0),
    processes: Sequence[str] = (),
) -> list[ScheduledFault]:
    """The faults of a run, one after another, all healed before ``duration_s``.

    A pure function of its arguments: the same seed gives the same schedule. ``processes`` names
    the processes that may be killed or paused (about a third of the faults then).
    """
    if not (proxies and kinds) and not processes:
        return []
    rng = random.Random(f"fault-schedule:{seed}")
    schedule: list[ScheduledFault] = []
    at = rng.uniform(*gap_s)
    while True:
        length = round(rng.uniform(*length_s), 3)
        if at + length > duration_s:
            return schedule
        if processes and (not (proxies and kinds) or rng.random() < _PROCESS_SHARE):
            schedule.append(
                ScheduledFault(
                    index=len(schedule),
                    start_s=round(at, 3),
                    duration_s=length,
                    proxy=rng.choice(list(processes)),
                    kind=rng.choice(PROCESS_FAULT_KINDS),
                    stream="both",
                    params={},
                )
            )
            at += length + rng.uniform(*gap_s)
            continue
        kind = rng.choice(list(kinds))
        stream: faults.Direction = (
            "both" if kind == "down" else rng.choice(("upstream", "downstream", "both"))
        )
        schedule.append(
            ScheduledFault(
                index=len(schedule),
                start_s=round(at, 3),
                duration_s=length,
                proxy=rng.choice(list(proxies)),
                kind=kind,
                stream=stream,
                params=_fault_params(rng, kind),
            )
        )
        at += length + rng.uniform(*gap_s)


def open_fault(fault: ScheduledFault, proxy: Proxy) -> AbstractContextManager[ActiveFault]:
    """The named fault context for one scheduled fault."""
    p, s = fault.params, fault.stream
    if fault.kind == "latency":
        return faults.latency(proxy, p["ms"], p.get("jitter_ms", 0), stream=s)
    if fault.kind == "bandwidth":
        return faults.bandwidth(proxy, p["kbps"], stream=s)
    if fault.kind == "timeout":
        return faults.timeout(proxy, p.get("ms", 0), stream=s)
    if fault.kind == "reset_peer":
        return faults.reset_peer(proxy, p.get("after_ms", 0), stream=s)
    if fault.kind == "slicer":
        return faults.slicer(proxy, p["avg_size"], p.get("size_variation", 0), p.get("delay_us", 0), stream=s)
    if fault.kind == "limit_data":
        return faults.limit_data(proxy, p["bytes"], stream=s)
    if fault.kind == "down":
        return faults.down(proxy)
    raise ValueError(f"unknown fault kind {fault.kind!r}")
