"""How long the harness-owned reference stack and each backend take to become ready (cache warm).

    python benchmarks/bench_stack_startup.py --runs 5 [--json]

Measures, ``--runs`` times each: ElasticMQ with and without its class-data-sharing archive, moto,
Toxiproxy, and the whole reference stack (ready = gRPC health SERVING and ``worker ready``),
plus the stack's stop, and on each started stack a restart of the reference server and of the
worker (the start until ready after a stop, as the recovery scenarios do it, and the CPU seconds
the new process used to get there). Prints min / median / max seconds per item and the machine's load average,
since the numbers only mean something on an otherwise idle machine. The goal for the whole stack
is <= 3 s on a 2-core machine once the cache is filled (a first run fills it and is not counted).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pytest_taskqueue._backends import ElasticMQ, LocalBackend, MotoServer, ToxiproxyServer  # noqa: E402
from pytest_taskqueue._stack import Stack, StackConfig, reference_stack  # noqa: E402


def time_backend(make: Callable[[Path], LocalBackend], log_dir: Path) -> float:
    backend = make(log_dir)
    began = time.monotonic()
    with backend:
        return time.monotonic() - began


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of ``pid`` so far."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def time_restarts(stack: Stack, restarts: dict[str, list[float]]) -> None:
    """Stop the reference server and worker in turn and time each start until ready (health SERVING,
    ``worker ready``), with the CPU seconds the new process spent getting there."""
    for role, process in (("server", stack.server), ("worker", stack.worker)):
        process.stop()
        began = time.monotonic()
        process.start()
        restarts.setdefault(f"reference {role} start", []).append(time.monotonic() - began)
        restarts.setdefault(f"reference {role} start CPU", []).append(cpu_seconds(process.pid))


def time_stack(
    log_dir: Path, phases: dict[str, list[float]], restarts: dict[str, list[float]] | None = None
) -> tuple[float, float]:
    stack = reference_stack(StackConfig(prefix="bench", log_dir=log_dir, progress=None))
    began = time.monotonic()
    stack.start()
    ready = time.monotonic() - began
    for name, seconds in stack.timings.items():
        phases.setdefault(name, []).append(seconds)
    if restarts is not None:
        time_restarts(stack, restarts)
    began = time.monotonic()
    stack.stop()
    return ready, time.monotonic() - began


def summary(values: list[float]) -> dict[str, float]:
    return {
        "min": round(min(values), 3),
        "median": round(statistics.median(values), 3),
        "max": round(max(values), 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="repetitions of each measurement")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--stack-only", action="store_true", help="measure only the whole stack")
    args = parser.parse_args()

    results: dict[str, list[float]] = {}
    phases: dict[str, list[float]] = {}
    restarts: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-stack-") as scratch:
        root = Path(scratch)
        # Warm-up: fills the cache (Maven, go build, the CDS archive) and the OS file cache.
        time_stack(root / "warmup", {})
        items: dict[str, Callable[[Path], LocalBackend]] = {}
        if not args.stack_only:
            items = {
                "elasticmq (CDS archive)": lambda d: ElasticMQ(log_dir=d),
                "elasticmq (no archive)": lambda d: ElasticMQ(log_dir=d, cds=False),
                "moto": lambda d: MotoServer(log_dir=d),
                "toxiproxy": lambda d: ToxiproxyServer(log_dir=d),
            }
        for run in range(args.runs):
            for name, make in items.items():
                results.setdefault(name, []).append(time_backend(make, root / f"{run}-{name[:9]}"))
            ready, stopped = time_stack(root / f"stack-{run}", phases, restarts)
            results.setdefault("stack ready", []).append(ready)
            results.setdefault("stack stop", []).append(stopped)

    report = {
        "runs": args.runs,
        "cpus": os.cpu_count(),
        "load_average": [round(load, 2) for load in os.getloadavg()],
        "seconds": {name: summary(values) for name, values in results.items()},
        "stack phases (ready after start, s)": {name: summary(v) for name, v in phases.items()},
        "reference restarts (s; CPU s)": {name: summary(v) for name, v in restarts.items()},
    }
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{args.runs} runs, {report['cpus']} CPUs, load average {report['load_average']}")
    print(f"{'item':<34}{'min':>8}{'median':>8}{'max':>8}")
    for section in ("seconds", "stack phases (ready after start, s)", "reference restarts (s; CPU s)"):
        rows = report[section]
        assert isinstance(rows, dict)
        if section != "seconds":
            print(f"-- {section}")
        for name, row in rows.items():
            print(f"{name:<34}{row['min']:>8.2f}{row['median']:>8.2f}{row['max']:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
