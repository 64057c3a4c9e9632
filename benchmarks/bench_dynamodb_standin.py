"""The DynamoDB stand-in (``python -m pytest_taskqueue._moto_server``) under the reference's request mix.

    python benchmarks/bench_dynamodb_standin.py [--concurrency 16] [--tasks 300] [--json out.json]

Starts the stand-in as the harness does (``MotoServer``) and drives it over keep-alive HTTP with
``concurrency`` clients, each playing tasks the way the reference does: a submit transaction (the
idempotency item, the task and its SUBMITTED event, each ``attribute_not_exists``), a consistent
GetItem, a claim and a completion transaction (a conditional update plus an event put), and a lease
UpdateItem. Reports requests/s, latency percentiles and the stand-in's CPU time per request (from
``/proc``): the last is the figure to compare on a shared machine, where wall time moves with load.
Asserts nothing. Servers that close every connection after one answer (werkzeug's development
server, which moto's own server uses) are followed by reconnecting.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_AUTH = (
    "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/dynamodb/aws4_request, "
    "SignedHeaders=host, Signature=0"
)
_TABLE = "bench"


def _request(target: str, body: dict[str, Any]) -> bytes:
    data = json.dumps(body).encode()
    head = (
        "POST / HTTP/1.1\r\nHost: dynamodb\r\nContent-Type: application/x-amz-json-1.0\r\n"
        f"X-Amz-Target: DynamoDB_20120810.{target}\r\nAuthorization: {_AUTH}\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


def _put(item: dict[str, Any]) -> dict[str, Any]:
    return {"Put": {"TableName": _TABLE, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}}


def _transition(task: str, old: str, new: str, seq: int) -> dict[str, Any]:
    update = {
        "Update": {
            "TableName": _TABLE,
            "Key": {"pk": {"S": f"TASK#{task}"}, "sk": {"S": "TASK"}},
            "UpdateExpression": "SET #status = :status, #seq = :seq, #updated = :updated",
            "ConditionExpression": "#status = :old_status AND #seq = :old_seq",
            "ExpressionAttributeNames": {"#status": "status", "#seq": "seq", "#updated": "updated_at"},
            "ExpressionAttributeValues": {
                ":status": {"S": new},
                ":seq": {"N": str(seq + 1)},
                ":updated": {"N": str(time.time_ns() // 1000)},
                ":old_status": {"S": old},
                ":old_seq": {"N": str(seq)},
            },
        }
    }
    event = {"pk": {"S": f"TASK#{task}"}, "sk": {"S": f"EVENT#{seq + 1:020d}"}, "type": {"S": new}}
    return {"TransactItems": [update, _put(event)]}


def task_requests(task: str) -> list[bytes]:
    """What one task costs the stand-in in the reference (submit, read, claim, lease, complete)."""
    key = {"pk": {"S": f"TASK#{task}"}, "sk": {"S": "TASK"}}
    submit = {
        "TransactItems": [
            _put({"pk": {"S": f"IDEM#{task}"}, "sk": {"S": "IDEM"}, "task_id": {"S": task}}),
            _put({**key, "status": {"S": "PENDING"}, "seq": {"N": "1"}, "task_type": {"S": "noop"}}),
            _put({"pk": {"S": f"TASK#{task}"}, "sk": {"S": "EVENT#00000000000000000001"}}),
        ]
    }
    lease = {
        "TableName": _TABLE,
        "Key": key,
        "UpdateExpression": "SET #lease = :lease",
        "ConditionExpression": "#status = :processing",
        "ExpressionAttributeNames": {"#lease": "lease_until", "#status": "status"},
        "ExpressionAttributeValues": {":lease": {"N": "1"}, ":processing": {"S": "PROCESSING"}},
    }
    return [
        _request("TransactWriteItems", submit),
        _request("GetItem", {"TableName": _TABLE, "Key": key, "ConsistentRead": True}),
        _request("TransactWriteItems", _transition(task, "PENDING", "PROCESSING", 1)),
        _request("UpdateItem", lease),
        _request("TransactWriteItems", _transition(task, "PROCESSING", "COMPLETED", 2)),
    ]


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bool:
    """Send one request and read its answer; True when the server closes the connection after it."""
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length)
    status = int(head.split(b" ", 2)[1])
    if status != 200:
        raise RuntimeError(f"HTTP {status}: {body[:300]!r}")
    return b"connection: close" in head.lower()


async def drive(port: int, concurrency: int, tasks: int) -> tuple[list[float], float]:
    """Run ``tasks`` tasks over ``concurrency`` connections; request latencies and the wall time."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    table = {
        "TableName": _TABLE,
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "AttributeDefinitions": [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }
    await _exchange(reader, writer, _request("CreateTable", table))
    writer.close()
    latencies: list[float] = []
    queue = list(range(tasks))

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while queue:
                task = f"t{queue.pop()}-{time.time_ns()}"
                for request in task_requests(task):
                    began = time.perf_counter()
                    if await _exchange(reader, writer, request):  # a server without keep-alive
                        writer.close()
                        reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    latencies.append(time.perf_counter() - began)
        finally:
            writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies, time.perf_counter() - began


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent connections (default 16)")
    parser.add_argument("--tasks", type=int, default=300, help="tasks played (5 requests each)")
    parser.add_argument("--json", help="also write the result here")
    parser.add_argument(
        "--source",
        type=Path,
        help="run the stand-in from this source tree instead (e.g. a `git worktree` of an older commit)",
    )
    args = parser.parse_args()

    from pytest_taskqueue._backends import MotoServer

    class StandIn(MotoServer):
        def environment(self) -> dict[str, str]:
            env = super().environment()
            if args.source is not None:
                env["PYTHONPATH"] = os.pathsep.join([str(args.source.resolve()), env.get("PYTHONPATH", "")])
            return env

    # ``python -m`` puts the working directory first on the stand-in's sys.path, ahead of PYTHONPATH:
    # start it from the tree it is meant to run, or a checkout in the working directory would win.
    os.chdir((args.source or ROOT).resolve())
    with tempfile.TemporaryDirectory(prefix="bench-standin-") as folder:
        with StandIn(log_dir=Path(folder), progress=None) as server:
            assert server.pid is not None
            load = os.getloadavg()[0]
            cpu_before = _cpu_seconds(server.pid)
            latencies, wall = asyncio.run(drive(server.port, args.concurrency, args.tasks))
            cpu = _cpu_seconds(server.pid) - cpu_before
    latencies.sort()
    result = {
        "load_1min": round(load, 2),
        "concurrency": args.concurrency,
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / wall, 1),
        "latency_ms": {
            "p50": round(1000 * statistics.median(latencies), 2),
            "p95": round(1000 * latencies[int(0.95 * (len(latencies) - 1))], 2),
        },
        "server_cpu_ms_per_request": round(1000 * cpu / len(latencies), 2),
    }
    print(json.dumps(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
