"""The figures of the README's measurements table, from one run.

    python benchmarks/bench_suite.py [--rounds 1] [--dead-runs 5] [--throughput-seconds 5] [--json out.json]

Reports (and asserts nothing):

- ``stack_ready_s``: the harness-owned reference stack from nothing to ready (``reference_stack(...).start``).
- ``isolation_setup_teardown_ms``: per test, the ``harness`` fixture's setup plus teardown (pytest's
  ``--durations``; the longest setup, which starts the stack, left out), median and p95.
- ``retry_then_dead_s``: SubmitTask(fail_always) to a DEAD snapshot on WatchTask, 5 attempts.
- ``suite_serial_s`` and ``suite_n2_s``: the bundled suite against the harness-owned reference, from
  an empty folder (``pytest --pyargs scenarios``), serially and with ``-n 2``; ``speedup_n2``.
- ``suite_api_inmemory_s``: the API-level suite (plain ``--taskqueue-target``) against the in-memory
  test server (tests/servers/inmemory), a fast implementation, so the figure is the suite's own cost.
- ``burst_s``: the 200-task burst scenario's call time in the serial run.
- ``reference_vs_ceiling``: submits/s of the reference API against the same DynamoDB and SQS calls
  made directly (``bench_throughput.py``: its best-round ratio and the per-round ratios).

Targets (issue "A fast gate"): serial <= 30 s, ``-n 2`` <= 18 s (and >= 1.5x), API-level <= 8 s,
burst <= 3 s, isolation <= 50 ms, retry-then-DEAD <= 3 s, reference >= 70 % of the ceiling. The
machine's 1-minute load average is printed beside the figures: on a shared machine they move with it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_DURATION = re.compile(r"^\s*(\d+\.\d+)s (setup|teardown|call)\s+(\S+)")
_BURST = "test_burst_of_tasks_all_complete_exactly_once"


def run_suite(extra: list[str]) -> dict[str, Any]:
    """One run of the bundled suite from an empty folder: wall time, fixture and burst durations."""
    with tempfile.TemporaryDirectory(prefix="bench-suite-") as folder:
        argv = [sys.executable, "-m", "pytest", "--pyargs", "scenarios", "-q", "-p", "no:cacheprovider"]
        argv += ["--durations=0", "--durations-min=0", *extra]
        load = os.getloadavg()[0]
        started = time.perf_counter()
        done = subprocess.run(argv, cwd=folder, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
    fixture_times: list[float] = []
    burst: float | None = None
    for line in done.stdout.splitlines():
        match = _DURATION.match(line)
        if match is None:
            continue
        seconds, phase, node = float(match.group(1)), match.group(2), match.group(3)
        if phase == "call" and node.endswith(_BURST):
            burst = seconds
        elif phase != "call":
            fixture_times.append(seconds)
    lines = [line for line in done.stdout.strip().splitlines() if line.strip()]
    return {
        "argv": " ".join(extra) or "(serial)",
        "exit": done.returncode,
        "wall_s": round(wall, 2),
        "load_1min": round(load, 2),
        "summary": lines[-1] if lines else "(no output)",
        "burst_s": burst,
        "fixture_times": fixture_times,
    }


def stack_ready() -> float:
    """Seconds from nothing to a ready harness-owned reference stack (then stopped)."""
    from pytest_taskqueue._stack import StackConfig, reference_stack

    stack = reference_stack(StackConfig(prefix="bench-ready", progress=None))
    began = time.perf_counter()
    try:
        stack.start()
        return time.perf_counter() - began
    finally:
        stack.stop()


async def retry_then_dead(runs: int) -> list[float]:
    """Seconds from SubmitTask(fail_always) to a DEAD snapshot on WatchTask, on a fresh reference stack."""
    import grpc

    from pytest_taskqueue._stack import StackConfig, reference_stack
    from taskqueue_proto import taskqueue_pb2 as pb
    from taskqueue_proto import taskqueue_pb2_grpc as pb_grpc

    results: list[float] = []
    with reference_stack(StackConfig(prefix="bench-dead", progress=None)) as stack:
        async with grpc.aio.insecure_channel(stack.target) as channel:
            stub = pb_grpc.TaskQueueStub(channel)
            for run in range(runs):
                started = time.perf_counter()
                answer = await stub.SubmitTask(
                    pb.SubmitTaskRequest(
                        idempotency_key=f"bench-dead-{run}-{time.time_ns()}", task_type="fail_always"
                    ),
                    timeout=10,
                )
                async for snapshot in stub.WatchTask(pb.WatchTaskRequest(task_id=answer.task_id), timeout=30):
                    if snapshot.status == pb.TASK_STATUS_DEAD:
                        results.append(time.perf_counter() - started)
                        break
    return results


def api_suite_inmemory() -> dict[str, Any]:
    """The API-level suite (plain --taskqueue-target) against the in-memory test server."""
    from tests.servers import running_server

    with running_server() as address:
        return run_suite(["--taskqueue-target", address])


def throughput(seconds: float) -> dict[str, Any]:
    """bench_throughput.py's JSON line (reference submits/s vs the same backend calls made directly)."""
    script = Path(__file__).resolve().parent / "bench_throughput.py"
    argv = [sys.executable, str(script), "--duration", str(seconds), "--rounds", "2"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"error": (done.stderr.strip().splitlines() or ["(no output)"])[-1]}
    found = json.loads(lines[-1])
    return {
        "ratio": found["ratio"],
        "ratio_per_round": found["ratio_per_round"],
        "grpc_submits_per_s": found["grpc"]["submits_per_s"],
        "direct_submits_per_s": found["direct"]["submits_per_s"],
    }


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="suite runs per mode")
    parser.add_argument("--dead-runs", type=int, default=5, help="retry-then-DEAD samples")
    parser.add_argument("--throughput-seconds", type=float, default=5.0, help="per throughput round and mode")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    loads = [os.getloadavg()[0]]
    ready = stack_ready()
    serial = [run_suite([]) for _ in range(args.rounds)]
    parallel = [run_suite(["-n", "2"]) for _ in range(args.rounds)]
    api = [api_suite_inmemory() for _ in range(args.rounds)]
    dead = asyncio.run(retry_then_dead(args.dead_runs))
    rates = throughput(args.throughput_seconds)
    loads.append(os.getloadavg()[0])

    serial_s = _median([r["wall_s"] for r in serial])
    parallel_s = _median([r["wall_s"] for r in parallel])
    # Each run's longest setup is the one that starts the stack: left out.
    per_test = sorted(t for r in serial for t in sorted(r["fixture_times"])[:-1])
    result = {
        "load_1min": {"start": round(loads[0], 2), "end": round(loads[1], 2)},
        "stack_ready_s": round(ready, 2),
        "isolation_setup_teardown_ms": {
            "median": round(1000 * statistics.median(per_test), 1) if per_test else None,
            "p95": round(1000 * per_test[int(0.95 * (len(per_test) - 1))], 1) if per_test else None,
        },
        "retry_then_dead_s": {"median": _median(dead), "max": round(max(dead), 2) if dead else None},
        "suite_serial_s": serial_s,
        "suite_n2_s": parallel_s,
        "speedup_n2": round(serial_s / parallel_s, 2) if serial_s and parallel_s else None,
        "suite_api_inmemory_s": _median([r["wall_s"] for r in api]),
        "burst_s": _median([r["burst_s"] for r in serial if r["burst_s"] is not None]),
        "reference_vs_ceiling": rates,
        "runs": [{k: v for k, v in r.items() if k != "fixture_times"} for r in serial + parallel + api],
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
