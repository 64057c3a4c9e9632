"""Readiness waits: one family of strategies over a small target protocol, for processes and containers.

A ``WaitTarget`` is anything that can tell whether it still runs and show what it has written
since it started: a supervised process (``pytest_taskqueue._procs.ManagedProcess``) or a backend
container (``pytest_taskqueue._docker``). A ``WaitStrategy`` is one way to tell that it is ready
(``HttpWait``, ``TcpWait``, ``LogLineWait``, ``GrpcHealthWait``, ``AllOf``); the backends declare
theirs in one line each (``pytest_taskqueue._backends``). ``wait_until_ready`` probes until the
strategy says ready, the target ends (``TargetExited``, at once) or the deadline passes
(``NotReady``, with what the last probe saw), pacing its probes with ``fault_injection.Backoff``;
nothing sleeps a fixed time.
"""

from __future__ import annotations

import http.client
import re
import socket
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from fault_injection import Backoff

__all__ = [
    "AllOf",
    "GrpcHealthWait",
    "HttpWait",
    "LogLineWait",
    "NotReady",
    "TargetExited",
    "TcpWait",
    "WaitStrategy",
    "WaitTarget",
    "wait_until_ready",
]


class WaitTarget(Protocol):
    """What a wait needs of the thing it waits for."""

    def exit_status(self) -> str | None:
        """None while it runs; else how it ended (``exited with code 3``)."""
        ...

    def output(self) -> str:
        """What it has written (stdout and stderr) since it was last started."""
        ...

    def wait_for_exit(self, seconds: float) -> None:
        """Wait up to ``seconds``, returning early if it ends meanwhile."""
        ...


class TargetExited(Exception):
    """The target ended before it was ready; ``status`` says how."""

    def __init__(self, status: str, waiting_for: str) -> None:
        super().__init__(f"{status} before it was ready (waiting for {waiting_for})")
        self.status = status
        self.waiting_for = waiting_for


class NotReady(Exception):
    """The deadline passed; ``last_probe`` is what the last probe saw."""

    def __init__(self, timeout: float, waiting_for: str, last_probe: str) -> None:
        super().__init__(
            f"not ready after {timeout:.1f} s (waiting for {waiting_for}; last probe: {last_probe})"
        )
        self.timeout = timeout
        self.waiting_for = waiting_for
        self.last_probe = last_probe


class WaitStrategy:
    """How to tell that a target is ready: ``probe`` is tried until it returns True or time runs out.

    A probe must return quickly (it is retried); it records why it failed in ``last_error`` so a
    timeout can say what was seen.
    """

    last_error: str = "no probe yet"

    def describe(self) -> str:
        """What is awaited, for error messages."""
        return type(self).__name__

    def reset(self, target: WaitTarget) -> None:
        """Called before the first probe of each wait."""
        self.last_error = "no probe yet"

    def probe(self, target: WaitTarget) -> bool:
        """One readiness check; True when ready."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the probes hold (connections)."""


def wait_until_ready(
    target: WaitTarget,
    strategy: WaitStrategy,
    timeout: float,
    *,
    first: float = 0.005,
    cap: float = 0.1,
) -> None:
    """Probe ``target`` with ``strategy`` until it is ready.

    Raises:
        TargetExited: the target ended first (noticed at once: the pause returns when it ends).
        NotReady: ``timeout`` seconds passed; the message has the last probe's finding.
    """
    backoff = Backoff(timeout, first=first, factor=1.5, cap=cap)
    strategy.reset(target)
    try:
        while True:
            ended = target.exit_status()
            if ended is not None:
                raise TargetExited(ended, strategy.describe())
            if strategy.probe(target):
                return
            pause = backoff.pause()
            if pause is None:
                raise NotReady(timeout, strategy.describe(), strategy.last_error)
            target.wait_for_exit(pause)
    finally:
        strategy.close()


class HttpWait(WaitStrategy):
    """Ready when an HTTP request to ``url`` gets an answer whose status passes ``accept``.

    The default accepts any status below 500: the server parses HTTP, which is what "answers" means.
    """

    def __init__(
        self,
        url: str,
        *,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        accept: Callable[[int], bool] = lambda status: status < 500,
        probe_timeout: float = 1.0,
    ) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme != "http" or parsed.hostname is None:
            raise ValueError(f"HttpWait needs an http:// URL, got {url!r}")
        self.url = url
        self._host = parsed.hostname
        self._port = parsed.port or 80
        self._path = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
        self._method = method
        self._body = body
        self._headers = dict(headers or {})
        self._accept = accept
        self._timeout = probe_timeout

    def describe(self) -> str:
        return f"HTTP {self._method} {self.url}"

    def probe(self, target: WaitTarget) -> bool:
        connection = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        try:
            connection.request(self._method, self._path, body=self._body, headers=self._headers)
            response = connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as error:
            self.last_error = f"{type(error).__name__}: {error}"
            return False
        finally:
            connection.close()
        if self._accept(response.status):
            return True
        self.last_error = f"HTTP {response.status}"
        return False


class TcpWait(WaitStrategy):
    """Ready when a TCP connection to ``host:port`` is accepted."""

    def __init__(self, host: str, port: int, *, probe_timeout: float = 1.0) -> None:
        self.host = host
        self.port = port
        self._timeout = probe_timeout

    def describe(self) -> str:
        return f"TCP connect to {self.host}:{self.port}"

    def probe(self, target: WaitTarget) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=self._timeout):
                return True
        except OSError as error:
            self.last_error = f"{type(error).__name__}: {error}"
            return False


class LogLineWait(WaitStrategy):
    """Ready when a whole line of the target's output (since it started) matches ``pattern``."""

    def __init__(self, pattern: str | re.Pattern[str]) -> None:
        self.pattern = re.compile(pattern) if isinstance(pattern, str) else pattern
        self._scanned = 0

    def describe(self) -> str:
        return f"a log line matching {self.pattern.pattern!r}"

    def reset(self, target: WaitTarget) -> None:
        super().reset(target)
        self._scanned = 0

    def probe(self, target: WaitTarget) -> bool:
        try:
            text = target.output()
        except OSError as error:
            self.last_error = f"cannot read the output: {error}"
            return False
        end = text.rfind("\n") + 1  # an unfinished last line waits for the rest
        lines = text[self._scanned : end].split("\n")
        self._scanned = max(self._scanned, end)
        if any(self.pattern.search(line) for line in lines):
            return True
        self.last_error = "no matching line yet"
        return False


class GrpcHealthWait(WaitStrategy):
    """Ready when ``grpc.health.v1.Health/Check`` of ``service`` ("" = overall) answers SERVING."""

    def __init__(self, target: str, service: str = "", *, probe_timeout: float = 1.0) -> None:
        self.target = target
        self.service = service
        self._timeout = probe_timeout
        self._channel: Any = None

    def describe(self) -> str:
        shown = f" of service {self.service!r}" if self.service else ""
        return f"gRPC health{shown} SERVING at {self.target}"

    def probe(self, target: WaitTarget) -> bool:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        if self._channel is None:
            # Short reconnect backoff: the default waits a second after the first refused connect.
            self._channel = grpc.insecure_channel(
                self.target,
                options=[
                    ("grpc.initial_reconnect_backoff_ms", 20),
                    ("grpc.min_reconnect_backoff_ms", 20),
                    ("grpc.max_reconnect_backoff_ms", 20),
                ],
            )
        stub = health_pb2_grpc.HealthStub(self._channel)
        try:
            answer = stub.Check(
                health_pb2.HealthCheckRequest(service=self.service),
                timeout=self._timeout,
                wait_for_ready=True,
            )
        except grpc.RpcError as error:
            code = error.code() if hasattr(error, "code") else None
            self.last_error = (
                f"{getattr(code, 'name', code)}: {error.details() if hasattr(error, 'details') else error}"
            )
            return False
        if answer.status == health_pb2.HealthCheckResponse.SERVING:
            return True
        self.last_error = f"health status {health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)}"
        return False

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None


class AllOf(WaitStrategy):
    """Ready when every strategy has been ready once (each is probed until it is)."""

    def __init__(self, *strategies: WaitStrategy) -> None:
        self.strategies = strategies
        self._done: set[int] = set()

    def describe(self) -> str:
        return " and ".join(strategy.describe() for strategy in self.strategies)

    def reset(self, target: WaitTarget) -> None:
        super().reset(target)
        self._done.clear()
        for strategy in self.strategies:
            strategy.reset(target)

    def probe(self, target: WaitTarget) -> bool:
        for index, strategy in enumerate(self.strategies):
            if index in self._done:
                continue
            if not strategy.probe(target):
                self.last_error = f"{strategy.describe()}: {strategy.last_error}"
                return False
            self._done.add(index)
        return True

    def close(self) -> None:
        for strategy in self.strategies:
            strategy.close()
