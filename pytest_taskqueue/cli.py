"""``taskqueue-harness``: the toolkit's command line.

Subcommands (argparse subparsers; each module-level ``_register_*`` function adds one):

- ``up``: start the reference stack (ElasticMQ, moto, Toxiproxy, the reference API server and a
  worker; ``--backend docker``: the backends as containers, docs/docker.md), print its endpoints
  (``--json``: one JSON line) and run until SIGINT/SIGTERM, then stop everything. A start that
  fails, or a process that dies while it runs, stops the rest and prints one line
  ``taskqueue-harness: error: ...`` naming what failed and its log, with exit status 1.

- ``install``: fetch ElasticMQ's jars and build Toxiproxy into the cache, and start ElasticMQ once
  to write its class-data-sharing archive (``make backends`` runs it).

- ``chaos``: a seeded chaos run and its history check; ``check``: re-check a saved history
  (``pytest_taskqueue._chaos``; exit 0 clean, 1 anomalies, 2 usage, 3 infrastructure).

To add a subcommand: write ``_register_<name>(subparsers)`` that adds its
parser and sets ``handler=<function(args) -> int>``, and append it to ``SUBCOMMANDS``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

__all__ = ["SUBCOMMANDS", "build_parser", "main"]

PROG = "taskqueue-harness"

Handler = Callable[[argparse.Namespace], int]
Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be in 0..65535 (0 picks a free port), got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


# ------------------------------------------------------------------------------------------- up


class _StartInterrupted(BaseException):
    """SIGINT/SIGTERM arrived while the stack was starting (unwinds the start, which cleans up)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _register_up(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "up",
        help="start the reference stack and run until Ctrl-C",
        description=(
            "Start ElasticMQ (SQS), moto (DynamoDB), Toxiproxy, the reference API server and a worker "
            "on 127.0.0.1, print the endpoints and run until SIGINT/SIGTERM, then stop everything."
        ),
    )
    parser.add_argument(
        "--port", type=_port, default=0, help="API port (through Toxiproxy); 0 picks a free one (default)"
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON line with the endpoints once ready"
    )
    parser.add_argument(
        "--prefix", default="taskqueue", help="name of the table and queues (default %(default)s)"
    )
    parser.add_argument(
        "--log-dir", type=Path, default=None, help="folder for the process logs (default: a temporary one)"
    )
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the temporary log folder after a clean stop"
    )
    parser.add_argument(
        "--backend",
        "--taskqueue-backend",
        dest="backend",
        choices=("local", "docker"),
        default="local",
        help="run the backends as local processes (default) or as Docker containers (docs/docker.md)",
    )
    from pytest_taskqueue import _docker

    for role, default in (
        ("dynamodb", _docker.DEFAULT_DYNAMODB_IMAGE),
        ("elasticmq", _docker.DEFAULT_ELASTICMQ_IMAGE),
        ("toxiproxy", _docker.DEFAULT_TOXIPROXY_IMAGE),
    ):
        parser.add_argument(
            f"--{role}-image",
            f"--taskqueue-{role}-image",
            dest=f"{role}_image",
            metavar="IMAGE",
            default=None,
            help=f"with --backend=docker: the {role} image (default {default})",
        )
    parser.add_argument(
        "--start-timeout",
        type=_positive_float,
        default=60.0,
        help="seconds each process may take to become ready (default %(default)s)",
    )
    parser.set_defaults(handler=_run_up)


def _error(message: str) -> int:
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr, flush=True)
    return 1


def _describe_failure(error: BaseException, log_dir: Path | None) -> str:
    from pytest_taskqueue._procs import BackendStartError

    if isinstance(error, BackendStartError):
        return error.summary
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if first.startswith("taskqueue: "):  # already one line for the user (e.g. no Docker daemon)
        return first.removeprefix("taskqueue: ")
    where = f" (logs: {log_dir})" if log_dir is not None else ""
    return f"{type(error).__name__}: {first}{where}"


def _print_human(stack: Any, keep_logs: bool) -> None:
    info = stack.as_dict()
    lines = [
        f"{PROG}: reference stack ready in {stack.timings.get('total', 0.0):.1f} s",
        f"  target      {info['target']}  (gRPC API through Toxiproxy; direct: {info['direct_target']})",
        f"  dynamodb    {info['dynamodb']}  ({'moto' if info['backend'] == 'local' else 'container'})",
        f"  sqs         {info['sqs']}  (ElasticMQ{'' if info['backend'] == 'local' else ', container'})",
        f"  toxiproxy   {info['toxiproxy']}  (proxies: {', '.join(info['proxies'])})",
        f"  table       {info['table']}",
        f"  queues      {info['queue']}, dead letters: {info['dead_letter_queue']}",
        f"  region      {info['region']}",
        f"  logs        {info['log_dir']}{'' if keep_logs else '  (removed at exit unless --keep-logs)'}",
        "Press Ctrl-C to stop.",
    ]
    print("\n".join(lines), flush=True)


def _run_up(args: argparse.Namespace) -> int:
    from pytest_taskqueue._stack import ReferenceStack, StackConfig

    try:
        config = StackConfig(
            prefix=args.prefix,
            api_port=args.port,
            log_dir=args.log_dir,
            keep_logs=bool(args.keep_logs or args.log_dir is not None),
            start_timeout=args.start_timeout,
            backend=args.backend,
            dynamodb_image=args.dynamodb_image,
            elasticmq_image=args.elasticmq_image,
            toxiproxy_image=args.toxiproxy_image,
        )
    except ValueError as error:
        return _error(f"--prefix: {error}")

    wake = threading.Event()
    received: list[int] = []
    starting = True

    def on_stop_signal(signum: int, frame: FrameType | None) -> None:
        first = not received
        received.append(signum)
        wake.set()
        if first and starting:
            raise _StartInterrupted(signum)

    def on_child_exit(signum: int, frame: FrameType | None) -> None:
        wake.set()

    previous = {
        signum: signal.signal(signum, handler)
        for signum, handler in (
            (signal.SIGINT, on_stop_signal),
            (signal.SIGTERM, on_stop_signal),
            (signal.SIGHUP, on_stop_signal),
            (signal.SIGCHLD, on_child_exit),
        )
    }
    stack = ReferenceStack(config)
    try:
        try:
            stack.start()
        except Exception as error:
            return _error(_describe_failure(error, stack.log_dir))
        starting = False
        if received:  # a signal that came just as the start finished
            return 0
        if args.json:
            print(json.dumps(stack.as_dict()), flush=True)
        else:
            _print_human(stack, config.keep_logs)
        while not received:
            wake.wait(5.0)  # woken by SIGINT/SIGTERM/SIGCHLD; the timeout is only a safety net
            wake.clear()
            crashed = stack.crashed()
            if crashed is not None:
                stack.stop(keep_logs=True)
                return _error(
                    f"{crashed.name} exited unexpectedly with code {crashed.returncode} "
                    f"(command: {crashed.command_line} | log: {crashed.log_path})"
                )
        if not args.json:
            print(f"{PROG}: stopping...", file=sys.stderr, flush=True)
        return 0
    except _StartInterrupted as interrupted:
        return 128 + interrupted.signum
    finally:
        starting = False
        stack.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# -------------------------------------------------------------------------------------- install


def _register_install(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "install",
        help="fetch and build the local backends into the cache (done on first use otherwise)",
        description=(
            "Resolve ElasticMQ's jars with Maven, build Toxiproxy with go install, and start ElasticMQ "
            "once so its class-data-sharing archive exists: later stacks start from the cache."
        ),
    )
    parser.add_argument("--no-warm", action="store_true", help="skip the one ElasticMQ start")
    parser.set_defaults(handler=_install)


def _install(args: argparse.Namespace) -> int:
    import tempfile

    from pytest_taskqueue._backends import ElasticMQ, ensure_elasticmq, ensure_toxiproxy_binary
    from pytest_taskqueue._procs import BackendStartError

    try:
        classpath = ensure_elasticmq()
        toxiproxy = ensure_toxiproxy_binary()
        if not args.no_warm:
            with tempfile.TemporaryDirectory(prefix="taskqueue-install-") as logs:
                ElasticMQ(log_dir=Path(logs)).start().stop()
    except BackendStartError as error:
        return _error(error.summary)
    print(f"{PROG}: ElasticMQ classpath {classpath}", flush=True)
    print(f"{PROG}: Toxiproxy {toxiproxy}", flush=True)
    return 0


# ---------------------------------------------------------------------------------- registration


def _register_chaos(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from pytest_taskqueue._chaos import register_chaos  # the chaos code loads only when asked for

    register_chaos(subparsers)


def _register_check(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from pytest_taskqueue._chaos import register_check

    register_check(subparsers)


SUBCOMMANDS: list[Register] = [
    _register_up,
    _register_install,
    _register_chaos,
    _register_check,
]
"""The subcommand registrations, in the order ``--help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    """The ``taskqueue-harness`` parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="pytest-taskqueue's harness: run the reference stack and related tools.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in SUBCOMMANDS:
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``taskqueue-harness``; returns the exit status (2 for a usage error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error already printed by argparse
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
