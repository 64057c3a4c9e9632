"""Start the in-memory server in a subprocess, wait for its ``listening on`` line, always stop it."""

from __future__ import annotations

import collections
import contextlib
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository root: ``python -m tests.servers.inmemory`` runs from here."""

_READY_PREFIX = "listening on "
_STOP_TIMEOUT_S = 10.0


class ServerStartError(RuntimeError):
    """The server did not print its address in time; the message has its command line and output."""


class _Output:
    """Drains the child's output in a daemon thread: lines go to a queue and a bounded tail."""

    def __init__(self, stream: Iterator[str]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.tail: collections.deque[str] = collections.deque(maxlen=40)
        threading.Thread(target=self._drain, args=(stream,), name="inmemory-output", daemon=True).start()

    def _drain(self, stream: Iterator[str]) -> None:
        for line in stream:
            self.tail.append(line.rstrip("\n"))
            self.lines.put(line)
        self.lines.put(None)

    def wait_for_address(self, deadline: float) -> str | None:
        """The address from the ready line, or None at EOF or when the deadline passes."""
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                return None
            if line is None:
                return None
            if line.startswith(_READY_PREFIX):
                return line[len(_READY_PREFIX) :].strip()
        return None


@contextlib.contextmanager
def running_server(*breaks: str, timeout: float = 30.0, extra_args: tuple[str, ...] = ()) -> Iterator[str]:
    """Run the in-memory server with the given breaks and yield its ``host:port``."""
    command = [
        sys.executable,
        "-m",
        "tests.servers.inmemory",
        "--port",
        "0",
        "--exit-on-stdin-eof",
        *(f"--break={name}" for name in breaks),
        *extra_args,
    ]
    with running_command(command, timeout=timeout) as address:
        yield address


@contextlib.contextmanager
def running_command(command: list[str], *, timeout: float = 30.0) -> Iterator[str]:
    """Run any server that prints ``listening on HOST:PORT`` (from the repository root); yield the address."""
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        output = _Output(process.stdout)
        address = output.wait_for_address(time.monotonic() + timeout)
        if address is None:
            raise ServerStartError(
                f"server did not print {_READY_PREFIX!r} within {timeout:.0f}s "
                f"(exit code {process.poll()}); command: {' '.join(command)}; output:\n"
                + "\n".join(output.tail)
            )
        yield address
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL if it does not exit in time; close the pipes."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
