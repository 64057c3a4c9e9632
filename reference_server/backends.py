"""AWS clients (DynamoDB and SQS through aioboto3) and the translation of their failures.

One client per service per process, created once and reused: building a botocore client costs
milliseconds, a request much less (about a millisecond of CPU, which the client's configuration keeps
down: a fixed User-Agent, no client-side parameter validation). Timeouts are short and retries few,
so an unreachable backend turns into ``BackendUnavailable`` (gRPC UNAVAILABLE) within a few seconds
instead of hanging a caller.
Endpoints are only passed when configured, so with none set the clients talk to AWS with the
credentials of the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, TypeVar

import aioboto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from reference_server.config import Config

T = TypeVar("T")

#: Long-poll wait of the worker's ReceiveMessage, seconds: short enough that shutdown stops promptly.
RECEIVE_WAIT_SECONDS = 1

#: The User-Agent of every backend request.
USER_AGENT = "pytest-taskqueue-reference"

#: Error codes that mean "try again later" rather than "your request is wrong".
_TRANSIENT_CODES = frozenset(
    {
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestThrottled",
        "ResourceNotFoundException",  # the table is missing or still being created
        "QueueDoesNotExist",
        "AWS.SimpleQueueService.NonExistentQueue",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "ExpiredTokenException",
    }
)


class BackendUnavailable(Exception):
    """DynamoDB or SQS could not be reached, timed out, or answered with a transient error."""


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ClientError, or '' for anything else."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def unavailable_from(exc: BaseException, what: str) -> BackendUnavailable | None:
    """Translate a backend exception into BackendUnavailable, or None if it is not a backend failure.

    Connection errors, timeouts, 5xx answers, throttling and missing resources are backend failures;
    other ClientErrors (validation of our own request) are bugs and are left to propagate.
    """
    if isinstance(exc, ClientError):
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        code = error_code(exc)
        if code in _TRANSIENT_CODES or status >= 500:
            return BackendUnavailable(f"{what}: {code or 'HTTP ' + str(status)}: {exc}")
        return None
    if isinstance(exc, BotoCoreError | OSError | TimeoutError):
        return BackendUnavailable(f"{what}: {type(exc).__name__}: {exc}")
    # aiohttp errors that escape botocore's wrapping (connection reset mid-body and the like)
    if type(exc).__module__.startswith("aiohttp"):
        return BackendUnavailable(f"{what}: {type(exc).__name__}: {exc}")
    return None


@contextlib.contextmanager
def translated(what: str) -> Iterator[None]:
    """Re-raise backend failures inside the block as BackendUnavailable naming ``what``."""
    try:
        yield
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        unavailable = unavailable_from(exc, what)
        if unavailable is None:
            raise
        raise unavailable from exc


class Backends:
    """The process's DynamoDB and SQS clients; use as ``async with Backends(config) as backends``."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._stack = AsyncExitStack()
        self.dynamodb: Any = None
        self.sqs: Any = None

    async def __aenter__(self) -> Backends:
        config = self._config
        session = aioboto3.Session(region_name=config.region)
        common: dict[str, Any] = {
            "connect_timeout": config.backend_timeout,
            "retries": {"total_max_attempts": 2, "mode": "standard"},
            "max_pool_connections": max(64, config.concurrency * 4),
            "tcp_keepalive": True,
            # CPU per call: a fixed User-Agent is not rebuilt from a dozen components twice per
            # request, and the backends validate requests themselves (ours are built by this code).
            "user_agent": USER_AGENT,
            "parameter_validation": False,
        }
        dynamodb_config = BotoConfig(read_timeout=config.backend_timeout, **common)
        # ReceiveMessage long-polls, so SQS reads may legitimately take the wait time longer.
        sqs_config = BotoConfig(read_timeout=config.backend_timeout + RECEIVE_WAIT_SECONDS, **common)
        try:
            self.dynamodb = await self._stack.enter_async_context(
                session.client("dynamodb", config=dynamodb_config, **_endpoint(config.dynamodb_endpoint))
            )
            self.sqs = await self._stack.enter_async_context(
                session.client("sqs", config=sqs_config, **_endpoint(config.sqs_endpoint))
            )
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.aclose()


def _endpoint(url: str | None) -> dict[str, Any]:
    """``endpoint_url`` keyword only when an override is configured (none means AWS). A plain
    ``http://`` endpoint has no TLS, so its client skips loading the CA bundle (tens of ms at start)."""
    if not url:
        return {}
    return (
        {"endpoint_url": url, "verify": False} if url.lower().startswith("http://") else {"endpoint_url": url}
    )


async def retry_until(
    deadline: float,
    stop: asyncio.Event,
    what: str,
    attempt: Callable[[], Awaitable[T]],
    *,
    first_delay: float = 0.1,
) -> T:
    """Call ``attempt()`` until it returns without BackendUnavailable, ``stop`` is set, or ``deadline``.

    Used at start-up, where the backends may still be starting. Raises the last BackendUnavailable
    (or TimeoutError naming ``what`` if stopped) when giving up.
    """
    loop = asyncio.get_running_loop()
    delay = first_delay
    while True:
        try:
            return await attempt()
        except BackendUnavailable as exc:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise BackendUnavailable(f"gave up waiting for {what}: {exc}") from exc
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=min(delay, remaining))
            if stop.is_set():
                raise TimeoutError(f"stopped while waiting for {what}") from exc
            delay = min(delay * 2, 1.0)
