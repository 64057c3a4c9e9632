"""``taskqueue-harness load``: an open-loop load run (or ``--find-max``) with its reports and verdict.

``add_parser(subparsers)`` adds the command, ``run(args)`` carries it out (see docs/load.md):
bring up the target (``--target HOST:PORT``; ``--target-cmd`` on harness-owned backends; else the
reference stack, addressed directly rather than through its Toxiproxy), run the schedule, read
every acknowledged task, check the history with the chaos checker, judge ``--slo``, write the
JSON report and the HTML page beside it.

Exit status: 0 clean; 1 anomalies (a correctness failure); 2 usage error; 3 the stack or target
could not be brought up; 4 an SLO broken (or ``--find-max`` found no sustainable rate); 5 the
run is invalid because the generator fell behind its schedule; 130 interrupted.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import os
import signal
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from pytest_taskqueue.cli._common import (
    EXIT_ANOMALIES,
    EXIT_INFRA,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    InfraError,
    Interrupted,
    error,
    handling_signals,
    harness_stack,
    host_port,
    implementation_commands,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    progress,
    raise_interrupted,
)

__all__ = ["EXIT_INVALID", "EXIT_SLO", "add_parser", "run"]

EXIT_SLO: Final = 4
"""An SLO objective broke, or ``--find-max`` found no sustainable rate."""
EXIT_INVALID: Final = 5
"""The generator fell behind its schedule: the run does not show the target's figures."""
LOAD_VISIBILITY_TIMEOUT_S: Final = 30
"""The visibility timeout of a stack the harness runs for a load run: the reference's own default,
not the conformance suite's 1 s. With 1 s the worker's heartbeat (every quarter of it) must land
within a second even when an overloaded machine stalls it, and it sometimes does not: 120 s at
60 tasks/s on the reference (load 7-11) gave 2 attempts abandoned by a live worker, which the
checker rightly counts as anomalies, where 30 s in the same conditions gave none (docs/load.md)."""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``load`` to the ``taskqueue-harness`` parser."""
    parser = subparsers.add_parser(
        "load",
        help="an open-loop load run (or --find-max) checked for correctness, with JSON and HTML reports",
        description=(
            "Offer SubmitTask at a fixed rate on a fixed schedule (open loop: latencies from each "
            "intended send time), read every acknowledged task afterwards, check the history with the "
            "chaos checker, and report submit and end-to-end latencies (HDR histograms), achieved vs "
            "offered rate, backlog and errors by gRPC code. Without --target/--target-cmd the reference "
            "stack is started. Exit 0 clean, 1 anomalies, 2 usage error, 3 infrastructure, 4 SLO broken "
            "(or no sustainable rate), 5 the generator fell behind (the run is invalid)."
        ),
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--target", type=host_port, metavar="HOST:PORT", help="an implementation that runs already"
    )
    where.add_argument(
        "--target-cmd",
        metavar="COMMAND",
        help="run this implementation against harness-owned backends (placeholders as "
        "--taskqueue-target-cmd: {port} {dynamodb} {sqs} {region} {table} {queue} {dlq})",
    )
    parser.add_argument("--worker-cmd", metavar="COMMAND", help="its separate worker (with --target-cmd)")
    parser.add_argument(
        "--rate",
        type=positive_float,
        default=50.0,
        help="tasks/s offered (default %(default)s; with --find-max the first rate tried)",
    )
    parser.add_argument(
        "--duration",
        type=positive_float,
        default=30.0,
        help="seconds of schedule, warm-up included (per step with --find-max; default %(default)s)",
    )
    parser.add_argument(
        "--warmup",
        type=non_negative_float,
        default=0.0,
        help="first seconds left out of the figures (still checked; default %(default)s)",
    )
    parser.add_argument(
        "--mix",
        default="noop:1",
        help="task types TYPE:WEIGHT[:PARAM], comma-separated (default %(default)s; docs/load.md)",
    )
    parser.add_argument(
        "--duplicates",
        type=non_negative_float,
        default=0.01,
        help="share of arrivals submitted twice at once with the same key (default %(default)s)",
    )
    parser.add_argument(
        "--connections", type=positive_int, default=4, help="gRPC connections (default %(default)s)"
    )
    parser.add_argument(
        "--processes",
        type=positive_int,
        default=None,
        help="generator processes (default: one per 800 tasks/s, at most one per CPU)",
    )
    parser.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed of the mix (default %(default)s)"
    )
    parser.add_argument(
        "--report", type=Path, help="write the JSON report here (the HTML page beside it, .html)"
    )
    parser.add_argument("--html", type=Path, help="write the HTML page here instead")
    parser.add_argument(
        "--history",
        type=Path,
        help="save the checked history here (default: beside the report, .history.json; "
        "`taskqueue-harness check` re-checks it)",
    )
    parser.add_argument(
        "--slo", help='objectives, e.g. "submit_p99<50ms,e2e_p99<2s,errors<0.1%%"; exit 4 if broken'
    )
    parser.add_argument(
        "--find-max",
        action="store_true",
        help="step the rate up from --rate (doubling, then bisecting) to the highest sustainable one",
    )
    parser.add_argument(
        "--max-rate",
        type=positive_float,
        default=5000.0,
        help="--find-max never offers more (default %(default)s)",
    )
    parser.add_argument(
        "--precision",
        type=positive_float,
        default=0.1,
        help="--find-max stops bisecting when the bracket is this close (default %(default)s)",
    )
    parser.add_argument(
        "--rpc-timeout", type=positive_float, default=5.0, help="seconds per call (default %(default)s)"
    )
    parser.add_argument(
        "--drain-timeout",
        type=positive_float,
        default=60.0,
        help="seconds to wait for tasks to become terminal after the schedule (default %(default)s)",
    )
    parser.add_argument(
        "--max-lag-ms",
        type=positive_float,
        default=50.0,
        help="a send later than this behind its schedule counts as late; over 1%% late "
        "sends make the run invalid (default %(default)s)",
    )
    parser.add_argument(
        "--start-timeout",
        type=positive_float,
        default=60.0,
        help="seconds each process of the stack may take to become ready (default %(default)s)",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the stack's log folder")
    parser.set_defaults(run=run)


@dataclasses.dataclass
class _Plan:
    """The checked options."""

    workload: Any
    objectives: tuple[Any, ...]
    commands: Any
    json_path: Path | None
    html_path: Path | None
    history_path: Path | None


def _plan(args: argparse.Namespace) -> _Plan:
    """Check the options together; ValueError names the one at fault."""
    from pytest_taskqueue.load.limits import parse_slo
    from pytest_taskqueue.load.workload import Workload

    if args.warmup >= args.duration:
        raise ValueError(f"--warmup: {args.warmup:g} s leaves nothing of --duration {args.duration:g} s")
    if args.duplicates > 1:
        raise ValueError(f"--duplicates: a share in 0..1, got {args.duplicates:g}")
    if int(args.rate * args.duration) < 1:
        raise ValueError(f"--rate {args.rate:g} for --duration {args.duration:g} s schedules no task at all")
    if args.find_max and args.max_rate < args.rate:
        raise ValueError(f"--max-rate {args.max_rate:g} is below --rate {args.rate:g}")
    try:
        workload = Workload.from_options(
            args.mix, args.seed, f"load-{args.seed}-{uuid.uuid4().hex[:8]}", args.duplicates
        )
    except ValueError as problem:
        raise ValueError(f"--mix: {problem}") from None
    objectives: tuple[Any, ...] = ()
    if args.slo is not None:
        try:
            objectives = parse_slo(args.slo)
        except ValueError as problem:
            raise ValueError(f"--slo: {problem}") from None
    commands = implementation_commands(args)
    json_path = Path(args.report).expanduser().absolute() if args.report is not None else None
    html_path = Path(args.html).expanduser().absolute() if args.html is not None else None
    if html_path is None and json_path is not None:
        html_path = json_path.with_suffix(".html")
    history_path = Path(args.history).expanduser().absolute() if args.history is not None else None
    if history_path is None and json_path is not None and not args.find_max:
        history_path = json_path.with_name(json_path.stem + ".history.json")
    return _Plan(workload, objectives, commands, json_path, html_path, history_path)


@contextlib.contextmanager
def _bring_up(args: argparse.Namespace, commands: Any, log_dir: Path) -> Iterator[tuple[str, str, Any]]:
    """Yield (mode, target address, stack or None); everything started is stopped on exit.

    A harness-owned stack is chaos's, with ``LOAD_VISIBILITY_TIMEOUT_S`` for its queue."""
    if args.target is not None:
        yield "target", args.target, None
        return
    prefix = f"load-{uuid.uuid4().hex[:8]}"
    with harness_stack(
        commands,
        prefix=prefix,
        log_dir=log_dir,
        start_timeout=args.start_timeout,
        visibility_timeout=LOAD_VISIBILITY_TIMEOUT_S,
    ) as (mode, stack):
        yield mode, stack.direct_target, stack


def _wait_serving(target: str, timeout_s: float) -> None:
    """Health SERVING before the schedule starts (else InfraError with what was seen)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from taskqueue_proto import SERVICE_NAME

    deadline = time.monotonic() + timeout_s
    last = "no answer"
    pause = 0.05
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                answer = stub.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=2.0)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
            except grpc.RpcError as failure:
                last = failure.code().name
            if time.monotonic() + pause >= deadline:
                raise InfraError(f"{target} is not SERVING after {timeout_s:g} s (last answer: {last})")
            time.sleep(pause)  # probing with a deadline
            pause = min(pause * 2, 0.5)


def _settings(args: argparse.Namespace, plan: _Plan, rate: float, step: int | None) -> Any:
    from pytest_taskqueue.load.generator import default_processes
    from pytest_taskqueue.load.run import RunSettings

    workload = plan.workload
    if step is not None:
        workload = dataclasses.replace(workload, key_prefix=f"{workload.key_prefix}-s{step}")
    return RunSettings(
        rate=rate,
        duration_s=args.duration,
        warmup_s=args.warmup,
        workload=workload,
        connections=args.connections,
        processes=args.processes or default_processes(rate, os.cpu_count() or 1),
        rpc_timeout_s=args.rpc_timeout,
        drain_timeout_s=args.drain_timeout,
        max_lag_s=args.max_lag_ms / 1000,
    )


def run(args: argparse.Namespace) -> int:
    """``taskqueue-harness load``: see the module docstring."""
    from pytest_taskqueue.load.report import new_report, write_reports

    try:
        plan = _plan(args)
    except ValueError as problem:
        return error(str(problem), EXIT_USAGE)
    report = new_report(
        {
            "rate": args.rate,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "mix": plan.workload.describe(),
            "duplicates": args.duplicates,
            "connections": args.connections,
            "processes": args.processes,
            "seed": args.seed,
            "slo": args.slo,
            "find_max": args.find_max,
            "max_rate": args.max_rate if args.find_max else None,
            "rpc_timeout_s": args.rpc_timeout,
            "drain_timeout_s": args.drain_timeout,
            "max_lag_ms": args.max_lag_ms,
        }
    )
    log_dir = Path(tempfile.mkdtemp(prefix="taskqueue-load-logs-"))

    try:
        with handling_signals({signal.SIGINT: raise_interrupted, signal.SIGTERM: raise_interrupted}):
            code = _run(args, plan, report, log_dir)
    except InfraError as failure:
        report.update(error=str(failure), verdict="error")
        code = error(str(failure), EXIT_INFRA)
    except Interrupted as interrupted:
        report.update(error=f"interrupted by {interrupted}", verdict="interrupted")
        code = error(f"interrupted by {interrupted}; everything started was stopped", interrupted.exit_status)
    report["exit_code"] = code
    if code in (EXIT_OK, EXIT_SLO) and not args.keep_logs:
        import shutil

        shutil.rmtree(log_dir, ignore_errors=True)
    else:
        report["logs"] = str(log_dir)
    write_reports(report, plan.json_path, plan.html_path)
    for label, path in (("report", plan.json_path), ("html", plan.html_path)):
        if path is not None:
            print(f"  {label:<11} {path}", flush=True)
    return code


def _run(args: argparse.Namespace, plan: _Plan, report: dict[str, Any], log_dir: Path) -> int:
    from pytest_taskqueue.load.generator import GeneratorError
    from pytest_taskqueue.load.limits import Step, broken_lines, find_max, judge, unsustainable
    from pytest_taskqueue.load.report import anomalies_json
    from pytest_taskqueue.load.run import RunOutcome, run_load

    with _bring_up(args, plan.commands, log_dir) as (mode, target, stack):
        report.update(mode=mode, target=target)
        if stack is not None:
            report["stack"] = stack.as_dict()
        progress(f"{PROG} load: {mode} at {target}")
        _wait_serving(target, args.start_timeout)

        def one(rate: float, step: int | None) -> RunOutcome:
            try:
                return run_load(target, _settings(args, plan, rate, step), progress, {"step": step})
            except GeneratorError as failure:
                raise InfraError(f"the load generator failed: {failure}") from failure

        if args.find_max:
            outcomes: list[RunOutcome] = []

            def step(rate: float, number: int) -> Step:
                outcome = one(rate, number)
                outcomes.append(outcome)
                reasons = unsustainable(
                    outcome.summary, outcome.figures, plan.objectives, outcome.backlog_growing
                )
                rules = dict(collections.Counter(a.rule for a in outcome.anomalies))
                return Step(rate, reasons, outcome.summary, len(outcome.anomalies), rules)

            result = find_max(step, args.rate, args.max_rate, precision=args.precision, progress=progress)
            report["find_max"] = result.to_json()
            anomalies = [a for o in outcomes for a in o.anomalies]
            report["history"] = anomalies_json(
                anomalies,
                sum(len(o.history.operations) for o in outcomes),
                sum(len(o.history.tasks) for o in outcomes),
                None,
            )
            if plan.objectives and result.best is not None:
                best = outcomes[result.steps.index(result.best)]
                report["slo"] = {"spec": args.slo, "results": judge(plan.objectives, best.figures)}
            if anomalies:
                code, verdict = EXIT_ANOMALIES, "anomalies"
            elif result.best is None:
                code, verdict = EXIT_SLO, "no_sustainable_rate"
            else:
                code, verdict = EXIT_OK, "ok"
            report["verdict"] = verdict
            _print_find_max(report, anomalies)
            return code

        outcome = one(args.rate, None)
        report["run"] = outcome.summary
        if plan.history_path is not None:
            plan.history_path.parent.mkdir(parents=True, exist_ok=True)
            outcome.history.save(plan.history_path)
        report["history"] = anomalies_json(
            outcome.anomalies, len(outcome.history.operations), len(outcome.history.tasks), plan.history_path
        )
        broken: list[str] = []
        if plan.objectives:
            results = judge(plan.objectives, outcome.figures)
            report["slo"] = {"spec": args.slo, "results": results}
            broken = broken_lines(results)
        if outcome.anomalies:
            code, verdict = EXIT_ANOMALIES, "anomalies"
        elif not outcome.valid:
            code, verdict = EXIT_INVALID, "invalid"
        elif broken:
            code, verdict = EXIT_SLO, "slo_broken"
        else:
            code, verdict = EXIT_OK, "ok"
        report["verdict"] = verdict
        _print_run(report, outcome, broken)
        return code


def _latency_line(name: str, s: dict[str, Any]) -> str:
    if not s["count"]:
        return f"  {name:<11} no values"
    return (
        f"  {name:<11} p50 {s['p50']:.2f}  p90 {s['p90']:.2f}  p99 {s['p99']:.2f}  p99.9 {s['p99.9']:.2f}  "
        f"max {s['max']:.2f} ms  ({s['count']} values)"
    )


def _print_run(report: dict[str, Any], outcome: Any, broken: list[str]) -> None:
    run = report["run"]
    generator = run["generator"]
    lines = [
        f"{PROG} load: {run['offered_rate']:g} tasks/s offered for {report['config']['duration_s']:g} s "
        f"({report['mode']} at {report['target']})",
        f"  achieved    {run['achieved_rate']:g} tasks/s acknowledged; {run['submits']['sent']} submits, "
        f"errors {100 * run['submits']['error_fraction']:.3f}% "
        f"{run['submits']['errors_by_code'] or ''}".rstrip(),
        _latency_line("submit", run["latency_ms"]["submit"]),
        _latency_line("end-to-end", run["latency_ms"]["e2e"]),
        f"  backlog     max {run['backlog']['max']}, at the end of the window {run['backlog']['at_end']}"
        + (" (growing)" if run["backlog"]["growing"] else ""),
        f"  tasks       {run['tasks']['acknowledged']} acknowledged: "
        + ", ".join(f"{k} {v}" for k, v in run["tasks"]["by_status"].items()),
        "  generator   "
        + ("kept its schedule" if generator["valid"] else "INVALID RUN: " + generator["reason"])
        + f" (lag p99 {generator['lag_p99_ms']} ms, max {generator['max_lag_ms']} ms)",
    ]
    if not run["clock_check"]["ok"]:
        clock = run["clock_check"]
        lines.append(
            f"  clocks      {clock['outside']} of {clock['checked']} SUBMITTED times outside the "
            "client's window "
            f"(up to {clock['max_offset_ms']} ms): end-to-end latencies are skewed by as much"
        )
    lines.append(f"  anomalies   {len(outcome.anomalies)}")
    lines += [f"    {a.line()}" for a in outcome.anomalies[:20]]
    if report["history"]["path"]:
        lines.append(f"  history     {report['history']['path']}")
    lines += [f"  {line}" for line in broken]
    lines.append(f"{PROG} load: {report['verdict'].upper()}")
    print("\n".join(lines), flush=True)


def _print_find_max(report: dict[str, Any], anomalies: list[Any]) -> None:
    result = report["find_max"]
    lines = [f"{PROG} load --find-max: {report['mode']} at {report['target']}"]
    for step in result["steps"]:
        lines.append(
            f"  {step['rate']:>9g} tasks/s  {'ok ' if step['sustainable'] else 'NO '} "
            f"achieved {step['achieved_rate']:g}, "
            f"submit p99 {step['submit_p99_ms']} ms, e2e p99 {step['e2e_p99_ms']} ms"
            + (f"  ({'; '.join(step['reasons'])})" if step["reasons"] else "")
        )
    best = result["highest_sustainable_rate"]
    if best is not None:
        at = result["at"]
        lines.append(f"  highest sustainable rate: {best:g} tasks/s")
        lines.append(_latency_line("submit", at["latency_ms"]["submit"]))
        lines.append(_latency_line("end-to-end", at["latency_ms"]["e2e"]))
    else:
        lines.append("  no sustainable rate found")
    lines.append(f"  limited by  {result['limited_by']}")
    lines.append(f"  anomalies   {len(anomalies)}")
    lines += [f"    {a.line()}" for a in anomalies[:20]]
    lines.append(f"{PROG} load: {report['verdict'].upper()}")
    print("\n".join(lines), flush=True)
