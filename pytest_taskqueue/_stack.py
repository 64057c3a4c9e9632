"""The harness-owned reference stack: backends, Toxiproxy, the reference API server and a worker.

``ReferenceStack`` starts, on random free 127.0.0.1 ports picked up front:

- ElasticMQ (SQS), moto (DynamoDB) and Toxiproxy, in parallel;
- the Toxiproxy proxies ``api``, ``server_dynamodb``, ``server_sqs``, ``worker_dynamodb`` and
  ``worker_sqs`` as soon as Toxiproxy answers, so every link of the stack can be faulted;
- ``python -m reference_server serve`` and ``... worker`` at the same time as the backends (they
  retry their backends until ``--startup-timeout``), pointed at the proxies;
- both queues, created by the harness once ElasticMQ answers (it needs their URLs for the DLQ
  scenarios); the table is the server's own (``--create-resources``): its key schema is the
  reference's business, not the harness's.

With ``StackConfig(backend="docker")`` the three backends are containers instead
(``pytest_taskqueue._docker.DockerBackends``, docs/docker.md), started before the server and the
worker since Docker picks their ports; the proxies then live in the Toxiproxy container and the API
server listens on the host's address on the containers' network, where the ``api`` proxy reaches it.

It is ready when the API's gRPC health is SERVING and the worker printed ``worker ready``. Any
failure stops everything already started and raises ``BackendStartError`` (the root cause: a
backend's failure wins over the server timing out because of it). ``stop()`` stops the worker,
the server, Toxiproxy and the backends, in that order, and is safe to call on every exit path.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Self

from pytest_taskqueue._backends import ElasticMQ, LocalBackend, MotoServer, ToxiproxyServer, child_environment
from pytest_taskqueue._procs import (
    BackendStartError,
    GrpcHealthWait,
    LogLineWait,
    ManagedProcess,
    StartAborted,
    WaitStrategy,
    free_port,
    free_ports,
)

if TYPE_CHECKING:
    from pytest_taskqueue._docker import DockerBackends

__all__ = ["PROXY_NAMES", "ReferenceStack", "StackConfig"]

PROXY_NAMES = ("api", "server_dynamodb", "server_sqs", "worker_dynamodb", "worker_sqs")
"""The Toxiproxy proxies of the stack, one per link."""

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,70}$")
_TEST_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}


@dataclass(frozen=True)
class StackConfig:
    """How to run the reference stack; the defaults suit tests (short timeouts and backoffs).

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


@dataclass
class _Ports:
    elasticmq: int
    moto: int
    toxiproxy: int
    server: int
    api: int
    server_dynamodb: int
    server_sqs: int
    worker_dynamodb: int
    worker_sqs: int


class ReferenceStack:
    """The whole reference stack as one context manager (or ``start()``/``stop()``).

    After ``start()``: ``target`` (API through Toxiproxy), ``direct_target``, ``dynamodb_endpoint``,
    ``sqs_endpoint`` (direct backend URLs), ``toxiproxy_url``, ``table``, ``queue``,
    ``dead_letter_queue``, ``queue_url``, ``dead_letter_queue_url``, ``region``, and the processes
    ``server`` and ``worker`` (``ManagedProcess``: ``kill()``, ``start()``, ``restart()``, ...).
    """

    def __init__(self, config: StackConfig | None = None) -> None:
        self.config = config or StackConfig()
        self.timings: dict[str, float] = {}
        self.queue_url = ""
        self.dead_letter_queue_url = ""
        self._ports: _Ports | None = None
        self._log_dir: Path | None = None
        self._own_log_dir = False
        self._elasticmq: ElasticMQ | None = None
        self._moto: MotoServer | None = None
        self._toxiproxy: ToxiproxyServer | None = None
        self._docker: DockerBackends | None = None
        self._server_host = "127.0.0.1"
        self._server: ManagedProcess | None = None
        self._worker: ManagedProcess | None = None
        self._started = False
        self._failed = False
        self._lock = threading.Lock()

    # ---------------------------------------------------------------------------------- endpoints

    def _need(self) -> _Ports:
        if self._ports is None:
            raise RuntimeError("the reference stack is not started")
        return self._ports

    @property
    def target(self) -> str:
        """``127.0.0.1:PORT`` of the API through the ``api`` Toxiproxy proxy (what tests use)."""
        return f"127.0.0.1:{self._need().api}"

    @property
    def direct_target(self) -> str:
        """``HOST:PORT`` of the API server itself, bypassing Toxiproxy (``127.0.0.1``; with the
        docker backend, the host's address on the containers' network)."""
        return f"{self._server_host}:{self._need().server}"

    @property
    def dynamodb_endpoint(self) -> str:
        """moto's URL (direct, not through Toxiproxy)."""
        return f"http://127.0.0.1:{self._need().moto}"

    @property
    def sqs_endpoint(self) -> str:
        """ElasticMQ's URL (direct, not through Toxiproxy)."""
        return f"http://127.0.0.1:{self._need().elasticmq}"

    @property
    def toxiproxy_url(self) -> str:
        """Toxiproxy's HTTP API."""
        return f"http://127.0.0.1:{self._need().toxiproxy}"

    @property
    def proxies(self) -> dict[str, str]:
        """Each Toxiproxy proxy's listen address (``host:port``) by name."""
        ports = self._need()
        return {name: f"127.0.0.1:{getattr(ports, name)}" for name in PROXY_NAMES}

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
        """Seconds a received message stays invisible (the worker's lease)."""
        return self.config.visibility_timeout

    @property
    def log_dir(self) -> Path | None:
        """Folder of the process logs (one file per process); None before ``start``."""
        return self._log_dir

    @property
    def server(self) -> ManagedProcess:
        """The reference API server process."""
        if self._server is None:
            raise RuntimeError("the reference stack is not started")
        return self._server

    @property
    def worker(self) -> ManagedProcess:
        """The reference worker process."""
        if self._worker is None:
            raise RuntimeError("the reference stack is not started")
        return self._worker

    @property
    def backends(self) -> dict[str, LocalBackend]:
        """The backend processes by role (``sqs``, ``dynamodb``, ``toxiproxy``) once created."""
        found: dict[str, LocalBackend | None] = {
            "sqs": self._elasticmq,
            "dynamodb": self._moto,
            "toxiproxy": self._toxiproxy,
        }
        return {role: backend for role, backend in found.items() if backend is not None}

    def processes(self) -> dict[str, ManagedProcess]:
        """Every process of the stack that has been created, by name."""
        found: dict[str, ManagedProcess] = {}
        for backend in self.backends.values():
            if backend.process is not None:
                found[backend.name] = backend.process
        if self._server is not None:
            found[self._server.name] = self._server
        if self._worker is not None:
            found[self._worker.name] = self._worker
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
        return {
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
        if config.backend == "docker":
            self._start_docker()
            return
        picked = iter(free_ports(9 if config.api_port == 0 else 8))
        self._ports = ports = _Ports(
            elasticmq=next(picked),
            moto=next(picked),
            toxiproxy=next(picked),
            server=next(picked),
            api=config.api_port or next(picked),
            server_dynamodb=next(picked),
            server_sqs=next(picked),
            worker_dynamodb=next(picked),
            worker_sqs=next(picked),
        )
        log_dir = self._log_dir
        common: dict[str, Any] = {
            "log_dir": log_dir,
            "start_timeout": config.start_timeout,
            "progress": config.progress,
        }
        self._elasticmq = ElasticMQ(port=ports.elasticmq, cache=config.cache_dir, **common)
        self._moto = MotoServer(port=ports.moto, **common)
        # warn: its info level logs every connection (35 MB in a 60 s chaos run)
        self._toxiproxy = ToxiproxyServer(
            port=ports.toxiproxy, cache=config.cache_dir, log_level="warn", **common
        )
        self._server, self._worker = self._api_processes()
        began = time.monotonic()

        def timed(name: str, step: Callable[[], None]) -> Callable[[], None]:
            def run() -> None:
                step()
                self.timings[name] = time.monotonic() - began

            return run

        steps = {
            "elasticmq": timed("elasticmq", self._start_elasticmq),
            "moto": timed("moto", self._start_moto),
            "toxiproxy": timed("toxiproxy", self._start_toxiproxy),
        }
        for name, process in (("server", self._server), ("worker", self._worker)):
            if process is not None:
                steps[name] = timed(name, process.wait_ready)
        self._prepare_in_parallel(self._elasticmq, self._toxiproxy)
        self.timings["prepare"] = time.monotonic() - began
        began = time.monotonic()  # the other timings count from the first spawn
        # Every process is spawned before any readiness probe runs (no gRPC channel is open in
        # this process while it forks). ElasticMQ first: it is the slowest to start. A first run
        # downloads or builds here, before the server's start-up timeout begins.
        self._elasticmq.spawn()
        self._moto.spawn()
        self._toxiproxy.spawn()
        for process in (self._server, self._worker):
            if process is not None:
                process.start(wait=False)
        self._run_parallel(steps)

    @staticmethod
    def _prepare_in_parallel(*backends: LocalBackend) -> None:
        """Fill the cache for the backends side by side (first run: Maven and ``go install``)."""
        with concurrent.futures.ThreadPoolExecutor(
            len(backends), thread_name_prefix="taskqueue-prepare"
        ) as pool:
            futures = [pool.submit(backend.ensure_prepared) for backend in backends]
        for future in futures:
            future.result()

    def _start_docker(self) -> None:
        """The docker backend: the containers first (Docker picks their ports), then as ``_start``."""
        from pytest_taskqueue._docker import DockerBackends

        config = self.config
        images = {
            "dynamodb_image": config.dynamodb_image,
            "elasticmq_image": config.elasticmq_image,
            "toxiproxy_image": config.toxiproxy_image,
        }
        began = time.monotonic()
        self._docker = docker = DockerBackends(
            **{key: image for key, image in images.items() if image},
            start_timeout_s=config.start_timeout,
            api_port=config.api_port,
        ).start()
        self.timings["containers"] = time.monotonic() - began
        self._server_host = docker.host_gateway
        proxies = docker.proxies
        self._ports = _Ports(
            elasticmq=docker.sqs.port,
            moto=docker.dynamodb.port,
            toxiproxy=docker.toxiproxy.port,
            server=free_port(self._server_host),
            api=proxies["api"].port,
            server_dynamodb=proxies["server_dynamodb"].port,
            server_sqs=proxies["server_sqs"].port,
            worker_dynamodb=proxies["worker_dynamodb"].port,
            worker_sqs=proxies["worker_sqs"].port,
        )
        self._server, self._worker = self._api_processes()
        steps: dict[str, Callable[[], None]] = {
            "elasticmq": self._create_queues,
            "toxiproxy": self._create_proxies,
        }
        for name, process in (("server", self._server), ("worker", self._worker)):
            if process is not None:
                steps[name] = process.wait_ready
                process.start(wait=False)
        self._run_parallel(
            {name: functools.partial(self._timed, name, step, began) for name, step in steps.items()}
        )

    def _timed(self, name: str, step: Callable[[], None], began: float) -> None:
        step()
        self.timings[name] = time.monotonic() - began

    def _run_parallel(self, steps: dict[str, Callable[[], None]]) -> None:
        """Run the steps on threads; at the first failure stop everything, then raise the root cause.

        The root cause is the first failure seen; failures that follow from stopping the others
        (``StartAborted``) or from a backend going away are only reported if nothing else failed.
        """
        order = list(steps)
        causes: dict[str, BaseException] = {}
        later: dict[str, BaseException] = {}
        with concurrent.futures.ThreadPoolExecutor(len(steps), thread_name_prefix="taskqueue-stack") as pool:
            futures = {pool.submit(step): name for name, step in steps.items()}
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

    def _need_log_dir(self) -> Path:
        if self._log_dir is None:
            raise RuntimeError("the reference stack is not started")
        return self._log_dir

    def _api_processes(self) -> tuple[ManagedProcess | None, ManagedProcess | None]:
        """The API server and worker started with the backends: the reference ones.

        A subclass that runs another implementation after the backends are up (``--taskqueue-target-cmd``,
        ``pytest_taskqueue._faults.CommandStack``) returns ``(None, None)`` and sets them itself.
        """
        return self._reference_process("serve"), self._reference_process("worker")

    def _reference_process(self, mode: str) -> ManagedProcess:
        config = self.config
        ports = self._need()
        side = "server" if mode == "serve" else "worker"
        argv = [
            sys.executable,
            "-m",
            "reference_server",
            mode,
            "--host",
            self._server_host,
            "--port",
            str(ports.server if mode == "serve" else 0),
            "--dynamodb-endpoint",
            f"http://127.0.0.1:{getattr(ports, side + '_dynamodb')}",
            "--sqs-endpoint",
            f"http://127.0.0.1:{getattr(ports, side + '_sqs')}",
            "--region",
            config.region,
            "--table",
            self.table,
            "--queue",
            self.queue,
            "--dead-letter-queue",
            self.dead_letter_queue,
            "--visibility-timeout",
            str(config.visibility_timeout),
            "--retry-backoff-ms",
            str(config.retry_backoff_ms),
            "--retry-backoff-max-ms",
            str(config.retry_backoff_max_ms),
            "--concurrency",
            str(config.concurrency),
            "--create-resources",
            "--startup-timeout",
            str(config.start_timeout),
            "--shutdown-grace",
            str(config.shutdown_grace),
        ]
        env = {
            key: value
            for key, value in child_environment().items()
            if not key.startswith("AWS_")
            and not (key.startswith("TASKQUEUE_") and key != "TASKQUEUE_CACHE_DIR")
        }
        env.update(_TEST_CREDENTIALS, AWS_DEFAULT_REGION=config.region, PYTHONUNBUFFERED="1")
        wait: WaitStrategy
        if mode == "serve":
            name, wait = "reference server", GrpcHealthWait(f"{self._server_host}:{ports.server}")
        else:
            name, wait = "reference worker", LogLineWait(r"\bworker ready\b")
        return ManagedProcess(
            name,
            argv,
            log_path=self._need_log_dir() / f"reference-{side}.log",
            wait=wait,
            env=env,
            start_timeout=config.start_timeout,
            stop_timeout=config.shutdown_grace + 5.0,
            death_signal=signal.SIGKILL,
        )

    def _start_elasticmq(self) -> None:
        assert self._elasticmq is not None
        self._elasticmq.wait_ready()
        self._create_queues()

    def _create_queues(self) -> None:
        sqs = self._boto_client("sqs", self.sqs_endpoint)
        # The same attributes the reference server asks for, so its own CreateQueue agrees.
        self.dead_letter_queue_url = str(
            sqs.create_queue(
                QueueName=self.dead_letter_queue,
                Attributes={"MessageRetentionPeriod": str(14 * 24 * 3600)},
            )["QueueUrl"]
        )
        self.queue_url = str(
            sqs.create_queue(
                QueueName=self.queue,
                Attributes={"VisibilityTimeout": str(self.config.visibility_timeout)},
            )["QueueUrl"]
        )

    def _start_moto(self) -> None:
        assert self._moto is not None
        self._moto.wait_ready()

    def _start_toxiproxy(self) -> None:
        assert self._toxiproxy is not None
        self._toxiproxy.wait_ready()
        self._create_proxies()

    def _create_proxies(self) -> None:
        client = self.toxiproxy_client()
        if self._docker is not None:
            # In the Toxiproxy container: listen on its fixed ports, reach the backends by alias.
            docker = self._docker
            upstreams_in_docker = {
                "api": f"{self._server_host}:{self._need().server}",
                "server_dynamodb": docker.dynamodb_upstream,
                "worker_dynamodb": docker.dynamodb_upstream,
                "server_sqs": docker.sqs_upstream,
                "worker_sqs": docker.sqs_upstream,
            }
            for name in PROXY_NAMES:
                client.create_proxy(name, docker.proxy(name).listen, upstreams_in_docker[name])
            return
        ports = self._need()
        upstreams = {
            "api": ports.server,
            "server_dynamodb": ports.moto,
            "worker_dynamodb": ports.moto,
            "server_sqs": ports.elasticmq,
            "worker_sqs": ports.elasticmq,
        }
        for name in PROXY_NAMES:
            listen, upstream = f"127.0.0.1:{getattr(ports, name)}", f"127.0.0.1:{upstreams[name]}"
            try:
                client.create_proxy(name, listen, upstream)
            except Exception as error:
                toxiproxy = self._toxiproxy
                assert toxiproxy is not None
                raise BackendStartError(
                    "Toxiproxy",
                    f"cannot create proxy {name!r} listening on {listen} (to {upstream}): {error}",
                    command=toxiproxy.process.command_line if toxiproxy.process else None,
                    log_path=toxiproxy.log_path,
                    log_tail=toxiproxy.process.log_tail() if toxiproxy.process else "",
                ) from error

    def _boto_client(self, service: str, endpoint: str) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            service,
            endpoint_url=endpoint,
            region_name=self.config.region,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(
                retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=10
            ),
        )

    def _stop_processes(self) -> None:
        """Stop in order: worker, server, Toxiproxy, then both backends.

        The worker and the server get SIGTERM in that order and then shut down side by side (each
        finishes or releases its in-flight work while the backends are still up).
        """
        for process in (self._worker, self._server):
            if process is not None:
                with contextlib.suppress(Exception):
                    process.terminate()
        for process in (self._worker, self._server):
            if process is not None:
                with contextlib.suppress(Exception):
                    process.stop()
        for backend in (self._toxiproxy, self._elasticmq, self._moto):
            if backend is not None:
                with contextlib.suppress(Exception):
                    backend.stop()
        if self._docker is not None:
            self._docker.stop()

    def stop(self, *, keep_logs: bool = False) -> None:
        """Stop every process (worker, server, Toxiproxy, backends); idempotent, safe after a failure.

        The temporary log folder is removed after a clean run unless ``keep_logs`` (here or in the
        config); after a failed start it is kept, since the error names files in it.
        """
        self._stop_processes()
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
        where = self.target if self._ports is not None else "not started"
        return f"<ReferenceStack {where}>"
