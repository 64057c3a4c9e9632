"""``taskqueue-harness up``: run the reference stack until Ctrl-C.

Starts ElasticMQ, moto, Toxiproxy, the reference API server and a worker (``--backend docker``:
the backends as containers, docs/docker.md), prints the endpoints (``--json``: one JSON line) and
runs until SIGINT/SIGTERM/SIGHUP, then stops everything: exit 0. A start that fails, or a process
that dies while it runs, stops the rest and prints one line ``taskqueue-harness: error: ...``
naming what failed and its log: exit 1. A signal during the start: exit 128 + signal.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from pytest_taskqueue._images import DEFAULT_IMAGES
from pytest_taskqueue.cli._common import (
    EXIT_OK,
    PROG,
    Interrupted,
    describe_failure,
    error,
    handling_signals,
    port,
    positive_float,
)

if TYPE_CHECKING:
    from pytest_taskqueue._stack import Stack

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``up``."""
    parser = subparsers.add_parser(
        "up",
        help="start the reference stack and run until Ctrl-C",
        description=(
            "Start ElasticMQ (SQS), moto (DynamoDB), Toxiproxy, the reference API server and a worker "
            "on 127.0.0.1, print the endpoints and run until SIGINT/SIGTERM, then stop everything."
        ),
    )
    parser.add_argument(
        "--port", type=port, default=0, help="API port (through Toxiproxy); 0 picks a free one (default)"
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
    for role, default in DEFAULT_IMAGES:
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
        type=positive_float,
        default=60.0,
        help="seconds each process may take to become ready (default %(default)s)",
    )
    parser.set_defaults(run=run)


def _print_human(stack: Stack, keep_logs: bool) -> None:
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


def run(args: argparse.Namespace) -> int:
    """Start the stack, print it, wait for a stop signal or a crash; see the module docstring."""
    from pytest_taskqueue._stack import StackConfig, reference_stack

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
    except ValueError as invalid:
        return error(f"--prefix: {invalid}")

    wake = threading.Event()
    received: list[int] = []
    starting = True

    def on_stop_signal(signum: int, frame: FrameType | None) -> None:
        first = not received
        received.append(signum)
        wake.set()
        if first and starting:
            raise Interrupted(signum)  # unwinds the start, which cleans up

    def on_child_exit(signum: int, frame: FrameType | None) -> None:
        wake.set()

    handlers = {
        signal.SIGINT: on_stop_signal,
        signal.SIGTERM: on_stop_signal,
        signal.SIGHUP: on_stop_signal,
        signal.SIGCHLD: on_child_exit,
    }
    with handling_signals(handlers):
        stack = reference_stack(config)
        try:
            try:
                stack.start()
            except Exception as failure:
                return error(describe_failure(failure, stack.log_dir))
            starting = False
            if received:  # a signal that came just as the start finished
                return EXIT_OK
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
                    return error(
                        f"{crashed.name} exited unexpectedly with code {crashed.returncode} "
                        f"(command: {crashed.command_line} | log: {crashed.log_path})"
                    )
            if not args.json:
                print(f"{PROG}: stopping...", file=sys.stderr, flush=True)
            return EXIT_OK
        except Interrupted as interrupted:
            return interrupted.exit_status
        finally:
            starting = False
            stack.stop()
