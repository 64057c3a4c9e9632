"""Submit throughput of the reference server: through gRPC versus the same backend calls made directly.

    python benchmarks/bench_throughput.py --duration 10 --concurrency 32 --rounds 2

Starts moto (requests serialised) and ElasticMQ with the reference tests' launchers, and a reference
API process (``serve``, no worker, so nothing else competes for the backends). Then, in alternating
rounds on fresh tables and queues:

- ``direct``: ``concurrency`` loops issue exactly what one SubmitTask costs the server, with the
  server's own code: ``Store.create_task`` (one TransactWriteItems) and ``Queues.send`` (one
  SendMessage).
- ``grpc``: ``concurrency`` loops call SubmitTask on the reference API.

Prints one JSON line: submits/s of each (best round), latency percentiles, ``ratio`` = grpc /
direct of the best rounds (the target is >= 0.70) and the ratio of each round pair. Every process
is stopped on exit. Numbers depend on the machine and on what else runs on it (the gRPC side uses
two processes, the direct side one); compare them on one quiet machine only.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import itertools
import json
import multiprocessing
import os
import pathlib
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402

from reference_server.backends import Backends  # noqa: E402
from reference_server.config import Config  # noqa: E402
from reference_server.queue import Message, Queues  # noqa: E402
from reference_server.store import Status, Store, from_submitted_state, submitted_state  # noqa: E402
from taskqueue_proto import taskqueue_pb2 as pb  # noqa: E402
from taskqueue_proto import taskqueue_pb2_grpc  # noqa: E402
from tests.reference._procs import AWS_ENV, Stoppable, start_elasticmq, start_moto, start_reference  # noqa: E402

PAYLOAD = b'{"bench": true}'


async def _drive(concurrency: int, duration: float, submit: Callable[[int], Awaitable[None]]) -> list[float]:
    """Run ``concurrency`` loops calling ``submit`` for ``duration`` s; returns each call's latency."""
    latencies: list[float] = []
    stop_at = time.perf_counter() + duration

    async def loop(worker: int) -> None:
        n = 0
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            await submit(worker * 10_000_000 + n)
            latencies.append(time.perf_counter() - started)
            n += 1

    await asyncio.gather(*(loop(w) for w in range(concurrency)))
    return latencies


def _summary(latencies: list[float], duration: float) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "submits_per_s": round(len(ordered) / duration, 1),
        "p50_ms": round(1000 * statistics.median(ordered), 2),
        "p99_ms": round(1000 * ordered[int(len(ordered) * 0.99) - 1], 2),
    }


@contextlib.asynccontextmanager
async def _backend_code(config: Config) -> AsyncIterator[tuple[Store, Queues]]:
    """The reference's own Store and Queues on ``config``'s table and queues (created if missing)."""
    async with Backends(config) as backends:
        store = Store(backends.dynamodb, config.table)
        queues = Queues(backends.sqs, config.queue, config.dead_letter_queue, config.visibility_timeout)
        await store.ensure_table(create=True)
        await queues.ensure(create=True)
        yield store, queues


async def _direct_round(config: Config, concurrency: int, duration: float) -> dict[str, float]:
    async with _backend_code(config) as (store, queues):
        run = uuid.uuid4().hex[:8]
        serial = itertools.count()  # every submit a new key, the warm-up's too

        async def submit(n: int) -> None:
            task, _ = await store.create_task(f"direct-{run}-{next(serial)}", "noop", PAYLOAD, 5)
            await queues.send(task.task_id)

        await _drive(concurrency, 1.0, submit)  # warm the connection pool
        return _summary(await _drive(concurrency, duration, submit), duration)


async def _direct_lifecycle_round(config: Config, concurrency: int, duration: float) -> dict[str, float]:
    """Whole task lives, with the reference's own backend code and no gRPC: the ceiling of a run.

    Each of ``concurrency`` loops submits one task (``Store.create_task``, ``Queues.send`` with the
    task's submitted state) and then drives one received message as the worker does (a first delivery
    claimed from the state it carries, else ``Store.get_task``; ``Store.claim``, ``Store.complete``,
    ``Queues.delete``), so submits and completions stay balanced. ``submits_per_s`` here counts tasks
    that reached COMPLETED per second.
    """
    async with _backend_code(config) as (store, queues):
        run = uuid.uuid4().hex[:8]
        serial = itertools.count()  # every submit a new key, the warm-up's too

        async def one_life(n: int) -> None:
            task, _ = await store.create_task(f"life-{run}-{next(serial)}", "noop", PAYLOAD, 5)
            await queues.send(task.task_id, submitted_state(task))
            while True:
                messages: list[Message] = await queues.receive(1, 1)
                task_id = messages[0].task_id if messages else None
                if task_id is None:
                    continue
                message = messages[0]
                found = from_submitted_state(task_id, message.submitted)
                if found is None:
                    found = await store.get_task(task_id, with_result=False)
                if found is not None and found.status == Status.PENDING:
                    break
                await queues.delete(message.receipt_handle)  # a redelivery of a finished task: as the worker
            claimed = await store.claim(found, 30_000)
            await store.complete(claimed, b"")
            await queues.delete(message.receipt_handle)

        await _drive(concurrency, 1.0, one_life)  # warm the connection pools
        return _summary(await _drive(concurrency, duration, one_life), duration)


def _lifecycle_in_process(config: Config, concurrency: int, duration: float) -> dict[str, float]:
    return asyncio.run(_direct_lifecycle_round(config, concurrency, duration))


def direct_lifecycle_ceiling(
    config: Config, concurrency: int, duration: float, processes: int = 2
) -> dict[str, float]:
    """``_direct_lifecycle_round`` in ``processes`` processes at once (the reference runs its calls
    from two, a server and a worker), ``concurrency`` loops in all; their rates added up."""
    asyncio.run(_prepare(config))
    share = max(1, concurrency // processes)
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(processes, mp_context=context) as pool:
        rounds = list(
            pool.map(_lifecycle_in_process, [config] * processes, [share] * processes, [duration] * processes)
        )
    return {
        "submits_per_s": round(sum(r["submits_per_s"] for r in rounds), 1),
        "p50_ms": max(r["p50_ms"] for r in rounds),
        "p99_ms": max(r["p99_ms"] for r in rounds),
        "processes": processes,
    }


async def _prepare(config: Config) -> None:
    async with _backend_code(config):
        pass


async def _grpc_round(target: str, concurrency: int, duration: float) -> dict[str, float]:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = taskqueue_pb2_grpc.TaskQueueStub(channel)
        run = uuid.uuid4().hex[:8]
        serial = itertools.count()  # every submit a new key, the warm-up's too

        async def submit(n: int) -> None:
            key = f"grpc-{run}-{next(serial)}"
            request = pb.SubmitTaskRequest(idempotency_key=key, task_type="noop", payload=PAYLOAD)
            await stub.SubmitTask(request, timeout=30)

        await _drive(concurrency, 1.0, submit)
        return _summary(await _drive(concurrency, duration, submit), duration)


async def _wait_serving(target: str) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with grpc.aio.insecure_channel(target) as channel, asyncio.timeout(60):
        stub = health_pb2_grpc.HealthStub(channel)
        async for answer in stub.Watch(health_pb2.HealthCheckRequest(service="")):
            if answer.status == health_pb2.HealthCheckResponse.SERVING:
                return


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per round and mode")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent submit loops")
    parser.add_argument("--rounds", type=int, default=2, help="alternating direct/grpc rounds")
    args = parser.parse_args()
    os.environ.update(AWS_ENV)

    log_dir = pathlib.Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    started: list[Stoppable] = []
    try:
        moto, dynamodb = start_moto(log_dir)
        started.append(moto)
        elasticmq, sqs = start_elasticmq(log_dir)
        started.append(elasticmq)
        results: dict[str, list[dict[str, float]]] = {"direct": [], "grpc": []}
        for round_number in range(args.rounds):
            names = {"table": f"bench-{uuid.uuid4().hex[:8]}", "queue": f"bench-{uuid.uuid4().hex[:8]}"}
            config = Config(
                dynamodb_endpoint=dynamodb,
                sqs_endpoint=sqs,
                table=names["table"],
                queue=names["queue"],
                dead_letter_queue=names["queue"] + "-dlq",
            )
            results["direct"].append(asyncio.run(_direct_round(config, args.concurrency, args.duration)))
            server_args = [
                "--port", "0", "--dynamodb-endpoint", dynamodb, "--sqs-endpoint", sqs,
                "--table", names["table"] + "g", "--queue", names["queue"] + "g",
                "--dead-letter-queue", names["queue"] + "g-dlq",
            ]  # fmt: skip
            server = start_reference("serve", server_args, log_dir, f"serve-{round_number}")
            started.append(server)
            asyncio.run(_wait_serving(server.target))
            results["grpc"].append(asyncio.run(_grpc_round(server.target, args.concurrency, args.duration)))
            server.stop()
        best = {mode: max(rounds, key=lambda r: r["submits_per_s"]) for mode, rounds in results.items()}
        summary = {
            "concurrency": args.concurrency,
            "duration_s": args.duration,
            "rounds": results,
            "direct": best["direct"],
            "grpc": best["grpc"],
            "ratio": round(best["grpc"]["submits_per_s"] / best["direct"]["submits_per_s"], 3),
            "ratio_per_round": [
                round(g["submits_per_s"] / d["submits_per_s"], 3)
                for d, g in zip(results["direct"], results["grpc"], strict=True)
            ],
            "logs": str(log_dir),
        }
        print(json.dumps(summary), flush=True)
        return 0
    finally:
        for process in reversed(started):
            process.stop()


if __name__ == "__main__":
    sys.exit(main())
