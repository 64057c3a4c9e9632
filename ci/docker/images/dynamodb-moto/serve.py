"""DynamoDB stand-in for the docker backend's test image: moto's server, one request at a time.

DynamoDB Local (the docker backend's default image) is not open source and no image registry is
reachable where this project is tested, so the test image runs moto's server instead. moto's
server handles requests on several threads without a lock around a conditional write, while
DynamoDB applies each write atomically; serialising requests restores that, which the racing
idempotent-submit scenario depends on. DynamoDB has no long polls, so one at a time costs little.

Runs inside the image only (Debian's python3 and a venv with moto); listens on 0.0.0.0:8000 like
DynamoDB Local.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def serialised(app: WsgiApp) -> WsgiApp:
    """Wrap a WSGI app so that one request at a time runs it, body included."""
    lock = threading.Lock()

    def handle(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        with lock:
            # The body is produced lazily by some apps: materialise it while holding the lock.
            return list(app(environ, start_response))

    return handle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    # As PID 1 in a container, SIGTERM would be ignored without a handler: exit at once instead.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # moto routes each request by the service named in its SigV4 credential scope.
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, serialised(app), threaded=True)


if __name__ == "__main__":
    main()
