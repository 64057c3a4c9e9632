"""``TaskQueueClient``: a typed grpc.aio client of taskqueue.v1, with TLS and bearer-token support.

Scenarios talk to the implementation only through this client (``harness.api``), so the
transport details a real deployment needs (a CA, a token) live in one place. The token is added
by channel interceptors rather than per call, so that calls made through the raw ``.stub`` carry
it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import socket
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any, Final, TypeVar

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fault_injection import Backoff
from taskqueue_contract import TERMINAL
from taskqueue_proto import taskqueue_pb2 as pb
from taskqueue_proto import taskqueue_pb2_grpc as pb_grpc

__all__ = [
    "MAX_PAYLOAD_LIMIT",
    "TERMINAL_STATUSES",
    "ReadinessError",
    "TaskQueueClient",
    "check_listening",
    "describe_rpc_error",
]

MAX_PAYLOAD_LIMIT: Final = 4 * 1024 * 1024
"""The largest ``max_payload_bytes`` docs/spec.md 8.3 allows: the largest limit the toolkit tests."""
_MESSAGE_SLACK: Final = 1024 * 1024

TERMINAL_STATUSES: Final[frozenset[int]] = TERMINAL
"""The statuses no transition leaves (docs/spec.md 2.3); ``taskqueue_contract.TERMINAL``."""

_SERVING: Final = 1  # grpc.health.v1.HealthCheckResponse.SERVING
_CHANNEL_OPTIONS: Final[Sequence[tuple[str, Any]]] = (
    # Reconnect quickly after a fault scenario cut the link or restarted the API process, instead
    # of gRPC's default 1 s..120 s: a call made once the target is back must not wait out a backoff.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 250),
    # A payload of the largest testable limit plus one byte goes out; a Task with payload and an
    # echo result of that limit comes back (spec 8.3).
    ("grpc.max_send_message_length", MAX_PAYLOAD_LIMIT + _MESSAGE_SLACK),
    ("grpc.max_receive_message_length", 2 * MAX_PAYLOAD_LIMIT + _MESSAGE_SLACK),
)

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


class ReadinessError(RuntimeError):
    """The target did not become ready (health SERVING, GetServerInfo answered) before a deadline."""


async def check_listening(target: str, timeout: float) -> None:  # noqa: ASYNC109 (a connect deadline)
    """Raise ``ReadinessError`` at once when nothing can listen at ``target`` (``host:port``).

    A refused connection or a host that does not resolve will not mend by waiting for a server
    that someone else started, so it is reported now; a connection that merely hangs is left to
    ``wait_ready``'s deadline.
    """
    host, _, port = target.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout)
    except TimeoutError:
        return
    except ConnectionRefusedError:
        raise ReadinessError(f"connection refused (nothing listens on {host} port {port})") from None
    except socket.gaierror as error:
        raise ReadinessError(f"host {host!r} does not resolve ({error.strerror})") from None
    except OSError as error:
        raise ReadinessError(error.strerror or str(error)) from None
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


def describe_rpc_error(error: BaseException) -> str:
    """One line for an RPC error: ``CODE: details`` (gRPC details may span lines)."""
    if isinstance(error, grpc.aio.AioRpcError):
        details = " ".join((error.details() or "").split())
        return f"{error.code().name}: {details}" if details else error.code().name
    return " ".join(f"{type(error).__name__}: {error}".split())


class _TokenInterceptor(grpc.aio.UnaryUnaryClientInterceptor, grpc.aio.UnaryStreamClientInterceptor):
    """Adds ``authorization: Bearer <token>`` to the metadata of every call on the channel."""

    def __init__(self, token: str) -> None:
        self._pair = ("authorization", f"Bearer {token}")

    def _with_token(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        metadata.add(*self._pair)
        return grpc.aio.ClientCallDetails(
            method=details.method,
            timeout=details.timeout,
            metadata=metadata,
            credentials=details.credentials,
            wait_for_ready=details.wait_for_ready,
        )

    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        """Forward a unary call with the token added."""
        return await continuation(self._with_token(client_call_details), request)

    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        """Forward a server-streaming call with the token added."""
        return await continuation(self._with_token(client_call_details), request)


class TaskQueueClient:
    """A typed async client of one taskqueue.v1 target (``harness.api``).

    ``rpc_timeout`` is the deadline of each unary call when the caller gives none; ``None``
    means no deadline. The channel must be used on the event loop it was created on (the
    plugin creates it on pytest-asyncio's session loop). Call ``close()`` when done.
    """

    def __init__(
        self,
        target: str,
        *,
        tls_ca: pathlib.Path | None = None,
        token: str | None = None,
        rpc_timeout: float | None = None,
        observers: Sequence[grpc.aio.ClientInterceptor] = (),
    ) -> None:
        self.target = target
        self.rpc_timeout = rpc_timeout
        self._tls_ca = tls_ca
        self._token = token
        self._observers = tuple(observers)
        interceptors = [*([_TokenInterceptor(token)] if token else []), *observers] or None
        self.channel: grpc.aio.Channel
        if tls_ca is not None:
            credentials = grpc.ssl_channel_credentials(root_certificates=tls_ca.read_bytes())
            self.channel = grpc.aio.secure_channel(
                target, credentials, options=_CHANNEL_OPTIONS, interceptors=interceptors
            )
        else:
            self.channel = grpc.aio.insecure_channel(
                target, options=_CHANNEL_OPTIONS, interceptors=interceptors
            )
        self.stub: pb_grpc.TaskQueueAsyncStub = pb_grpc.TaskQueueStub(self.channel)
        self._health: Any = health_pb2_grpc.HealthStub(self.channel)

    def for_target(self, target: str) -> TaskQueueClient:
        """A client of another address with the same TLS, token, deadline and observers."""
        return TaskQueueClient(
            target,
            tls_ca=self._tls_ca,
            token=self._token,
            rpc_timeout=self.rpc_timeout,
            observers=self._observers,
        )

    def _deadline(self, timeout: float | None) -> float | None:
        return self.rpc_timeout if timeout is None else timeout

    async def submit(
        self,
        key: str,
        task_type: str = "noop",
        payload: bytes = b"",
        max_attempts: int = 0,
        timeout: float | None = None,  # noqa: ASYNC109 (the agreed API: a gRPC deadline)
    ) -> pb.SubmitTaskResponse:
        """SubmitTask with exactly these fields (no validation here: scenarios send bad input on purpose)."""
        request = pb.SubmitTaskRequest(
            idempotency_key=key, task_type=task_type, payload=payload, max_attempts=max_attempts
        )
        return await self.stub.SubmitTask(request, timeout=self._deadline(timeout))

    async def get(self, task_id: str, timeout: float | None = None) -> pb.Task:  # noqa: ASYNC109 (the agreed API: a gRPC deadline)
        """GetTask."""
        return await self.stub.GetTask(pb.GetTaskRequest(task_id=task_id), timeout=self._deadline(timeout))

    async def events(self, task_id: str, timeout: float | None = None) -> list[pb.TaskEvent]:  # noqa: ASYNC109 (the agreed API: a gRPC deadline)
        """ListTaskEvents, as a list in the order the server sent."""
        response = await self.stub.ListTaskEvents(
            pb.ListTaskEventsRequest(task_id=task_id), timeout=self._deadline(timeout)
        )
        return list(response.events)

    async def watch(self, task_id: str, timeout: float | None = None) -> AsyncGenerator[pb.Task, None]:  # noqa: ASYNC109 (the agreed API: a gRPC deadline)
        """WatchTask: yields each snapshot the server streams; the call is cancelled when closed early.

        ``timeout`` is the deadline of the whole stream (none by default: the server closes it after
        a terminal snapshot). Close the iterator (``contextlib.aclosing``) when leaving it early.
        """
        call = self.stub.WatchTask(pb.WatchTaskRequest(task_id=task_id), timeout=timeout)
        try:
            async for snapshot in call:
                yield snapshot
        finally:
            call.cancel()

    async def server_info(self, timeout: float | None = None) -> pb.ServerInfo:  # noqa: ASYNC109 (the agreed API: a gRPC deadline)
        """GetServerInfo."""
        return await self.stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=self._deadline(timeout))

    async def health(self, service: str = "", timeout: float | None = None) -> int:  # noqa: ASYNC109 (the agreed API: a gRPC deadline)
        """grpc.health.v1 Check for ``service``: the ``HealthCheckResponse`` status (1 = SERVING)."""
        response = await self._health.Check(
            health_pb2.HealthCheckRequest(service=service), timeout=self._deadline(timeout)
        )
        return int(response.status)

    async def wait_ready(self, deadline_s: float) -> pb.ServerInfo:
        """Wait until the target is healthy and answers GetServerInfo; return its ServerInfo.

        Probes the overall health status until it is SERVING (a target without the health
        service, UNIMPLEMENTED, is judged by GetServerInfo alone), with a short backoff between
        probes, until ``deadline_s`` seconds have passed.

        Raises:
            ReadinessError: with the last thing seen (a status, or the RPC error's code and details).
        """
        backoff = Backoff(deadline_s)
        last = "no answer yet"
        while True:
            remaining = backoff.remaining()
            if remaining <= 0:
                raise ReadinessError(f"no healthy answer within {deadline_s:g} s (last: {last})")
            probe_timeout = min(remaining, max(1.0, backoff.scheduled * 4))
            try:
                status = await self.health("", timeout=probe_timeout)
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.UNIMPLEMENTED:
                    last = describe_rpc_error(error)
                    status = None
                else:
                    status = _SERVING
            if status == _SERVING:
                try:
                    return await self.server_info(timeout=max(remaining, 1.0))
                except grpc.aio.AioRpcError as error:
                    if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                        last = f"GetServerInfo: {describe_rpc_error(error)}"
                    else:
                        raise ReadinessError(f"GetServerInfo failed: {describe_rpc_error(error)}") from error
            elif status is not None:
                last = f"health status {health_pb2.HealthCheckResponse.ServingStatus.Name(status)}"
            await backoff.wait()

    async def close(self) -> None:
        """Close the channel (pending calls are cancelled)."""
        await self.channel.close()
