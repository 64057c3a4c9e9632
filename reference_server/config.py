"""Configuration of the reference server: one frozen dataclass, filled from flags and ``TASKQUEUE_*``.

Every flag has an environment variable of the same name, upper-cased with the ``TASKQUEUE_`` prefix
(``--retry-backoff-ms`` reads ``TASKQUEUE_RETRY_BACKOFF_MS``). A flag given on the command line wins
over the environment, which wins over the default. The flags and defaults are listed in
docs/architecture.md; the last three (shutdown grace, backend timeout, startup timeout) are extras of
the reference implementation.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum


class Mode(StrEnum):
    """Which parts run in this process."""

    SERVE = "serve"
    WORKER = "worker"
    ALL = "all"

    @property
    def runs_api(self) -> bool:
        """Whether this process serves the gRPC API."""
        return self in (Mode.SERVE, Mode.ALL)

    @property
    def runs_worker(self) -> bool:
        """Whether this process runs a worker."""
        return self in (Mode.WORKER, Mode.ALL)


@dataclass(frozen=True, slots=True)
class Config:
    """Everything a reference server or worker process needs to know."""

    host: str = "127.0.0.1"
    port: int = 50051
    dynamodb_endpoint: str | None = None
    sqs_endpoint: str | None = None
    region: str = "us-east-1"
    table: str = "taskqueue"
    queue: str = "taskqueue"
    dead_letter_queue: str = "taskqueue-dlq"
    visibility_timeout: int = 30
    retry_backoff_ms: int = 1000
    retry_backoff_max_ms: int = 30000
    concurrency: int = 16
    create_resources: bool = True
    shutdown_grace: float = 10.0
    backend_timeout: float = 2.0
    startup_timeout: float = 60.0

    def backoff_ms(self, failed_attempt: int) -> int:
        """Delay before the attempt after ``failed_attempt`` (from 1): base doubling up to the maximum."""
        exponent = min(max(failed_attempt - 1, 0), 40)
        return int(min(self.retry_backoff_ms * (2**exponent), self.retry_backoff_max_ms))


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _env_bool(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{name} must be one of {sorted(_TRUE | _FALSE)}, got {value!r}")


def _build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    defaults = Config()
    parser = argparse.ArgumentParser(
        prog="python -m reference_server",
        description="Reference implementation of the taskqueue.v1 gRPC contract (DynamoDB + SQS).",
    )
    parser.add_argument("mode", choices=[m.value for m in Mode], help="serve: gRPC API; worker; all: both")

    def env_default(flag: str, fallback: object) -> object:
        return env.get("TASKQUEUE_" + flag.upper().replace("-", "_"), fallback)

    def add(flag: str, kind: type, fallback: object, help_text: str) -> None:
        parser.add_argument(f"--{flag}", type=kind, default=env_default(flag, fallback), help=help_text)

    add("host", str, defaults.host, "address to bind (default %(default)s)")
    add("port", int, defaults.port, "port to bind; 0 picks a free one and prints it")
    add("dynamodb-endpoint", str, None, "DynamoDB endpoint URL; none means AWS")
    add("sqs-endpoint", str, None, "SQS endpoint URL; none means AWS")
    add("region", str, defaults.region, "AWS region")
    add("table", str, defaults.table, "DynamoDB table name")
    add("queue", str, defaults.queue, "SQS work queue name")
    add("dead-letter-queue", str, defaults.dead_letter_queue, "SQS dead-letter queue name")
    add("visibility-timeout", int, defaults.visibility_timeout, "message visibility and lease, seconds")
    add("retry-backoff-ms", int, defaults.retry_backoff_ms, "first retry delay, milliseconds")
    add("retry-backoff-max-ms", int, defaults.retry_backoff_max_ms, "largest retry delay, milliseconds")
    add("concurrency", int, defaults.concurrency, "attempts a worker runs at once")
    add("shutdown-grace", float, defaults.shutdown_grace, "seconds to finish in-flight work on SIGTERM")
    add("backend-timeout", float, defaults.backend_timeout, "connect/read timeout of backend calls, s")
    add("startup-timeout", float, defaults.startup_timeout, "seconds to wait for the backends at start")
    create_env = env.get("TASKQUEUE_CREATE_RESOURCES")
    parser.add_argument(
        "--create-resources",
        action=argparse.BooleanOptionalAction,
        default=True if create_env is None else _env_bool(create_env, "TASKQUEUE_CREATE_RESOURCES"),
        help="create the table and queues if missing (default: create)",
    )
    return parser


def parse_args(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> tuple[Mode, Config]:
    """Parse the command line and environment into a mode and a validated Config.

    Exits with status 2 and a message naming the flag when a value is out of range.
    """
    environment = os.environ if env is None else env
    try:
        parser = _build_parser(environment)
    except ValueError as exc:  # an environment value that does not parse
        argparse.ArgumentParser(prog="python -m reference_server").error(str(exc))
    try:
        ns = parser.parse_args(argv)
        config = Config(
            host=str(ns.host),
            port=int(ns.port),
            dynamodb_endpoint=str(ns.dynamodb_endpoint) if ns.dynamodb_endpoint else None,
            sqs_endpoint=str(ns.sqs_endpoint) if ns.sqs_endpoint else None,
            region=str(ns.region),
            table=str(ns.table),
            queue=str(ns.queue),
            dead_letter_queue=str(ns.dead_letter_queue),
            visibility_timeout=int(ns.visibility_timeout),
            retry_backoff_ms=int(ns.retry_backoff_ms),
            retry_backoff_max_ms=int(ns.retry_backoff_max_ms),
            concurrency=int(ns.concurrency),
            create_resources=bool(ns.create_resources),
            shutdown_grace=float(ns.shutdown_grace),
            backend_timeout=float(ns.backend_timeout),
            startup_timeout=float(ns.startup_timeout),
        )
    except ValueError as exc:  # an environment value that does not parse
        parser.error(str(exc))
    problem = validate(config)
    if problem:
        parser.error(problem)
    return Mode(ns.mode), config


def validate(config: Config) -> str | None:
    """Return what is wrong with ``config``, or None when it is usable."""
    checks: list[tuple[bool, str]] = [
        (0 <= config.port <= 65535, "--port must be in 0..65535"),
        (1 <= config.visibility_timeout <= 43200, "--visibility-timeout must be in 1..43200 seconds"),
        (config.retry_backoff_ms >= 0, "--retry-backoff-ms must be >= 0"),
        (
            config.retry_backoff_max_ms >= config.retry_backoff_ms,
            "--retry-backoff-max-ms must be >= --retry-backoff-ms",
        ),
        (config.concurrency >= 1, "--concurrency must be >= 1"),
        (config.shutdown_grace >= 0, "--shutdown-grace must be >= 0"),
        (config.backend_timeout > 0, "--backend-timeout must be > 0"),
        (config.startup_timeout > 0, "--startup-timeout must be > 0"),
        (
            bool(config.table and config.queue and config.dead_letter_queue),
            "table and queue names are required",
        ),
    ]
    for ok, message in checks:
        if not ok:
            return message
    return None
