"""The load generator's own ceiling, against a trivial server, compared with ghz in the same run.

    python benchmarks/bench_load_generator.py --rates 1000,2000,3000 --duration 10

Starts a trivial TaskQueue server (``--server-processes`` processes of grpc.aio sharing one port
through SO_REUSEPORT) that answers SubmitTask at once without storing anything, then:

- for each rate, ``taskqueue-harness load``'s open-loop generator (``run_generator``, with its
  default number of processes) offers that many submits/s; reported: the rate it really sent and
  got answered, whether it kept its schedule (``valid``), its lag p99/max, submit p50/p99/max
  measured from the intended send times;
- ghz (``go install github.com/bojand/ghz/cmd/ghz@latest``; skipped if absent) against the same
  server, unthrottled with ``--ghz-concurrency`` workers, for the server's ceiling as a Go client
  sees it, and at the generator's highest valid rate.

Prints one JSON line: each rate's figures, ``generator_max_valid_rate``, ghz's figures and
``ratio`` (the generator's highest valid rate / ghz's unthrottled rate). Note the machine's load
(it is printed too): both generators share the 2 cores with the server and with anything else.
So each round also measures CPU time per submit (the generator's processes, the server's; ghz's per
request), which a busy machine does not change much: ``cpu_estimate`` says what 2 quiet cores
would sustain, the generator alone and with the trivial server beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import pathlib
import resource
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
import grpc.aio  # noqa: E402

from pytest_taskqueue.load.generator import GeneratorConfig, default_processes, run_generator  # noqa: E402
from pytest_taskqueue.load.recording import LatencyRecorder  # noqa: E402
from pytest_taskqueue.load.workload import Workload  # noqa: E402
from taskqueue_proto import taskqueue_pb2, taskqueue_pb2_grpc  # noqa: E402


class _Trivial(taskqueue_pb2_grpc.TaskQueueServicer):
    """SubmitTask answered at once, nothing stored."""

    async def SubmitTask(self, request: Any, context: Any) -> taskqueue_pb2.SubmitTaskResponse:
        return taskqueue_pb2.SubmitTaskResponse(
            task_id="t-" + request.idempotency_key, status=taskqueue_pb2.TASK_STATUS_PENDING, created=True
        )


def _serve(port: int, ready: Any) -> None:
    async def main() -> None:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
        taskqueue_pb2_grpc.add_TaskQueueServicer_to_server(_Trivial(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        ready.set()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await server.stop(0.5)

    asyncio.run(main())


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _process_cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of live processes (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def _generator_round(target: str, rate: float, duration: float, server_pids: list[int]) -> dict[str, Any]:
    server_before = _process_cpu_s(server_pids)
    workload = Workload.from_options(key_prefix=f"bench-{rate:g}-{time.time_ns()}")
    processes = default_processes(rate, os.cpu_count() or 1)
    connections = max(4, processes)
    config = GeneratorConfig(target, rate, duration, workload, connections=connections, processes=processes)
    result = run_generator(config)
    generator_cpu = result.cpu_s  # during the schedule only (not the processes' start)
    server_cpu = _process_cpu_s(server_pids) - server_before
    recorder = LatencyRecorder()
    for record in result.submits:
        recorder.record(record.latency_us)
    ok = [r for r in result.submits if r.code == "OK"]
    end_ns = max((r.done_ns for r in result.submits), default=result.start_ns)
    span_s = max((end_ns - result.start_ns) / 1e9, duration)
    summary = recorder.summary()
    return {
        "offered": rate,
        "processes": processes,
        "answered_per_s": round(len(ok) / span_s, 1),
        "errors": len(result.submits) - len(ok),
        "valid": result.valid,
        "reason": result.invalid_reason,
        "lag_p99_ms": round(result.lag_p99_us / 1000, 2),
        "lag_max_ms": round(result.max_lag_us / 1000, 2),
        "submit_ms": {k: summary[k] for k in ("p50", "p99", "max")},
        "cpu_ms_per_submit": {
            "generator": round(1000 * generator_cpu / max(1, len(ok)), 4),
            "server": round(1000 * server_cpu / max(1, len(ok)), 4),
        },
    }


def _ghz(binary: str, target: str, duration: float, concurrency: int, rps: float = 0) -> dict[str, Any]:
    proto = ROOT / "proto" / "taskqueue" / "v1" / "taskqueue.proto"
    command = [
        binary, "--insecure", "--proto", str(proto), "--import-paths", str(ROOT / "proto"),
        "--call", "taskqueue.v1.TaskQueue.SubmitTask",
        "-d", '{"idempotency_key":"ghz-{{.RequestNumber}}","task_type":"noop"}',
        "-z", f"{duration:g}s", "-c", str(concurrency), "--connections", "4", "-O", "json",
    ]  # fmt: skip
    if rps:
        command += ["--rps", str(int(rps))]
    before = _children_cpu_s()
    done = subprocess.run([*command, target], capture_output=True, text=True, timeout=duration + 120)
    cpu = _children_cpu_s() - before
    if done.returncode not in (0, 1) or not done.stdout.strip():
        return {"error": done.stderr.strip()[-500:]}
    data = json.loads(done.stdout)
    latencies = {d["percentage"]: d["latency"] / 1e6 for d in data.get("latencyDistribution") or []}
    return {
        "rps": round(data["rps"], 1),
        "count": data["count"],
        "concurrency": concurrency,
        "rps_limit": rps or None,
        "p50_ms": latencies.get(50),
        "p99_ms": latencies.get(99),
        "errors": sum((data.get("errorDistribution") or {}).values()),
        "cpu_ms_per_request": round(1000 * cpu / max(1, data["count"]), 4),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="500,1000,2000,3000", help="comma-separated submits/s to offer")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per rate")
    parser.add_argument("--server-processes", type=int, default=1)
    parser.add_argument("--ghz-concurrency", type=int, default=50)
    args = parser.parse_args()
    port = _free_port()
    target = f"127.0.0.1:{port}"
    context = multiprocessing.get_context("spawn")
    servers = []
    try:
        for _ in range(args.server_processes):
            ready = context.Event()
            server = context.Process(target=_serve, args=(port, ready), daemon=True)
            server.start()
            servers.append(server)
            if not ready.wait(60):
                raise RuntimeError("the trivial server did not start")
        load_before = os.getloadavg()
        pids = [server.pid for server in servers if server.pid is not None]
        rounds = [
            _generator_round(target, float(rate), args.duration, pids) for rate in args.rates.split(",")
        ]
        valid = [r["offered"] for r in rounds if r["valid"] and r["answered_per_s"] >= 0.95 * r["offered"]]
        best = max(valid, default=None)
        binary = shutil.which("ghz") or str(pathlib.Path.home() / "go" / "bin" / "ghz")
        ghz: dict[str, Any] = {"error": "ghz not installed"}
        if pathlib.Path(binary).exists():
            ghz = {"unthrottled": _ghz(binary, target, args.duration, args.ghz_concurrency)}
            if best:
                ghz["at_generator_max"] = _ghz(binary, target, args.duration, args.ghz_concurrency, best)
        ghz_rps = ghz.get("unthrottled", {}).get("rps")
        # CPU per submit is robust to a shared machine: what 2 quiet cores would sustain.
        per_submit = [r["cpu_ms_per_submit"] for r in rounds if r["cpu_ms_per_submit"]["generator"] > 0]
        generator_ms = min((c["generator"] for c in per_submit), default=None)
        server_ms = min((c["server"] for c in per_submit), default=None)
        ghz_ms = ghz.get("unthrottled", {}).get("cpu_ms_per_request")
        cpu_estimate = {
            "generator_ms_per_submit": generator_ms,
            "ghz_ms_per_request": ghz_ms,
            "cpu_ratio_ghz_over_generator": round(ghz_ms / generator_ms, 3)
            if ghz_ms and generator_ms
            else None,
            "generator_alone_on_2_cores_per_s": round(2000 / generator_ms) if generator_ms else None,
            "generator_and_trivial_server_on_2_cores_per_s": (
                round(2000 / (generator_ms + server_ms)) if generator_ms and server_ms else None
            ),
        }
        print(
            json.dumps(
                {
                    "server_processes": args.server_processes,
                    "duration_s": args.duration,
                    "rounds": rounds,
                    "generator_max_valid_rate": best,
                    "ghz": ghz,
                    "ratio": round(best / ghz_rps, 3) if best and ghz_rps else None,
                    "cpu_estimate": cpu_estimate,
                    "load_average": {"before": load_before, "after": os.getloadavg()},
                    "cpus": os.cpu_count(),
                }
            ),
            flush=True,
        )
        return 0
    finally:
        for server in servers:
            if server.is_alive():
                server.terminate()
            server.join(10)
            if server.is_alive():
                server.kill()


if __name__ == "__main__":
    sys.exit(main())
