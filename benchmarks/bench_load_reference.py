"""The reference stack's highest sustainable rate (``--find-max``) against its backend ceiling.

    python benchmarks/bench_load_reference.py --step-duration 10 --start-rate 20

In one run, on one harness-owned reference stack (moto, ElasticMQ, the reference server and worker):

1. ``--find-max`` as ``taskqueue-harness load`` does it (doubling from ``--start-rate``, then
   bisecting to 10%), against the API directly (not through Toxiproxy), every step checked;
2. the backend ceiling: ``--concurrency`` loops each living whole tasks with the reference's own
   backend code, directly on the same moto and ElasticMQ, on a fresh table and queue, from two
   processes as the reference has a server and a worker (``bench_throughput.direct_lifecycle_ceiling``:
   the submit's TransactWriteItems and SendMessage, then the worker's read, claim, completion and
   delete): the same DynamoDB and SQS calls a task costs, without gRPC; beside it the submit path
   alone (``_direct_round``), for reference;
3. a run at half the highest sustainable rate, for its end-to-end p99.

Prints one JSON line: the steps, ``highest_sustainable_rate``, ``backend_ceiling`` (whole tasks/s, in
its ``submits_per_s``), ``submit_path_ceiling``, ``ratio`` = highest / ceiling, and the half-rate
run's latencies, with the machine's load average.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import json
import os
import pathlib
import sys
import tempfile
import uuid
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_throughput import _direct_round, direct_lifecycle_ceiling  # noqa: E402

from pytest_taskqueue._stack import StackConfig, reference_stack  # noqa: E402
from pytest_taskqueue.cli.load import LOAD_VISIBILITY_TIMEOUT_S  # noqa: E402
from pytest_taskqueue.load.generator import default_processes  # noqa: E402
from pytest_taskqueue.load.limits import Step, find_max, unsustainable  # noqa: E402
from pytest_taskqueue.load.run import RunSettings, run_load  # noqa: E402
from pytest_taskqueue.load.workload import Workload  # noqa: E402
from reference_server.config import Config  # noqa: E402


def _settings(rate: float, duration: float, prefix: str) -> RunSettings:
    return RunSettings(
        rate=rate,
        duration_s=duration,
        warmup_s=min(2.0, duration / 4),
        workload=Workload.from_options(key_prefix=prefix),
        processes=default_processes(rate, os.cpu_count() or 1),
        drain_timeout_s=60.0,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start-rate", type=float, default=20.0)
    parser.add_argument("--max-rate", type=float, default=2000.0)
    parser.add_argument("--step-duration", type=float, default=10.0)
    parser.add_argument("--half-duration", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=32, help="direct backend loops")
    parser.add_argument("--direct-duration", type=float, default=10.0)
    args = parser.parse_args()
    load_before = os.getloadavg()
    run_id = uuid.uuid4().hex[:6]
    log_dir = pathlib.Path(tempfile.mkdtemp(prefix="bench-load-"))
    config = StackConfig(  # as `load` runs it
        prefix=f"benchload-{run_id}", log_dir=log_dir, visibility_timeout=LOAD_VISIBILITY_TIMEOUT_S
    )
    with reference_stack(config) as stack:
        target = stack.direct_target

        def step(rate: float, number: int) -> Step:
            outcome = run_load(target, _settings(rate, args.step_duration, f"bl-{run_id}-{number}"), _quiet)
            reasons = unsustainable(outcome.summary, outcome.figures, (), outcome.backlog_growing)
            for anomaly in outcome.anomalies[:5]:
                _stderr(f"  anomaly at {rate:g}/s: {anomaly.line()}")
            rules = dict(collections.Counter(a.rule for a in outcome.anomalies))
            return Step(rate, reasons, outcome.summary, len(outcome.anomalies), rules)

        found = find_max(step, args.start_rate, args.max_rate, progress=_stderr)
        best = found.best.rate if found.best is not None else None
        direct_config = Config(
            dynamodb_endpoint=stack.dynamodb_endpoint,
            sqs_endpoint=stack.sqs_endpoint,
            table=f"benchdirect-{run_id}",
            queue=f"benchdirect-{run_id}",
            dead_letter_queue=f"benchdirect-{run_id}-dlq",
        )
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
        ceiling = direct_lifecycle_ceiling(direct_config, args.concurrency, args.direct_duration)
        submit_only = dataclasses.replace(
            direct_config, table=direct_config.table + "s", queue=direct_config.queue + "s"
        )
        submit_path = asyncio.run(_direct_round(submit_only, args.concurrency, args.direct_duration))
        half: dict[str, Any] | None = None
        if best is not None:
            outcome = run_load(target, _settings(best / 2, args.half_duration, f"bl-{run_id}-half"), _quiet)
            half = {
                "rate": best / 2,
                "latency_ms": outcome.summary["latency_ms"],
                "achieved_rate": outcome.summary["achieved_rate"],
                "anomalies": len(outcome.anomalies),
                "generator_valid": outcome.valid,
            }
    print(
        json.dumps(
            {
                "steps": [s.to_json() for s in found.steps],
                "highest_sustainable_rate": best,
                "limited_by": found.limited_by,
                "backend_ceiling": ceiling,
                "submit_path_ceiling": submit_path,
                "ratio": round(best / ceiling["submits_per_s"], 3) if best else None,
                "half_rate_run": half,
                "load_average": {"before": load_before, "after": os.getloadavg()},
                "cpus": os.cpu_count(),
            }
        ),
        flush=True,
    )
    return 0


def _quiet(line: str) -> None:
    pass


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
