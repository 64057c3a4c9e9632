"""Run a Toxiproxy server on a free 127.0.0.1 port for the duration of a ``with`` block.

For tests, benchmarks and scripts that need a Toxiproxy of their own; the harness supervises its
stack's processes itself. The server is stopped on every exit path (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from fault_injection._toxiproxy import Toxiproxy, ToxiproxyError

__all__ = ["ToxiproxyStartError", "running_toxiproxy"]

_STOP_TIMEOUT_S = 10.0


class ToxiproxyStartError(RuntimeError):
    """The server did not answer ``GET /version`` in time; the message has its command and log tail."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def running_toxiproxy(
    binary: pathlib.Path,
    *,
    log_path: pathlib.Path | None = None,
    ready_timeout_s: float = 20.0,
    log_level: str = "warn",
) -> Iterator[Toxiproxy]:
    """Start ``binary`` (from ``ensure_toxiproxy``) and yield a client of its API once it answers.

    Its output goes to ``log_path`` (a temporary file when None); ``log_level`` keeps Toxiproxy
    2.12, which logs every request at trace level by default, quiet.
    """
    port = _free_port()
    if log_path is None:
        log_path = pathlib.Path(tempfile.mkdtemp(prefix="toxiproxy-")) / "toxiproxy.log"
    command = [str(binary), "-host", "127.0.0.1", "-port", str(port)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, LOG_LEVEL=log_level),
        )
    try:
        client = Toxiproxy(f"http://127.0.0.1:{port}")
        try:
            client.wait_ready(ready_timeout_s)
        except ToxiproxyError as exc:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise ToxiproxyStartError(
                f"Toxiproxy did not answer within {ready_timeout_s:.0f}s: {' '.join(command)}\n{exc}\n"
                f"exit code: {process.poll()}\nlog tail ({log_path}):\n{tail}"
            ) from exc
        yield client
    finally:
        process.terminate()
        try:
            process.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=_STOP_TIMEOUT_S)
