"""Fixtures for the fault_injection tests: a TCP echo upstream and a proxy to it (the Toxiproxy
server itself is tests/conftest.py's ``toxiproxy``)."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from fault_injection import Proxy, Toxiproxy
from tests.fault_injection.fault_injection_testutil import proxy_to


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
    with proxy_to(toxiproxy, echo_server, "echo") as made:
        yield made
