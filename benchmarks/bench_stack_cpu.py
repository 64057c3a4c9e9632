"""CPU time per task of each process of the harness-owned reference stack, over bursts of tasks.

    python benchmarks/bench_stack_cpu.py [--tasks 200] [--rounds 3] [--mix noop|scenario]
                                         [--idle 3] [--count-calls] [--source DIR] [--json out.json]

Starts the reference stack (``reference_stack``: ElasticMQ, the DynamoDB stand-in, Toxiproxy, the
reference server and worker, with the suite's timings), measures each process's idle CPU for
``--idle`` seconds, then runs ``--rounds`` bursts the way ``scenarios/burst.py`` does: ``--tasks``
SubmitTask calls at once, a WatchTask per task (one after the other) until it is terminal, then
GetTask and ListTaskEvents of every task, 16 at a time. The first round runs in freshly started
processes (ElasticMQ's JIT still cold), which is what the suite's burst sees; later rounds show
the warm cost.

For each round it prints the wall time and, per process, the CPU seconds (user + system, from
``/proc/<pid>/stat``, the process and its descendants) spent in the round and per task. CPU time is
the figure to compare on a shared machine: wall time moves with the other jobs' load, CPU per task
much less. The 1-minute load average is printed beside the figures.

``--count-calls`` also counts the reference processes' AWS calls by operation (a ``sitecustomize``
put on their ``PYTHONPATH`` wraps aiobotocore's ``_make_api_call``; counting costs some CPU of its
own, so compare CPU figures between runs without it). ReceiveMessage is split into empty answers and
messages received.

``--source DIR`` runs the stack (harness and reference) of another checkout, e.g. a ``git worktree``
of an older commit, for before/after figures taken under the same load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: The checkout whose stack is measured (``--source``; this one by default).
SOURCE = Path(os.environ.get("BENCH_STACK_SOURCE") or ROOT)
sys.path.insert(0, str(SOURCE))

import grpc  # noqa: E402

from pytest_taskqueue._stack import Stack, StackConfig, reference_stack  # noqa: E402
from taskqueue_proto import taskqueue_pb2 as pb  # noqa: E402
from taskqueue_proto import taskqueue_pb2_grpc  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
TERMINAL = (pb.TASK_STATUS_COMPLETED, pb.TASK_STATUS_DEAD)
READ_CONCURRENCY = 16
REFERENCE_PROCESSES = ("reference server", "reference worker")

#: Installed as ``sitecustomize`` in the reference processes with ``--count-calls``: counts AWS calls
#: by operation and writes them to ``$BENCH_CALLS_DIR/<pid>.json`` on SIGUSR1.
_COUNTER = """
import os, sys
if "reference_server" in sys.orig_argv and os.environ.get("BENCH_CALLS_DIR"):
    import collections, json, signal
    from aiobotocore.client import AioBaseClient

    _counts = collections.Counter()
    _original = AioBaseClient._make_api_call

    async def _counted(self, operation_name, api_params):
        try:
            answer = await _original(self, operation_name, api_params)
        except Exception:
            _counts[operation_name + " (error)"] += 1
            raise
        _counts[operation_name] += 1
        if operation_name == "ReceiveMessage":
            received = len(answer.get("Messages", []))
            _counts["ReceiveMessage messages"] += received
            if not received:
                _counts["ReceiveMessage (empty)"] += 1
        return answer

    AioBaseClient._make_api_call = _counted

    def _dump(signum, frame):
        path = os.path.join(os.environ["BENCH_CALLS_DIR"], f"{os.getpid()}.json")
        with open(path + ".tmp", "w") as out:
            json.dump(dict(_counts), out)
        os.replace(path + ".tmp", path)

    signal.signal(signal.SIGUSR1, _dump)
"""


def load_1min() -> float:
    return round(os.getloadavg()[0], 2)


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    total = 0.0
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            stat = Path(f"/proc/{current}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14 and 15)
        todo.extend(children.get(current, []))
    return total


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds of each thread group of ``pid`` (threads named alike, digits dropped, summed)."""
    found: dict[str, float] = {}
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in threads:
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        name = "".join(c for c in stat[stat.index("(") + 1 : stat.rindex(")")] if not c.isdigit()).strip(
            "#-_ "
        )
        fields = stat[stat.rindex(")") + 2 :].split()
        found[name] = found.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / TICKS
    return found


def stack_pids(stack: Stack) -> dict[str, int]:
    return {name: process.pid for name, process in stack.processes().items() if process.pid is not None}


def snapshot(pids: dict[str, int]) -> dict[str, float]:
    found = {name: tree_cpu_seconds(pid) for name, pid in pids.items()}
    times = os.times()
    found["benchmark client"] = times.user + times.system
    return found


def request_for(index: int, mix: str) -> pb.SubmitTaskRequest:
    key = f"cpu-{uuid.uuid4().hex}"
    if mix == "scenario" and index % 2:
        return pb.SubmitTaskRequest(idempotency_key=key, task_type="echo", payload=f"burst-{index}".encode())
    return pb.SubmitTaskRequest(idempotency_key=key, task_type="noop")


async def burst(target: str, tasks: int, mix: str) -> dict[str, Any]:
    """One burst as scenarios/burst.py runs it; returns its wall time and outcome counts."""
    began = time.monotonic()
    async with grpc.aio.insecure_channel(target) as channel:
        stub = taskqueue_pb2_grpc.TaskQueueStub(channel)
        answers = await asyncio.gather(
            *(stub.SubmitTask(request_for(i, mix), timeout=60) for i in range(tasks))
        )
        submitted = time.monotonic() - began
        statuses = []
        for answer in answers:
            final = None
            async for snapshot_ in stub.WatchTask(pb.WatchTaskRequest(task_id=answer.task_id), timeout=120):
                final = snapshot_
                if snapshot_.status in TERMINAL:
                    break
            statuses.append(final.status if final is not None else -1)
        terminal = time.monotonic() - began
        gate = asyncio.Semaphore(READ_CONCURRENCY)

        async def read(task_id: str) -> int:
            async with gate:
                await stub.GetTask(pb.GetTaskRequest(task_id=task_id), timeout=60)
                events = await stub.ListTaskEvents(pb.ListTaskEventsRequest(task_id=task_id), timeout=60)
                return sum(e.type == pb.TASK_EVENT_TYPE_COMPLETED for e in events.events)

        completions = await asyncio.gather(*(read(answer.task_id) for answer in answers))
    return {
        "wall_s": round(time.monotonic() - began, 3),
        "submitted_s": round(submitted, 3),
        "all_terminal_s": round(terminal, 3),
        "completed": sum(s == pb.TASK_STATUS_COMPLETED for s in statuses),
        "exactly_once": sum(c == 1 for c in completions),
    }


def read_calls(stack: Stack, calls_dir: Path) -> dict[str, dict[str, int]]:
    """Each reference process's AWS call counts so far (by operation)."""
    found: dict[str, dict[str, int]] = {}
    for name in REFERENCE_PROCESSES:
        pid = stack_pids(stack).get(name)
        if pid is None:
            continue
        path = calls_dir / f"{pid}.json"
        with_mtime = path.stat().st_mtime_ns if path.exists() else 0
        os.kill(pid, signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if path.exists() and path.stat().st_mtime_ns != with_mtime:
                break
            time.sleep(0.01)  # polling a file the child writes on the signal, bounded by the deadline
        found[name] = json.loads(path.read_text()) if path.exists() else {}
    return found


def difference(
    after: dict[str, dict[str, int]], before: dict[str, dict[str, int]]
) -> dict[str, dict[str, int]]:
    return {
        name: {op: n - before.get(name, {}).get(op, 0) for op, n in sorted(ops.items())}
        for name, ops in after.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200, help="tasks per burst (default 200)")
    parser.add_argument("--rounds", type=int, default=3, help="bursts, each measured (default 3)")
    parser.add_argument(
        "--mix", choices=("noop", "scenario"), default="noop",
        help="noop tasks only, or the burst scenario's alternating noop and echo (default noop)",
    )  # fmt: skip
    parser.add_argument("--idle", type=float, default=3.0, help="seconds of idle CPU measured first")
    parser.add_argument("--count-calls", action="store_true", help="count the reference's AWS calls")
    parser.add_argument("--source", type=Path, help="measure the stack of this checkout instead")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if args.tasks < 1 or args.rounds < 1 or args.idle < 0:
        parser.error("--tasks and --rounds must be >= 1 and --idle >= 0")
    if args.source is not None and not os.environ.get("BENCH_STACK_SOURCE"):
        if not (args.source / "pytest_taskqueue").is_dir():
            parser.error(f"--source {args.source}: no pytest_taskqueue package there")
        env = dict(os.environ, BENCH_STACK_SOURCE=str(args.source.resolve()))
        argv = [str(Path(a).resolve()) if a == str(args.json) else a for a in sys.argv[1:]]
        # From the source's folder: ``python -m reference_server`` finds the package in its working folder.
        script = str(Path(__file__).resolve())
        return subprocess.run(
            [sys.executable, script, *argv], env=env, cwd=args.source, check=False
        ).returncode

    calls_dir: Path | None = None
    if args.count_calls:
        calls_dir = Path(tempfile.mkdtemp(prefix="bench-calls-"))
        (calls_dir / "sitecustomize.py").write_text(_COUNTER)
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(calls_dir), *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
        )
        os.environ["BENCH_CALLS_DIR"] = str(calls_dir)

    result: dict[str, Any] = {
        "source": str(SOURCE),
        "load_1min_start": load_1min(),
        "tasks": args.tasks,
        "mix": args.mix,
    }
    stack = reference_stack(StackConfig(prefix=f"cpu{uuid.uuid4().hex[:8]}", progress=None))
    began = time.monotonic()
    with stack:
        result["stack_ready_s"] = round(time.monotonic() - began, 3)
        pids = stack_pids(stack)
        before = snapshot(pids)
        time.sleep(args.idle)  # the idle window is what is measured
        after = snapshot(pids)
        result["idle_cpu_ms_per_s"] = {
            name: round(1000 * (after[name] - before[name]) / args.idle, 1) for name in pids
        } if args.idle else {}  # fmt: skip
        print(f"stack ready in {result['stack_ready_s']} s (load {result['load_1min_start']})", flush=True)
        print("idle CPU, ms per s: " + ", ".join(f"{n} {v}" for n, v in result["idle_cpu_ms_per_s"].items()))
        rounds = []
        for number in range(1, args.rounds + 1):
            calls_before = read_calls(stack, calls_dir) if calls_dir else {}
            before = snapshot(pids)
            outcome = asyncio.run(burst(stack.target, args.tasks, args.mix))
            after = snapshot(pids)
            cpu = {name: after[name] - before[name] for name in after}
            round_ = {
                "round": number,
                "load_1min": load_1min(),
                **outcome,
                "cpu_s": {name: round(seconds, 2) for name, seconds in cpu.items()},
                "cpu_ms_per_task": {name: round(1000 * s / args.tasks, 2) for name, s in cpu.items()},
                "stack_cpu_ms_per_task": round(
                    1000 * sum(s for n, s in cpu.items() if n != "benchmark client") / args.tasks, 2
                ),
            }
            if calls_dir:
                per_process = difference(read_calls(stack, calls_dir), calls_before)
                round_["calls_per_task"] = {
                    name: {op: round(n / args.tasks, 2) for op, n in ops.items() if n}
                    for name, ops in per_process.items()
                }
            rounds.append(round_)
            print(
                f"round {number}: {outcome['wall_s']} s wall (all terminal {outcome['all_terminal_s']} s), "
                f"{outcome['completed']}/{args.tasks} completed, {outcome['exactly_once']} exactly once, "
                f"load {round_['load_1min']}; stack CPU {round_['stack_cpu_ms_per_task']} ms/task",
                flush=True,
            )
            for name in cpu:
                print(
                    f"    {name:<20} {cpu[name]:6.2f} s CPU  {round_['cpu_ms_per_task'][name]:6.2f} ms/task"
                )
            for name, ops in round_.get("calls_per_task", {}).items():
                print(f"    calls per task, {name}: " + ", ".join(f"{op} {n}" for op, n in ops.items()))
        result["rounds"] = rounds
    result["load_1min_end"] = load_1min()
    print(json.dumps(result), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
