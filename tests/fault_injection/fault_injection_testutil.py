"""Small socket helpers shared by the fault_injection tests."""

from __future__ import annotations

import socket

from fault_injection import Proxy


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
