"""Fixtures for the fault_injection tests: a real Toxiproxy server and a TCP echo upstream.

The Toxiproxy binary comes from the toolkit cache (built by ``ensure_toxiproxy`` on first use);
the server runs on a free 127.0.0.1 port for the session and is stopped on every exit path.
"""

from __future__ import annotations

import os
import pathlib
import socket
import socketserver
import threading
import uuid
from collections.abc import Iterator

import pytest

from fault_injection import Proxy, Toxiproxy, ensure_toxiproxy, running_toxiproxy


def _cache_dir() -> pathlib.Path:
    configured = os.environ.get("TASKQUEUE_CACHE_DIR")
    if configured:
        return pathlib.Path(configured)
    return pathlib.Path.home() / ".cache" / "pytest-taskqueue"


@pytest.fixture(scope="session")
def toxiproxy_binary() -> pathlib.Path:
    return ensure_toxiproxy(_cache_dir())


@pytest.fixture(scope="session")
def toxiproxy(
    toxiproxy_binary: pathlib.Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Toxiproxy]:
    """A running Toxiproxy server (one per session), as a client of its API."""
    log_path = tmp_path_factory.mktemp("toxiproxy") / "toxiproxy.log"
    with running_toxiproxy(toxiproxy_binary, log_path=log_path) as client:
        yield client


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        conn: socket.socket = self.request
        try:
            while data := conn.recv(65536):
                conn.sendall(data)
        except OSError:
            pass  # the proxy reset or closed the connection: that is what the faults do


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def echo_server() -> Iterator[str]:
    """A TCP echo server on 127.0.0.1 (its ``host:port``), stopped after the test."""
    server = _EchoServer(("127.0.0.1", 0), _EchoHandler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="echo-server", daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"{host!s}:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def proxy(toxiproxy: Toxiproxy, echo_server: str) -> Iterator[Proxy]:
    """A fresh proxy in front of the echo server, deleted after the test."""
    made = toxiproxy.create_proxy(f"echo-{uuid.uuid4().hex[:8]}", "127.0.0.1:0", echo_server)
    try:
        yield made
    finally:
        toxiproxy.delete_proxy(made.name)
