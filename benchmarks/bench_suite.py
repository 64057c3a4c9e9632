"""Measure the conformance suite against the reference stack: wall time serial and with ``-n 2``,
per-test isolation (the ``harness`` fixture's setup and teardown), and retry-then-DEAD latency.

    python benchmarks/bench_suite.py [--rounds 1] [--dead-runs 5] [--json out.json]

Targets (docs/architecture.md): non-chaos suite <= 30 s, ``-n 2`` at least 1.5x faster,
per-test isolation <= 50 ms, retry-then-DEAD <= 3 s. This script reports; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

_DURATION = re.compile(r"^\s*(\d+\.\d+)s (setup|teardown)\s+\S*::")


def run_suite(extra: list[str]) -> dict[str, Any]:
    """One run of the bundled suite (no chaos run) from an empty folder; wall time and fixture times."""
    with tempfile.TemporaryDirectory(prefix="bench-suite-") as folder:
        argv = [sys.executable, "-m", "pytest", "--pyargs", "scenarios", "-q", "-p", "no:cacheprovider"]
        argv += ["--durations=0", "--durations-min=0", *extra]
        started = time.perf_counter()
        done = subprocess.run(argv, cwd=folder, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
    fixture_times = [
        float(match.group(1)) for line in done.stdout.splitlines() if (match := _DURATION.match(line))
    ]
    tail = done.stdout.strip().splitlines()[-1:] or ["(no output)"]
    return {
        "argv": " ".join(extra) or "(serial)",
        "exit": done.returncode,
        "wall_s": wall,
        "summary": tail[0],
        "fixture_times": fixture_times,
    }


async def retry_then_dead(runs: int) -> list[float]:
    """Seconds from SubmitTask(fail_always) to a DEAD snapshot on WatchTask, on a fresh reference stack."""
    import grpc

    from pytest_taskqueue._stack import ReferenceStack, StackConfig
    from taskqueue_proto import taskqueue_pb2 as pb
    from taskqueue_proto import taskqueue_pb2_grpc as pb_grpc

    results: list[float] = []
    with ReferenceStack(StackConfig(prefix="bench-dead")) as stack:
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="suite runs per mode")
    parser.add_argument("--dead-runs", type=int, default=5, help="retry-then-DEAD samples")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    not_chaos: list[str] = []  # the chaos scenario skips unless --taskqueue-chaos-seconds is given
    serial = [run_suite(not_chaos) for _ in range(args.rounds)]
    parallel = [run_suite([*not_chaos, "-n", "2"]) for _ in range(args.rounds)]
    dead = asyncio.run(retry_then_dead(args.dead_runs))

    serial_s = statistics.median(r["wall_s"] for r in serial)
    parallel_s = statistics.median(r["wall_s"] for r in parallel)
    fixture = [t for r in serial for t in r["fixture_times"]]
    per_test = sorted(fixture)
    result = {
        "suite_serial_s": round(serial_s, 2),
        "suite_n2_s": round(parallel_s, 2),
        "speedup_n2": round(serial_s / parallel_s, 2) if parallel_s else None,
        "isolation_setup_teardown_ms": {
            "median": round(1000 * statistics.median(per_test), 1) if per_test else None,
            "p95": round(1000 * per_test[int(0.95 * (len(per_test) - 1))], 1) if per_test else None,
            "note": "pytest --durations setup/teardown per scenario; the first includes the stack start",
        },
        "retry_then_dead_s": {"median": round(statistics.median(dead), 2), "max": round(max(dead), 2)}
        if dead
        else None,
        "runs": [{k: v for k, v in r.items() if k != "fixture_times"} for r in serial + parallel],
    }
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
