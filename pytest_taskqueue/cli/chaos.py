"""``taskqueue-harness chaos`` and ``check``: a seeded chaos run from the command line, and the
check of a saved history.

``taskqueue-harness chaos --seed N --duration SECONDS [--target HOST:PORT | --target-cmd CMD
[--worker-cmd CMD]] [--report PATH]`` brings up what the run needs, then runs
``fault_injection.chaos.run_and_check`` (a seeded fault schedule under a mixed workload, health
checked before and after each fault, then the history checker):

- no target: the reference stack (every link through its own Toxiproxy proxy, all five faulted);
- ``--target-cmd``: the implementation, run by the harness as in pytest (``Stack``);
- ``--target``: an implementation that runs already; a Toxiproxy of its own is put in front of
  it, so only the client -> API link (``api``) can be faulted, as the output says.

When the harness owns the processes (the reference stack, ``--target-cmd``) the schedule also
kills (SIGKILL, then a restart) and pauses (SIGSTOP/SIGCONT) the API server and the worker
(``--no-process-faults`` turns that off); never with ``--target``. Links nothing uses (the worker
links without ``--worker-cmd``) are not faulted and are listed as skipped. Beside the JSON report
(or the history) goes a self-contained HTML timeline of the run (``--timeline``).

The history is saved (beside the report: ``PATH`` with ``.history.json``) and the JSON report's
``history`` object holds ``operations`` and ``anomalies`` (``Anomaly.to_json``). Exit status:
0 no anomaly, 1 anomalies, 2 a usage error, 3 the infrastructure failed (a stack that cannot start,
a target that is not SERVING: one line, reported apart from anomalies), 128 + signal number when
SIGINT/SIGTERM interrupted it (130, 143) after everything started was stopped.

``taskqueue-harness check HISTORY`` checks a saved history again, offline (exit 0 or 1; 2 when it
cannot be read).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from fault_injection.chaos import ChaosConfig, ChaosOutcome, run_and_check
from fault_injection.history import History, check, render_timeline
from pytest_taskqueue._harness_chaos import CrashableProcess
from pytest_taskqueue.cli._common import (
    EXIT_ANOMALIES,
    EXIT_INFRA,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    InfraError,
    Interrupted,
    error,
    first_line,
    fraction,
    handling_signals,
    harness_stack,
    host_port,
    implementation_commands,
    non_negative_int,
    positive_float,
    progress,
    raise_interrupted,
)

if TYPE_CHECKING:
    from fault_injection import Toxiproxy
    from pytest_taskqueue._implementation import ImplementationCommands
    from pytest_taskqueue._procs import ManagedProcess
    from pytest_taskqueue._stack import Stack

__all__ = ["REPORT_FORMAT", "add_parser", "run", "run_check"]

REPORT_FORMAT: Final = "pytest-taskqueue-chaos-report/1"
"""Value of the ``format`` member of a chaos report."""

API_ONLY_NOTE: Final = (
    "only the client -> API link (api) can be faulted: the target runs outside the harness, so its "
    "backend links are not proxied (use --target-cmd to fault them too)"
)


# ------------------------------------------------------------------------------------- arguments


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``chaos``, and ``check`` (which re-checks the histories ``chaos`` saves)."""
    defaults = ChaosConfig()
    parser = subparsers.add_parser(
        "chaos",
        help="a seeded chaos run (faults under a mixed workload), then the history checker",
        description=(
            "Run a mixed workload of every conformance task type while a seeded schedule injects "
            "network faults through Toxiproxy (the same seed gives the same schedule), check the "
            "target's health before and after each fault, then check the recorded history against "
            "the contract. Without --target/--target-cmd the reference stack is started. Exit 0 "
            "without anomalies, 1 with anomalies, 2 on a usage error, 3 when the stack or target "
            "could not be brought up."
        ),
    )
    parser.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed of the schedule and workload (default 0)"
    )
    parser.add_argument(
        "--duration", type=positive_float, default=60.0, help="seconds of workload under faults (default 60)"
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--target",
        type=host_port,
        metavar="HOST:PORT",
        help="an implementation that runs already: only its client -> API link is faulted",
    )
    where.add_argument(
        "--target-cmd",
        metavar="COMMAND",
        help="run this implementation against harness-owned backends (placeholders as "
        "--taskqueue-target-cmd: {port} {dynamodb} {sqs} {region} {table} {queue} {dlq})",
    )
    parser.add_argument(
        "--worker-cmd", metavar="COMMAND", help="its separate worker (with --target-cmd; no {port})"
    )
    parser.add_argument("--report", type=Path, help="write the JSON report here")
    parser.add_argument(
        "--history",
        type=Path,
        help="save the history here (default: beside the report, PATH with .history.json; "
        "else in a temporary folder); the path is printed",
    )
    parser.add_argument(
        "--links",
        help="comma-separated links to fault (default: every link that can be: api, server_dynamodb, "
        "server_sqs, worker_dynamodb, worker_sqs; only api with --target)",
    )
    parser.add_argument(
        "--clients", type=int, default=defaults.clients, help="concurrent clients (default %(default)s)"
    )
    parser.add_argument(
        "--rate",
        type=positive_float,
        default=defaults.ops_per_second,
        help="target operations per second, all clients together (default %(default)s)",
    )
    parser.add_argument(
        "--health-timeout",
        type=positive_float,
        default=defaults.health_timeout_s,
        help="seconds the target may take to report SERVING, at the start and after each fault "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--start-timeout",
        type=positive_float,
        default=60.0,
        help="seconds each process may take to become ready (default %(default)s)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=positive_float,
        help="seconds to wait, after healing, for every task to be terminal before giving up and "
        "reporting the rest as lost (default: 30 + half of --duration)",
    )
    parser.add_argument(
        "--min-ack-fraction",
        type=fraction,
        default=defaults.min_ack_fraction,
        help="liveness: the share of operations made while no fault was active that must get an "
        "answer (default %(default)s)",
    )
    parser.add_argument(
        "--no-process-faults",
        action="store_true",
        help="do not kill or pause the API server and worker (they are only when the harness owns them)",
    )
    parser.add_argument(
        "--timeline",
        type=Path,
        help="write the HTML timeline here (default: beside the report, PATH with .html; else beside "
        "the history)",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the stack's log folder")
    parser.set_defaults(run=run)
    check = subparsers.add_parser(
        "check",
        help="check a saved chaos history against the contract again (offline)",
        description="Check a history saved by `taskqueue-harness chaos` (or "
        "fault_injection.history.History.save). Exit 0 without anomalies, 1 with, 2 if unreadable.",
    )
    check.add_argument("history", type=Path, metavar="HISTORY", help="the saved history (JSON)")
    check.add_argument("--json", action="store_true", help="print the anomalies as one JSON object")
    check.add_argument(
        "--timeline",
        type=Path,
        metavar="PATH",
        help="also write the run's HTML timeline (with its anomalies) here",
    )
    check.set_defaults(run=run_check)


# ------------------------------------------------------------------------------------------ chaos


@dataclass
class _Setup:
    """Where the run goes: the gRPC target, the Toxiproxy client, the links that can be faulted."""

    mode: str
    target: str
    toxiproxy: Toxiproxy
    links: tuple[str, ...]
    note: str = ""
    stack: Stack | None = None
    details: dict[str, Any] = field(default_factory=dict)
    processes: dict[str, ManagedProcess] = field(default_factory=dict)
    """The processes the harness owns, by the name the schedule uses (``server``, ``worker``)."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Links that are not faulted, and why."""


def _usage_checks(args: argparse.Namespace) -> tuple[ImplementationCommands | None, tuple[str, ...] | None]:
    """The implementation commands (or None) and the requested links; ValueError names the option."""
    commands = implementation_commands(args)
    if args.clients < 1:
        raise ValueError(f"--clients: must be at least 1, got {args.clients}")
    links = None
    if args.links is not None:
        links = tuple(name.strip() for name in args.links.split(",") if name.strip())
        if not links:
            raise ValueError("--links: name at least one link")
    return commands, links


@contextlib.contextmanager
def _bring_up(
    args: argparse.Namespace, commands: ImplementationCommands | None, log_dir: Path
) -> Iterator[_Setup]:
    """Start what the run needs (stopped on every exit path); failures are ``InfraError``."""
    from pytest_taskqueue._stack import PROXY_NAMES

    if args.target is not None:
        with _proxied_target(args.target, log_dir) as setup:
            yield setup
        return
    prefix = f"chaos-{args.seed}-{uuid.uuid4().hex[:6]}"
    with harness_stack(commands, prefix=prefix, log_dir=log_dir, start_timeout=args.start_timeout) as (
        mode,
        stack,
    ):
        processes = {"server": stack.server}
        skipped: dict[str, str] = {}
        if commands is None or commands.worker is not None:
            processes["worker"] = stack.worker
        else:
            reason = "nothing uses it: no --worker-cmd, the implementation's worker runs in its server"
            skipped = {name: reason for name in PROXY_NAMES if name.startswith("worker_")}
        yield _Setup(
            mode=mode,
            target=stack.target,
            toxiproxy=stack.toxiproxy_client(),
            links=tuple(name for name in PROXY_NAMES if name not in skipped),
            stack=stack,
            details={"stack": stack.as_dict()},
            processes=processes,
            skipped=skipped,
        )


@contextlib.contextmanager
def _proxied_target(target: str, log_dir: Path) -> Iterator[_Setup]:
    """A Toxiproxy of its own with one proxy ``api`` in front of an external target."""
    from fault_injection import Toxiproxy, ToxiproxyError
    from pytest_taskqueue._backends import ToxiproxyServer

    with contextlib.ExitStack() as running:
        try:
            server = ToxiproxyServer(log_dir=log_dir, progress=None, log_level="warn")
            running.enter_context(server)
        except (OSError, RuntimeError) as failure:  # install, start: one line, the log is in log_dir
            raise InfraError(f"Toxiproxy could not be started: {first_line(failure)}") from failure
        toxiproxy = Toxiproxy(server.endpoint)
        try:
            api = toxiproxy.create_proxy("api", "127.0.0.1:0", target)
        except ToxiproxyError as failure:
            raise InfraError(f"cannot put a proxy in front of {target}: {failure}") from failure
        yield _Setup(
            mode="target",
            target=api.listen,
            toxiproxy=toxiproxy,
            links=("api",),
            note=API_ONLY_NOTE,
            details={"target": target, "api_proxy": api.listen},
            skipped={
                name: "not proxied: the target runs outside the harness"
                for name in ("server_dynamodb", "server_sqs", "worker_dynamodb", "worker_sqs")
            },
        )


def _history_path(args: argparse.Namespace) -> Path:
    if args.history is not None:
        return Path(args.history).expanduser().absolute()
    if args.report is not None:
        report = Path(args.report).expanduser().absolute()
        return report.with_name(report.stem + ".history.json")
    return Path(tempfile.mkdtemp(prefix="taskqueue-chaos-")) / "history.json"


def _timeline_path(args: argparse.Namespace, report_path: Path | None, history_path: Path) -> Path:
    if args.timeline is not None:
        return Path(args.timeline).expanduser().absolute()
    beside = report_path if report_path is not None else history_path
    return beside.with_name(beside.name.removesuffix(".json").removesuffix(".history") + ".html")


def _write_report(path: Path | None, report: dict[str, Any]) -> None:
    if path is None:
        return
    path = Path(path).expanduser().absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def run(args: argparse.Namespace) -> int:
    """``taskqueue-harness chaos``: bring up, run, check, report; see the module docstring."""
    try:
        commands, wanted_links = _usage_checks(args)
    except ValueError as invalid:
        return error(str(invalid), EXIT_USAGE)
    report_path = Path(args.report).expanduser().absolute() if args.report is not None else None
    history_path = _history_path(args)
    log_dir = Path(tempfile.mkdtemp(prefix="taskqueue-chaos-logs-"))
    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "generated_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "seed": args.seed,
        "duration_s": args.duration,
        "verdict": "error",
        "error": "",
        "history": None,
        "logs": str(log_dir),
    }

    with handling_signals({signal.SIGINT: raise_interrupted, signal.SIGTERM: raise_interrupted}):
        return _chaos(args, commands, wanted_links, report, report_path, history_path, log_dir)


def _chaos(
    args: argparse.Namespace,
    commands: ImplementationCommands | None,
    wanted_links: tuple[str, ...] | None,
    report: dict[str, Any],
    report_path: Path | None,
    history_path: Path,
    log_dir: Path,
) -> int:
    """The run itself, under ``run``'s signal handlers."""
    began = time.monotonic()
    try:
        with _bring_up(args, commands, log_dir) as setup:
            links = wanted_links or setup.links
            unknown = [name for name in links if name not in setup.links]
            if unknown:
                return error(
                    f"--links: {', '.join(unknown)} cannot be faulted here "
                    f"(available: {', '.join(setup.links)})",
                    EXIT_USAGE,
                )
            report.update(mode=setup.mode, target=setup.target, links=list(links), note=setup.note)
            report.update(setup.details)
            progress(f"{PROG} chaos: {setup.mode} at {setup.target}; faulting {', '.join(links)}")
            if setup.note:
                progress(f"{PROG} chaos: note: {setup.note}")
            processes = (
                {}
                if args.no_process_faults
                else {n: CrashableProcess(p, progress) for n, p in setup.processes.items()}
            )
            skipped = dict(setup.skipped)
            skipped.update({name: "left out by --links" for name in setup.links if name not in links})
            report.update(process_faults=sorted(processes), skipped_links=skipped)
            if processes:
                names = ", ".join(processes)
                progress(f"{PROG} chaos: process faults (SIGKILL+restart, SIGSTOP/SIGCONT) on {names}")
            else:
                why = "--no-process-faults" if args.no_process_faults else "the harness does not own them"
                progress(f"{PROG} chaos: no process faults ({why})")
            for name, reason in skipped.items():
                progress(f"{PROG} chaos: link {name} skipped: {reason}")
            config = ChaosConfig(
                seed=args.seed,
                duration_s=args.duration,
                fault_proxies=tuple(links),
                clients=args.clients,
                ops_per_second=args.rate,
                health_timeout_s=args.health_timeout,
                drain_timeout_s=args.drain_timeout,
                min_ack_fraction=args.min_ack_fraction,
                fault_processes=tuple(sorted(processes)),
                skipped_links=skipped,
            )
            try:
                outcome = asyncio.run(
                    run_and_check(
                        setup.target,
                        setup.toxiproxy,
                        config,
                        history_path=history_path,
                        progress=progress,
                        processes=processes,
                    )
                )
            except Exception as failure:
                raise InfraError(
                    f"the chaos run could not be carried out: {first_line(failure)}"
                ) from failure
            crashed = setup.stack.crashed() if setup.stack is not None else None
    except InfraError as failure:
        report["error"] = str(failure)
        _write_report(report_path, report)
        return error(str(failure), EXIT_INFRA)
    except Interrupted as interrupted:
        report.update(verdict="interrupted", error=f"interrupted by {interrupted}")
        _write_report(report_path, report)
        error(f"interrupted by {interrupted}; everything started was stopped")
        return interrupted.exit_status
    result = outcome.result
    timeline = _timeline_path(args, report_path, history_path)
    timeline.parent.mkdir(parents=True, exist_ok=True)
    timeline.write_text(render_timeline(result.history, outcome.anomalies), encoding="utf-8")
    report.update(
        verdict="anomalies" if outcome.anomalies else "ok",
        wall_s=round(time.monotonic() - began, 1),
        faults={
            "scheduled": len(result.schedule),
            "applied": list(result.applied),
            "process": [fault.describe() for fault in result.schedule if fault.process],
        },
        history=outcome.history_summary(),
        timeline=str(timeline),
    )
    if crashed is not None:
        report["crashed"] = f"{crashed.name} exited with code {crashed.returncode} (log: {crashed.log_path})"
    if report["verdict"] == "ok" and not args.keep_logs and crashed is None:
        shutil.rmtree(log_dir, ignore_errors=True)  # kept when something went wrong, or asked for
        report["logs"] = None
    _write_report(report_path, report)
    _print_summary(report, outcome, report_path)
    return EXIT_ANOMALIES if outcome.anomalies else EXIT_OK


def _print_summary(report: dict[str, Any], outcome: ChaosOutcome, report_path: Path | None) -> None:
    history = report["history"]
    kinds = history["operations_by_kind"]
    lines = [
        f"{PROG} chaos: seed {report['seed']}, {report['duration_s']:g} s, "
        f"{report['mode']} at {report['target']}",
        f"  links       {', '.join(report['links'])}" + (f"  ({report['note']})" if report["note"] else ""),
        f"  operations  {history['operations']} ("
        + ", ".join(f"{kind} {count}" for kind, count in kinds.items())
        + ")",
        f"  tasks       {history['tasks']} (not terminal after draining: {len(history['undrained'])})",
        f"  faults      {len(report['faults']['applied'])} applied of "
        f"{report['faults']['scheduled']} scheduled; health checks ok "
        f"{history['health_checks']['ok']}, failed {history['health_checks']['failed']}",
        f"  processes   {', '.join(report['process_faults']) or 'not faulted'}"
        f" ({len(report['faults']['process'])} kills/pauses)",
        f"  skipped     {', '.join(report['skipped_links']) or 'none'}",
        f"  liveness    {_liveness_line(history['liveness'])}",
        f"  anomalies   {len(outcome.anomalies)}",
    ]
    lines += [f"    {line}" for line in outcome.anomaly_lines()]
    lines += [f"  lost        {line}" for line in history["lost"]]
    lines.append(f"  history     {history['path']}  (re-check: {PROG} check {history['path']})")
    lines.append(f"  timeline    {report['timeline']}")
    if report_path is not None:
        lines.append(f"  report      {report_path}")
    if report.get("crashed"):
        lines.append(f"  note        {report['crashed']}")
    verdict = (
        f"ANOMALIES ({len(outcome.anomalies)}: "
        + ", ".join(f"{rule} x{n}" for rule, n in history["anomalies_by_rule"].items())
        + ")"
        if outcome.anomalies
        else "OK (no anomalies)"
    )
    lines.append(f"{PROG} chaos: {verdict}")
    print("\n".join(lines), flush=True)


def _liveness_line(live: dict[str, Any]) -> str:
    fraction = live["fraction_fault_free"]
    shown = f"{fraction:.0%}" if fraction is not None else "n/a"
    return (
        f"{live['acknowledged_fault_free']}/{live['offered_fault_free']} answered while no fault was active "
        f"({shown}, at least {live['min_ack_fraction']:.0%}); final submit {live['final_submit']}; "
        f"unknown submits {live['unknown_submits']}: {live['resolved_existing']} existed, "
        f"{live['resolved_created_by_retry']} created by the retry, {live['resolved_rejected']} rejected, "
        f"{live['unresolved']} unresolved"
    )


# ------------------------------------------------------------------------------------------ check


def run_check(args: argparse.Namespace) -> int:
    """``taskqueue-harness check HISTORY``: the checker on a saved history."""
    try:
        history = History.load(args.history)
    except (OSError, ValueError, KeyError, TypeError) as unreadable:
        return error(f"cannot read the history {args.history}: {first_line(unreadable)}", EXIT_USAGE)
    anomalies = check(history)
    if args.timeline is not None:
        timeline = Path(args.timeline).expanduser().absolute()
        timeline.parent.mkdir(parents=True, exist_ok=True)
        timeline.write_text(render_timeline(history, anomalies), encoding="utf-8")
    if args.json:
        print(
            json.dumps(
                {
                    "history": str(args.history),
                    "operations": len(history.operations),
                    "tasks": len(history.tasks),
                    "anomalies": [anomaly.to_json() for anomaly in anomalies],
                }
            )
        )
    else:
        print(
            f"{PROG} check: {args.history}: {len(history.operations)} operations, "
            f"{len(history.tasks)} tasks, {len(anomalies)} anomalies"
        )
        for anomaly in anomalies:
            print(f"  {anomaly.line()}")
    return EXIT_ANOMALIES if anomalies else EXIT_OK
