"""Processes for the reference-server integration tests: moto, ElasticMQ and reference_server.

moto and ElasticMQ are the harness's own backends (``pytest_taskqueue._backends``). The reference
server runs as a ``Process`` here: the tests read its stdout lines and send it signals. Every process
is stopped by whoever started it (the fixtures in conftest.py) on every exit path; readiness is waited
for until a deadline, and a timeout error carries the command line and the log's tail.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from pytest_taskqueue._backends import ElasticMQ, LocalBackend, MotoServer

ROOT = Path(__file__).resolve().parents[2]

AWS_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}


class ProcessError(RuntimeError):
    """A process did not become ready, or exited unexpectedly."""


class Process:
    """A child process whose stdout lines are kept (and waitable) and whose stderr goes to a log."""

    def __init__(
        self, name: str, argv: Sequence[str], log_dir: Path, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")
        self.popen = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env={**os.environ, **AWS_ENV, **(env or {})},
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, name=f"{name}-stdout", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def describe(self) -> str:
        """Command line, exit status, stdout and the tail of the log: for error messages."""
        try:
            tail = self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            tail = "(no log)"
        return (
            f"{self.name}: {' '.join(self.argv)}\n  exit status: {self.popen.poll()}\n"
            f"  stdout: {self.lines[-20:]}\n  log tail:\n{tail}"
        )

    def wait_line(self, starts_with: str, timeout: float) -> str:
        """Wait for a stdout line starting with ``starts_with``; returns it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if line.startswith(starts_with):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.popen.poll() is not None and not self._reader.is_alive()):
                    raise ProcessError(f"no line {starts_with!r} within {timeout}s\n{self.describe()}")
                self._changed.wait(remaining)

    def signal(self, signum: int) -> None:
        """Send ``signum`` if the process still runs."""
        if self.popen.poll() is None:
            self.popen.send_signal(signum)

    def wait(self, timeout: float) -> int:
        """Wait for the exit; returns the exit status (negative: killed by that signal)."""
        return self.popen.wait(timeout)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, then SIGKILL if it does not exit in ``timeout``; always closes the log."""
        try:
            if self.popen.poll() is None:
                self.popen.send_signal(signal.SIGTERM)
                try:
                    self.popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.popen.kill()
                    self.popen.wait()
            return self.popen.returncode
        finally:
            self._log.close()
            self._reader.join(timeout=5)

    def kill(self) -> None:
        """SIGKILL and reap."""
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait()


class Stoppable(Protocol):
    """What the tests and benchmarks stop at the end: a backend or a reference process."""

    def stop(self) -> object: ...


def start_moto(log_dir: Path) -> tuple[LocalBackend, str]:
    """The harness's DynamoDB stand-in (``pytest_taskqueue._backends.MotoServer``) on a free port."""
    backend = MotoServer(log_dir=log_dir).start()
    return backend, backend.endpoint


def start_elasticmq(log_dir: Path) -> tuple[LocalBackend, str]:
    """The harness's ElasticMQ (``pytest_taskqueue._backends.ElasticMQ``) on a free port."""
    backend = ElasticMQ(log_dir=log_dir).start()
    return backend, backend.endpoint


class ReferenceProcess(Process):
    """A ``python -m reference_server`` process."""

    port: int = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


def start_reference(
    mode: str, args: Sequence[str], log_dir: Path, name: str, *, timeout: float = 60.0
) -> ReferenceProcess:
    """Start the reference server in ``mode`` and wait for its start-up line(s) (not for health)."""
    argv = [sys.executable, "-m", "reference_server", mode, *args]
    process = ReferenceProcess(name, argv, log_dir)
    try:
        if mode in ("serve", "all"):
            line = process.wait_line("listening on ", timeout)
            process.port = int(line.rsplit(":", 1)[1])
        if mode in ("worker", "all"):
            process.wait_line("worker ready", timeout)
    except BaseException:
        process.kill()
        with contextlib.suppress(Exception):
            process.stop()
        raise
    return process
