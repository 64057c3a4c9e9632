"""Small socket and proxy helpers shared by the fault_injection tests (and the load tests)."""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import Iterator

from fault_injection import Proxy, Toxiproxy


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def echo_once(proxy: Proxy, data: bytes = b"ping", timeout_s: float = 10.0) -> bytes:
    """Send ``data`` through the proxy on a new connection and read it all back."""
    with socket.create_connection((proxy.host, proxy.port), timeout=timeout_s) as sock:
        sock.sendall(data)
        received = b""
        while len(received) < len(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


@contextlib.contextmanager
def proxy_to(toxiproxy: Toxiproxy, upstream: str, prefix: str) -> Iterator[Proxy]:
    """A fresh proxy ``<prefix>-<random>`` on a free port in front of ``upstream``, deleted on exit."""
    made = toxiproxy.create_proxy(f"{prefix}-{uuid.uuid4().hex[:8]}", "127.0.0.1:0", upstream)
    try:
        yield made
    finally:
        toxiproxy.delete_proxy(made.name)
