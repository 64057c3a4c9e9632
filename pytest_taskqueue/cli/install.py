"""``taskqueue-harness install``: fetch and build the local backends into the cache.

Resolves ElasticMQ's jars with Maven, builds Toxiproxy with ``go install`` and starts ElasticMQ
once to write its class-data-sharing archive (``make backends`` runs it); otherwise the first
stack does all this. Exit 0, or 1 with one error line naming what failed.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from pytest_taskqueue.cli._common import EXIT_OK, PROG, error

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``install``."""
    parser = subparsers.add_parser(
        "install",
        help="fetch and build the local backends into the cache (done on first use otherwise)",
        description=(
            "Resolve ElasticMQ's jars with Maven, build Toxiproxy with go install, and start ElasticMQ "
            "once so its class-data-sharing archive exists: later stacks start from the cache."
        ),
    )
    parser.add_argument("--no-warm", action="store_true", help="skip the one ElasticMQ start")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Fill the cache; print where ElasticMQ's classpath and the Toxiproxy binary are."""
    from pytest_taskqueue._backends import ElasticMQ, ensure_elasticmq, ensure_toxiproxy_binary
    from pytest_taskqueue._procs import BackendStartError

    try:
        classpath = ensure_elasticmq()
        toxiproxy = ensure_toxiproxy_binary()
        if not args.no_warm:
            with tempfile.TemporaryDirectory(prefix="taskqueue-install-") as logs:
                ElasticMQ(log_dir=Path(logs)).start().stop()
    except BackendStartError as failure:
        return error(failure.summary)
    print(f"{PROG}: ElasticMQ classpath {classpath}", flush=True)
    print(f"{PROG}: Toxiproxy {toxiproxy}", flush=True)
    return EXIT_OK
