"""A chaos run against the reference stack, every link through its own Toxiproxy proxy.

    python benchmarks/bench_faults_chaos_reference.py --seed 1 --duration 60 --out /tmp/history.json

Starts moto (serialised) and ElasticMQ with the reference tests' launchers, a Toxiproxy from the
toolkit cache with the five proxies of docs/architecture.md (api, server_dynamodb, server_sqs,
worker_dynamodb, worker_sqs), the reference API and worker through them, then runs
``fault_injection.chaos.run_chaos`` over all five links and prints one JSON summary line
(operations, anomalies by rule, gRPC codes seen, faults applied). Every process is stopped on
exit. A stand-in for ``taskqueue-harness chaos`` until the harness owns the stack; exit 1 when
the checker reports anomalies.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import pathlib
import sys
import tempfile
import time
import uuid

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fault_injection import Toxiproxy  # noqa: E402
from fault_injection.chaos import ChaosConfig, run_chaos  # noqa: E402
from fault_injection.history import check  # noqa: E402
from pytest_taskqueue._backends import ToxiproxyServer  # noqa: E402
from tests.reference._procs import (  # noqa: E402
    Stoppable,
    start_elasticmq,
    start_moto,
    start_reference,
)

_LINKS = ("api", "server_dynamodb", "server_sqs", "worker_dynamodb", "worker_sqs")
_TIMINGS = ["--visibility-timeout", "2", "--retry-backoff-ms", "50", "--retry-backoff-max-ms", "200"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--links", default=",".join(_LINKS), help="comma-separated proxies to break")
    parser.add_argument("--clients", type=int, default=ChaosConfig.clients)
    parser.add_argument(
        "--rate", type=float, default=ChaosConfig.ops_per_second, help="target ops/s, all clients"
    )
    parser.add_argument("--out", type=pathlib.Path, help="save the history JSON here")
    args = parser.parse_args()

    log_dir = pathlib.Path(tempfile.mkdtemp(prefix="chaos-ref-"))
    started: list[Stoppable] = []
    with contextlib.ExitStack() as cleanup:

        @cleanup.callback
        def stop_started() -> None:
            for process in reversed(started):
                process.stop()

        moto, dynamodb = start_moto(log_dir)
        started.append(moto)
        elasticmq, sqs = start_elasticmq(log_dir)
        started.append(elasticmq)
        toxiproxy_server = cleanup.enter_context(
            ToxiproxyServer(log_dir=log_dir, progress=None, log_level="warn")
        )
        toxiproxy = Toxiproxy(toxiproxy_server.endpoint)
        upstream = {"dynamodb": dynamodb.removeprefix("http://"), "sqs": sqs.removeprefix("http://")}
        proxies = {}
        for side in ("server", "worker"):
            for backend in ("dynamodb", "sqs"):
                name = f"{side}_{backend}"
                proxies[name] = toxiproxy.create_proxy(name, "127.0.0.1:0", upstream[backend])

        suffix = uuid.uuid4().hex[:8]
        names = [
            "--table",
            f"chaos-{suffix}",
            "--queue",
            f"chaos-{suffix}",
            "--dead-letter-queue",
            f"chaos-{suffix}-dlq",
        ]

        def flags(side: str) -> list[str]:
            return [
                "--port", "0",
                "--dynamodb-endpoint", f"http://{proxies[f'{side}_dynamodb'].listen}",
                "--sqs-endpoint", f"http://{proxies[f'{side}_sqs'].listen}",
                *names, *_TIMINGS,
            ]  # fmt: skip

        server = start_reference("serve", flags("server"), log_dir, "serve")
        started.append(server)
        api = toxiproxy.create_proxy("api", "127.0.0.1:0", server.target)
        worker = start_reference("worker", flags("worker"), log_dir, "worker")
        started.append(worker)

        config = ChaosConfig(
            seed=args.seed,
            duration_s=args.duration,
            fault_proxies=[link for link in args.links.split(",") if link],
            clients=args.clients,
            ops_per_second=args.rate,
        )
        began = time.monotonic()
        result = asyncio.run(run_chaos(api.listen, toxiproxy, config))
        anomalies = check(result.history)
        if args.out:
            result.history.save(args.out)
        summary = {
            "seed": args.seed,
            "duration_s": args.duration,
            "wall_s": round(time.monotonic() - began, 1),
            "operations": result.operations,
            "tasks": len(result.history.tasks),
            "faults_applied": len(result.applied),
            "codes": result.codes,
            "undrained": len(result.undrained),
            "anomalies_by_rule": dict(collections.Counter(a.rule for a in anomalies)),
            "first_anomalies": [a.to_json() for a in anomalies[:5]],
            "logs": str(log_dir),
        }
        print(json.dumps(summary))
        return 1 if anomalies else 0


if __name__ == "__main__":
    sys.exit(main())
