"""moto's server with every request serialised: the harness's DynamoDB stand-in.

Run as ``python -m pytest_taskqueue._moto_server --host 127.0.0.1 --port N``.

Why not ``moto_server`` itself: it serves each request on its own thread without a lock, and moto's
DynamoDB backend checks a ``ConditionExpression`` and then writes in separate steps. Two racing
conditional writes (``attribute_not_exists(pk)`` on the same idempotency key) can therefore both
pass their check and both succeed. Real DynamoDB applies a conditional write atomically, and the
conformance scenarios race 32 identical submits, so this wrapper holds one lock for the whole of
each request, including the iteration of the response body (where a WSGI app may still do work).
Requests are cheap (well under a millisecond of moto time each), so the lock costs little.

The same WSGI application as ``moto.server`` is built (``DomainDispatcherApplication`` over
``create_backend_app``) and served by werkzeug's threaded server. The DynamoDB backend app is
built before the port opens, so "HTTP answers" means the first real request is fast too.

Two speed-ups, safe only because requests are serialised, live in ``_moto_patches`` and are installed
by ``build_app``: transactions back up only the items they touch, and key queries read one partition
instead of sorting the whole table.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from types import FrameType
from typing import Any, cast

__all__ = ["SerialisedApp", "build_app", "main"]

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class SerialisedApp:
    """WSGI middleware that runs one request at a time, body iteration included."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        with self.lock:
            result = self.app(environ, start_response)
            try:
                return list(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()


def build_app(preload: Sequence[str] = ("dynamodb",)) -> SerialisedApp:
    """moto's dispatcher application wrapped in ``SerialisedApp``, with ``preload`` backends built."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    from pytest_taskqueue._moto_patches import install_partition_queries, patch_transactions

    patch_transactions()
    install_partition_queries()
    dispatcher = DomainDispatcherApplication(create_backend_app)
    for service in preload:
        # What the dispatcher would do on the first request for this service, done up front.
        dispatcher.app_instances[service] = create_backend_app(cast(Any, service))
    return SerialisedApp(dispatcher)


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    # Everything moto holds is in memory and is meant to vanish: skip the slow interpreter teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def main(argv: Sequence[str] | None = None) -> None:
    """Parse ``--host``/``--port`` and serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(
        prog="python -m pytest_taskqueue._moto_server",
        description="moto's server with requests serialised (atomic conditional writes).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, required=True, help="port to bind")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, _exit_on_signal)
    app = build_app()

    import logging

    from werkzeug.serving import run_simple

    # One line per request would dwarf everything else in the log; errors still show.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    print(f"moto server (requests serialised) listening on http://{args.host}:{args.port}", flush=True)
    run_simple(args.host, args.port, app, threaded=True)


if __name__ == "__main__":
    main()
