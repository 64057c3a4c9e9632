"""Fixtures for the plugin's pytester tests: inner runs in a temporary folder, and a fake target.

Inner pytest runs load the installed plugin through its ``pytest11`` entry point, exactly as a
user's run would. ``fake_server(...)`` starts tests/plugin/fake_server.py in a subprocess, waits
for its ``listening on`` line (with a deadline, showing its output on failure) and stops it at the
end of the test.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import socket
import sys
from collections.abc import Callable, Iterator

import pytest

from tests.servers import running_command

_SERVER = pathlib.Path(__file__).with_name("fake_server.py")
_START_TIMEOUT_S = 30.0

INNER_INI = """
[pytest]
asyncio_default_fixture_loop_scope = function
"""
"""Inner runs set pytest-asyncio's loop scope so its deprecation warning does not clutter output."""


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester folder with a quiet ini, for runs of the plugin, free of the outer TASKQUEUE_* settings
    (but the cache folder, tests/conftest.py)."""
    for name in [n for n in os.environ if n.startswith("TASKQUEUE_") and n != "TASKQUEUE_CACHE_DIR"]:
        monkeypatch.delenv(name)
    pytester.makeini(INNER_INI)
    return pytester


@contextlib.contextmanager
def _servers(command: Callable[[tuple[str, ...]], list[str]]) -> Iterator[Callable[..., str]]:
    """A starter of servers built by ``command(args)``; every server started is stopped on exit."""
    with contextlib.ExitStack() as started:

        def start(*args: str) -> str:
            return started.enter_context(running_command(command(args), timeout=_START_TIMEOUT_S))

        yield start


@pytest.fixture
def fake_server() -> Iterator[Callable[..., str]]:
    """Start fake servers with the given flags (``fake_server("--no-watch")``); yields their address."""
    with _servers(lambda args: [sys.executable, str(_SERVER), *args]) as start:
        yield start


@pytest.fixture
def inmemory_server() -> Iterator[Callable[..., str]]:
    """Start tests/servers' conforming in-memory server, with breaks: ``inmemory_server("extra_attempt")``."""
    base = [sys.executable, "-m", "tests.servers.inmemory", "--port", "0", "--exit-on-stdin-eof"]
    with _servers(lambda breaks: base + [f"--break={name}" for name in breaks]) as start:
        yield start


@pytest.fixture
def dead_target() -> str:
    """``127.0.0.1:PORT`` where nothing listens (a port just bound and released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"127.0.0.1:{port}"
