"""A stack: one implementation run on harness-owned backends, every link through Toxiproxy.

``Stack(config, implementation)`` starts, on random free 127.0.0.1 ports:

- the backends: ElasticMQ (SQS), moto (DynamoDB) and Toxiproxy, as local processes
  (``pytest_taskqueue._backends.LocalBackends``) or, with ``StackConfig(backend="docker")``, as
  containers (``pytest_taskqueue._docker.DockerBackends``, docs/docker.md);
- the Toxiproxy proxies ``api``, ``server_dynamodb``, ``server_sqs``, ``worker_dynamodb`` and
  ``worker_sqs`` as soon as Toxiproxy answers, so every link of the stack can be faulted;
- the implementation's API command and its worker command if it has one
  (``pytest_taskqueue._implementation``), pointed at the proxies: with the backends when it retries
  them itself (the reference does), else once they answer.

The reference stack is one such stack: ``reference_stack(config)``, the reference server and
worker (``reference_implementation``). The implementation creates its own table and queues (spec
10.1); the stack reads the queues' URLs and visibility timeout once it is ready.

It is ready when the API's gRPC health is SERVING and the worker printed ``worker ready`` (spec
10.3; a worker without a readiness pattern must still run). Any failure stops everything already
started and raises ``BackendStartError`` (the root cause: a backend's failure wins over the server
timing out because of it). ``stop()`` stops the worker, the API process(es), Toxiproxy and the
backends, in that order, and is safe to call on every exit path.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Protocol, Self

from pytest_taskqueue._backends import LocalBackend, LocalBackends, ProxyEndpoint
from pytest_taskqueue._implementation import (
    TEST_CREDENTIALS,
    ImplementationCommands,
    implementation_environment,
    reference_implementation,
)
from pytest_taskqueue._procs import BackendStartError, ManagedProcess, StartAborted, free_port, free_ports
from pytest_taskqueue._waits import GrpcHealthWait, LogLineWait

if TYPE_CHECKING:
    pass

__all__ = ["PROXY_NAMES", "ApiProcess", "Stack", "StackConfig", "reference_stack"]

PROXY_NAMES = ("api", "server_dynamodb", "server_sqs", "worker_dynamodb", "worker_sqs")
"""The Toxiproxy proxies of the stack, one per link."""

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,70}$")


@dataclass(frozen=True)
class StackConfig:
    """How to run a stack; the defaults suit tests (short timeouts and backoffs).

    ``prefix`` names the table and queues (``<prefix>``, ``<prefix>``, ``<prefix>-dlq``) unless
    they are given; use a per-run or per-xdist-worker prefix. ``api_port`` 0 picks a free port for
    ``target`` (the API through its Toxiproxy proxy). ``log_dir`` None makes a temporary folder,
    removed on a clean stop unless ``keep_logs``.
    """

    prefix: str = "taskqueue"
    table: str | None = None
    queue: str | None = None
    dead_letter_queue: str | None = None
    region: str = "us-east-1"
    visibility_timeout: int = 1
    retry_backoff_ms: int = 50
    retry_backoff_max_ms: int = 200
    concurrency: int = 8
    api_port: int = 0
    shutdown_grace: float = 2.0
    start_timeout: float = 60.0
    log_dir: Path | None = None
    keep_logs: bool = False
    cache_dir: Path | None = None
    backend: str = "local"
    """``local`` (processes) or ``docker`` (containers through testcontainers; docs/docker.md)."""
    dynamodb_image: str | None = None
    elasticmq_image: str | None = None
    toxiproxy_image: str | None = None
    """The docker backend's images; None: its pinned defaults."""
    progress: IO[str] | None = field(default=sys.stderr, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in (self.table_name, self.queue_name, self.dead_letter_queue_name):
            if not _NAME_RE.match(name):
                raise ValueError(f"resource name {name!r}: use 1-70 letters, digits, '-' or '_'")
        if self.backend not in ("local", "docker"):
            raise ValueError(f"backend must be 'local' or 'docker', got {self.backend!r}")
        if not 0 <= self.api_port <= 65535:
            raise ValueError(f"api_port must be in 0..65535, got {self.api_port}")

    @property
    def table_name(self) -> str:
        """The DynamoDB table."""
        return self.table or self.prefix

    @property
    def queue_name(self) -> str:
        """The SQS work queue."""
        return self.queue or self.prefix

    @property
    def dead_letter_queue_name(self) -> str:
        """The SQS dead-letter queue."""
        return self.dead_letter_queue or f"{self.prefix}-dlq"


class _BackendSet(Protocol):
    """What a stack needs of its backends, local processes or containers alike."""

    @property
    def server_host(self) -> str: ...
    @property
    def sqs_endpoint(self) -> str: ...
    @property
    def dynamodb_endpoint(self) -> str: ...
    @property
    def toxiproxy_url(self) -> str: ...
    @property
    def sqs_upstream(self) -> str: ...
    @property
    def dynamodb_upstream(self) -> str: ...
    @property
    def proxies(self) -> Mapping[str, ProxyEndpoint]: ...
    def processes(self) -> dict[str, ManagedProcess]: ...
    def stop(self) -> None: ...


@dataclass(frozen=True)
class ApiProcess:
    """One more API process of the stack's implementation (``Stack.api_process``)."""

    process: ManagedProcess
    target: str
    """``host:port`` where it listens (direct, not through a proxy)."""


class Stack:
    """One implementation on harness-owned backends, as one context manager (or ``start()``/``stop()``).

    After ``start()``: ``target`` (API through Toxiproxy), ``direct_target``, ``dynamodb_endpoint``,
    ``sqs_endpoint`` (direct backend URLs), ``toxiproxy_url``, ``proxies``, ``table``, ``queue``,
    ``dead_letter_queue``, ``queue_url``, ``dead_letter_queue_url``, ``visibility_timeout``,
    ``region``, and the processes ``server`` and ``worker`` (``ManagedProcess``: ``kill()``,
    ``start()``, ``restart()``, ...; ``worker`` only when ``has_worker``).
    """

    def __init__(self, config: StackConfig, implementation: ImplementationCommands) -> None:
        if config.backend != "local" and "host" not in implementation.server.fields:
            raise ValueError(
                "--taskqueue-target-cmd runs the implementation beside local backends only "
                f"(the {config.backend!r} backend is not supported with it)"
            )
        self.config = config
        self.implementation = implementation
        self.timings: dict[str, float] = {}
        self.queue_url = ""
        self.dead_letter_queue_url = ""
        self._visibility: int | None = None
        self._backends: _BackendSet | None = None
        self._server_port = 0
        self._log_dir: Path | None = None
        self._own_log_dir = False
        self._server: ManagedProcess | None = None
        self._worker: ManagedProcess | None = None
        self._more_apis: list[ManagedProcess] = []
        self._sqs_client: Any = None
        self._started = False
        self._failed = False
        self._lock = threading.Lock()

    # ---------------------------------------------------------------------------------- endpoints

    def _need(self) -> _BackendSet:
        if self._backends is None:
            raise RuntimeError("the stack is not started")
        return self._backends

    @property
    def target(self) -> str:
        """``127.0.0.1:PORT`` of the API through the ``api`` Toxiproxy proxy (what tests use)."""
        return self._need().proxies["api"].address

    @property
    def direct_target(self) -> str:
        """``HOST:PORT`` of the API server itself, bypassing Toxiproxy (``127.0.0.1``; with the
        docker backend, the host's address on the containers' network)."""
        return f"{self._need().server_host}:{self._server_port}"

    @property
    def dynamodb_endpoint(self) -> str:
        """DynamoDB's URL (direct, not through Toxiproxy)."""
        return self._need().dynamodb_endpoint

    @property
    def sqs_endpoint(self) -> str:
        """SQS's (ElasticMQ's) URL (direct, not through Toxiproxy)."""
        return self._need().sqs_endpoint

    @property
    def toxiproxy_url(self) -> str:
        """Toxiproxy's HTTP API."""
        return self._need().toxiproxy_url

    @property
    def proxies(self) -> dict[str, str]:
        """Each Toxiproxy proxy's listen address on the host (``host:port``) by name."""
        return {name: slot.address for name, slot in self._need().proxies.items()}

    @property
    def table(self) -> str:
        """The DynamoDB table name."""
        return self.config.table_name

    @property
    def queue(self) -> str:
        """The SQS work queue name."""
        return self.config.queue_name

    @property
    def dead_letter_queue(self) -> str:
        """The SQS dead-letter queue name."""
        return self.config.dead_letter_queue_name

    @property
    def region(self) -> str:
        """The AWS region every client uses."""
        return self.config.region

    @property
    def visibility_timeout(self) -> int:
        """The work queue's visibility timeout as SQS reports it (else the configured one)."""
        return self._visibility if self._visibility is not None else self.config.visibility_timeout

    @property
    def log_dir(self) -> Path | None:
        """Folder of the process logs (one file per process); None before ``start``."""
        return self._log_dir

    @property
    def has_worker(self) -> bool:
        """True when the implementation has a separate worker process (``worker``)."""
        return self.implementation.worker is not None

    @property
    def server(self) -> ManagedProcess:
        """The implementation's API process."""
        if self._server is None:
            raise RuntimeError("the stack is not started")
        return self._server

    @property
    def worker(self) -> ManagedProcess:
        """The implementation's worker process (only when ``has_worker``)."""
        if self._worker is None:
            why = "the implementation has no worker command" if self._server else "the stack is not started"
            raise RuntimeError(why)
        return self._worker

    @property
    def backends(self) -> dict[str, LocalBackend]:
        """The local backend processes by role (``sqs``, ``dynamodb``, ``toxiproxy``); none on docker."""
        found = self._backends
        return found.by_role if isinstance(found, LocalBackends) else {}

    def processes(self) -> dict[str, ManagedProcess]:
        """Every process of the stack that has been created, by name."""
        found = dict(self._backends.processes()) if self._backends is not None else {}
        for process in (self._server, self._worker, *self._more_apis):
            if process is not None:
                found[process.name] = process
        return found

    def crashed(self) -> ManagedProcess | None:
        """A process that exited on its own (not through ``stop``/``kill``), or None."""
        for process in self.processes().values():
            if process.crashed:
                return process
        return None

    def toxiproxy_client(self) -> Any:
        """A ``fault_injection.Toxiproxy`` client of this stack's Toxiproxy."""
        from fault_injection import Toxiproxy

        return Toxiproxy(self.toxiproxy_url)

    def as_dict(self) -> dict[str, Any]:
        """The endpoints and names as JSON-ready data (``taskqueue-harness up --json``)."""
        data: dict[str, Any] = {
            "target": self.target,
            "dynamodb": self.dynamodb_endpoint,
            "sqs": self.sqs_endpoint,
            "toxiproxy": self.toxiproxy_url,
            "table": self.table,
            "queue": self.queue,
            "dead_letter_queue": self.dead_letter_queue,
            "region": self.region,
            "direct_target": self.direct_target,
            "queue_url": self.queue_url,
            "dead_letter_queue_url": self.dead_letter_queue_url,
            "visibility_timeout": self.visibility_timeout,
            "proxies": self.proxies,
            "log_dir": str(self._log_dir),
            "backend": self.config.backend,
        }
        if self.implementation.name != "reference":
            data["target_cmd"] = self._server.command_line if self._server is not None else None
            data["worker_cmd"] = self._worker.command_line if self._worker is not None else None
        return data

    # ------------------------------------------------------------------------- the implementation

    def placeholder_values(self, side: str, port: int | None = None) -> dict[str, str]:
        """What the command templates' placeholders stand for; ``side`` is ``server`` or ``worker``."""
        backends = self._need()
        return {
            "host": backends.server_host,
            "port": str(self._server_port if port is None else port),
            "dynamodb": f"http://{backends.proxies[side + '_dynamodb'].address}",
            "sqs": f"http://{backends.proxies[side + '_sqs'].address}",
            "region": self.region,
            "table": self.table,
            "queue": self.queue,
            "dlq": self.dead_letter_queue,
        }

    def _log_path(self, name: str) -> Path:
        if self._log_dir is None:
            raise RuntimeError("the stack is not started")
        return self._log_dir / name

    def _api(self, name: str, log_name: str, port: int) -> ManagedProcess:
        host = self._need().server_host
        return ManagedProcess(
            name,
            self.implementation.server.render(self.placeholder_values("server", port)),
            log_path=self._log_path(log_name),
            wait=GrpcHealthWait(f"{host}:{port}"),
            env=implementation_environment(self.region),
            start_timeout=self.config.start_timeout,
            stop_timeout=self.config.shutdown_grace + 5.0,
        )

    def _worker_process(self) -> ManagedProcess | None:
        implementation = self.implementation
        if implementation.worker is None:
            return None
        ready = implementation.worker_ready
        return ManagedProcess(
            implementation.worker_name,
            implementation.worker.render(self.placeholder_values("worker")),
            log_path=self._log_path(implementation.worker_log),
            wait=LogLineWait(ready) if ready is not None else None,
            env=implementation_environment(self.region),
            start_timeout=self.config.start_timeout,
            stop_timeout=self.config.shutdown_grace + 5.0,
        )

    def api_process(self, label: str = "second") -> ApiProcess:
        """One more API process of the implementation, on the same backends; not started.

        It listens on a free port of its own, reached directly (not through a Toxiproxy proxy);
        its DynamoDB and SQS links go through the same ``server_dynamodb``/``server_sqs`` proxies
        as the first API process's. It is stopped with the stack if not before.
        """
        host = self._need().server_host
        port = free_port(host)
        stem = Path(self.implementation.server_log)
        process = self._api(
            f"{self.implementation.server_name} [{label}]", f"{stem.stem}-{label}{stem.suffix}", port
        )
        self._more_apis.append(process)
        return ApiProcess(process, f"{host}:{port}")

    # ---------------------------------------------------------------------------------- lifecycle

    def start(self) -> Self:
        """Start everything and wait until ready; on any failure stop what started and raise."""
        with self._lock:
            if self._started:
                return self
            self._started = True
        self._failed = False
        self._own_log_dir = False
        self.timings = {}
        began = time.monotonic()
        try:
            self._start()
        except BaseException:
            self._failed = True
            self.stop()
            raise
        self.timings["total"] = time.monotonic() - began
        return self

    def _start(self) -> None:
        config = self.config
        if config.log_dir is not None:
            self._log_dir = Path(config.log_dir)
            self._log_dir.mkdir(parents=True, exist_ok=True)
        else:
            self._log_dir = Path(tempfile.mkdtemp(prefix="taskqueue-stack-"))
            self._own_log_dir = True
        backend_waits = self._start_backends()
        began = time.monotonic()  # the other timings count from the first spawn
        steps: dict[str, Callable[[], None]] = dict(backend_waits)
        toxiproxy_ready = steps.get("toxiproxy")

        def proxies() -> None:
            if toxiproxy_ready is not None:
                toxiproxy_ready()
            self._create_proxies()

        steps["toxiproxy"] = proxies
        steps["sqs client"] = self._make_sqs_client  # boto3's import and set-up, off the critical path
        implementation = self.implementation
        self._server = self._api(implementation.server_name, implementation.server_log, self._server_port)
        self._worker = self._worker_process()
        processes = {"server": self._server, "worker": self._worker}
        if not implementation.starts_with_backends:
            # It may not retry its backends: start it once they answer through their proxies.
            self._run_parallel(steps, began)
            steps = {}
        for process in (self._server, self._worker):
            if process is not None:
                process.start(wait=False)
        steps.update({name: process.wait_ready for name, process in processes.items() if process is not None})
        self._run_parallel(steps, began)
        self._read_queues()

    def _start_backends(self) -> dict[str, Callable[[], None]]:
        """Start the backend set; return the readiness waits still to run (none for containers)."""
        config = self.config
        if config.backend == "docker":
            from pytest_taskqueue._docker import DockerBackends

            images = {
                "dynamodb_image": config.dynamodb_image,
                "elasticmq_image": config.elasticmq_image,
                "toxiproxy_image": config.toxiproxy_image,
            }
            began = time.monotonic()
            docker = DockerBackends(
                **{key: image for key, image in images.items() if image},
                start_timeout_s=config.start_timeout,
                api_port=config.api_port,
            )
            self._backends = docker
            docker.start()
            self.timings["containers"] = time.monotonic() - began
            self._server_port = free_port(docker.server_host)
            return {}
        picked = iter(free_ports(4 + len(PROXY_NAMES) - (1 if config.api_port else 0)))
        ports = (next(picked), next(picked), next(picked))
        self._server_port = next(picked)
        proxy_ports = {name: next(picked) for name in PROXY_NAMES if name != "api" or not config.api_port}
        if config.api_port:
            proxy_ports["api"] = config.api_port
        assert self._log_dir is not None
        local = LocalBackends(
            ports,
            proxy_ports,
            log_dir=self._log_dir,
            start_timeout=config.start_timeout,
            progress=config.progress,
            cache=config.cache_dir,
        )
        self._backends = local
        began = time.monotonic()
        waits = local.start()  # a first run downloads or builds here, before any start-up timeout
        self.timings["prepare"] = time.monotonic() - began
        return waits

    def _run_parallel(self, steps: dict[str, Callable[[], None]], began: float) -> None:
        """Run the steps on threads; at the first failure stop everything, then raise the root cause.

        The root cause is the first failure seen; failures that follow from stopping the others
        (``StartAborted``) or from a backend going away are only reported if nothing else failed.
        Each step's time from ``began`` goes into ``timings``.
        """
        if not steps:
            return

        def timed(name: str, step: Callable[[], None]) -> None:
            step()
            self.timings[name] = time.monotonic() - began

        order = list(steps)
        causes: dict[str, BaseException] = {}
        later: dict[str, BaseException] = {}
        with concurrent.futures.ThreadPoolExecutor(len(steps), thread_name_prefix="taskqueue-stack") as pool:
            futures = {pool.submit(timed, name, step): name for name, step in steps.items()}
            try:
                done, _ = concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_EXCEPTION)
                for future in done:
                    error = future.exception()
                    if error is not None and not isinstance(error, StartAborted):
                        causes[futures[future]] = error
            finally:
                if causes or any(not future.done() for future in futures):
                    # Stopping the processes makes every remaining wait return at once.
                    self._stop_processes()
                for future, name in futures.items():
                    with contextlib.suppress(BaseException):
                        error = future.exception()
                        if error is not None and name not in causes:
                            later[name] = error
        for found in (causes, {n: e for n, e in later.items() if not isinstance(e, StartAborted)}, later):
            if found:
                raise found[min(found, key=order.index)]

    def _create_proxies(self) -> None:
        backends = self._need()
        client = self.toxiproxy_client()
        upstreams = {
            "api": f"{backends.server_host}:{self._server_port}",
            "server_dynamodb": backends.dynamodb_upstream,
            "worker_dynamodb": backends.dynamodb_upstream,
            "server_sqs": backends.sqs_upstream,
            "worker_sqs": backends.sqs_upstream,
        }
        for name in PROXY_NAMES:
            listen, upstream = backends.proxies[name].listen, upstreams[name]
            try:
                client.create_proxy(name, listen, upstream)
            except Exception as error:
                process = backends.processes().get("Toxiproxy")
                raise BackendStartError(
                    "Toxiproxy",
                    f"cannot create proxy {name!r} listening on {listen} (to {upstream}): {error}",
                    command=process.command_line if process else None,
                    log_path=process.log_path if process else None,
                    log_tail=process.log_tail() if process else "",
                ) from error

    def _make_sqs_client(self) -> None:
        import boto3
        from botocore.config import Config

        self._sqs_client = boto3.client(
            "sqs",
            endpoint_url=self.sqs_endpoint,
            region_name=self.region,
            aws_access_key_id=TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            config=Config(
                retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=10
            ),
        )

    def _read_queues(self) -> None:
        """Learn the queues' URLs and visibility timeout, if the implementation created them."""
        if self._sqs_client is None:
            self._make_sqs_client()
        sqs = self._sqs_client
        with contextlib.suppress(Exception):
            self.dead_letter_queue_url = str(sqs.get_queue_url(QueueName=self.dead_letter_queue)["QueueUrl"])
        with contextlib.suppress(Exception):
            self.queue_url = str(sqs.get_queue_url(QueueName=self.queue)["QueueUrl"])
            answer = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["VisibilityTimeout"])
            self._visibility = int(answer["Attributes"]["VisibilityTimeout"])

    def _stop_processes(self) -> None:
        """Stop in order: worker, API process(es), then the backends (Toxiproxy first).

        The worker and the API processes get SIGTERM in that order and then shut down side by
        side (each finishes or releases its in-flight work while the backends are still up).
        """
        ours = [process for process in (self._worker, self._server, *self._more_apis) if process is not None]
        for process in ours:
            with contextlib.suppress(Exception):
                process.terminate()
        for process in ours:
            with contextlib.suppress(Exception):
                process.stop()
        if self._backends is not None:
            self._backends.stop()

    def stop(self, *, keep_logs: bool = False) -> None:
        """Stop every process (worker, API, Toxiproxy, backends); idempotent, safe after a failure.

        The temporary log folder is removed after a clean run unless ``keep_logs`` (here or in the
        config); after a failed start it is kept, since the error names files in it.
        """
        self._stop_processes()
        self._more_apis.clear()
        with self._lock:
            self._started = False  # may be started again (new ports, new processes)
        self._failed = self._failed or keep_logs
        if self._own_log_dir and not self._failed and not self.config.keep_logs and self._log_dir:
            shutil.rmtree(self._log_dir, ignore_errors=True)
            self._own_log_dir = False

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.target if self._backends is not None else "not started"
        return f"<Stack {self.implementation.name} {where}: {self.implementation.server.text}>"


def reference_stack(config: StackConfig | None = None) -> Stack:
    """The reference stack: the reference server and worker on harness-owned backends."""
    config = config or StackConfig()
    return Stack(config, reference_implementation(config))
