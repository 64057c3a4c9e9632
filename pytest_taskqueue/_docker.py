"""The docker backend: DynamoDB, SQS (ElasticMQ) and Toxiproxy as containers, via testcontainers.

``--taskqueue-backend=docker`` uses this instead of the process-based local backends. One
:class:`DockerBackends` is one set of three containers on a user-defined network of its own:

- DynamoDB (default ``amazon/dynamodb-local``, run ``-sharedDb -inMemory``), alias ``dynamodb:8000``;
- ElasticMQ (default ``softwaremill/elasticmq-native``), alias ``elasticmq:9324``;
- Toxiproxy (default ``ghcr.io/shopify/toxiproxy``): its API on 8474 and a fixed container port per
  proxy of the reference stack (:data:`PROXY_PORTS`), so the host mapping of every proxy is known
  before the proxy exists. A proxy listens on ``0.0.0.0:<its port>`` inside the container and
  reaches the other two containers by alias; a process on the host (the API server, say) is
  reached at :attr:`DockerBackends.host_gateway`, the host's address on the set's network.

Every published port is bound to 127.0.0.1 and readiness is probed over HTTP on it, with a
deadline; a backend that does not answer in time, or whose container exits, fails the start with
the tail of its container log.

Cleanup does not rely on testcontainers' Ryuk reaper (its image is not always pullable, and it
would be one more container to trust): every container and network carries labels naming the
set, the session, the xdist worker and the owning process (``host:pid``), and :meth:`stop` removes
whatever carries the set's label, so a start interrupted half way leaves nothing either. Stop
runs on ``__exit__``, at interpreter exit (``atexit``) and on SIGTERM (turned into
``KeyboardInterrupt`` while a set is live, if nobody else handles SIGTERM); Ctrl-C during start
or stop is held back until the Docker calls in flight are done. Sets whose owning process died
without any of that (SIGKILL) are swept by the next start on the same host, never a set whose
owner still runs, so pytest-xdist workers never tear down each other's containers.

No Docker daemon: :class:`DockerUnavailableError`, whose message is the single line to show.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any, cast

from pytest_taskqueue._backends import ProxyEndpoint, dynamodb_ready, sqs_ready, toxiproxy_ready
from pytest_taskqueue._errors import UserMessageError
from pytest_taskqueue._images import DEFAULT_DYNAMODB_IMAGE, DEFAULT_ELASTICMQ_IMAGE, DEFAULT_TOXIPROXY_IMAGE
from pytest_taskqueue._procs import ManagedProcess, read_process
from pytest_taskqueue._waits import NotReady, TargetExited, WaitStrategy, wait_until_ready

__all__ = [
    "DEFAULT_DYNAMODB_IMAGE",
    "DEFAULT_ELASTICMQ_IMAGE",
    "DEFAULT_TOXIPROXY_IMAGE",
    "DYNAMODB_LOCAL_COMMAND",
    "LABEL_PREFIX",
    "PROXY_PORTS",
    "DockerBackendError",
    "DockerBackends",
    "DockerService",
    "DockerUnavailableError",
    "ProxyEndpoint",
    "check_docker",
    "remove_leftovers",
]

DYNAMODB_LOCAL_COMMAND: tuple[str, ...] = ("-jar", "DynamoDBLocal.jar", "-sharedDb", "-inMemory")
"""The command for DynamoDB Local images; any other DynamoDB image runs its own default command."""

_DYNAMODB_LOCAL_REPOSITORY = "amazon/dynamodb-local"
DYNAMODB_PORT = 8000
ELASTICMQ_PORT = 9324
TOXIPROXY_API_PORT = 8474

PROXY_PORTS: Mapping[str, int] = {
    "api": 10000,
    "server_dynamodb": 10001,
    "server_sqs": 10002,
    "worker_dynamodb": 10003,
    "worker_sqs": 10004,
}
"""Container port of each proxy of the reference stack inside the Toxiproxy container."""

LABEL_PREFIX = "org.pytest-taskqueue"
_LABEL_SET = f"{LABEL_PREFIX}.set"
_LABEL_SESSION = f"{LABEL_PREFIX}.session"
_LABEL_WORKER = f"{LABEL_PREFIX}.worker"
_LABEL_OWNER = f"{LABEL_PREFIX}.owner"
_LABEL_OWNER_START = f"{LABEL_PREFIX}.owner-start"
_LABEL_ROLE = f"{LABEL_PREFIX}.role"

_PING_TIMEOUT_S = 5.0
_LOG_TAIL_LINES = 40
_PROBE_TIMEOUT_S = 2.0

_OPTION_OF_ROLE = {
    "dynamodb": "--taskqueue-dynamodb-image",
    "sqs": "--taskqueue-elasticmq-image",
    "toxiproxy": "--taskqueue-toxiproxy-image",
}


class DockerUnavailableError(UserMessageError):
    """No Docker daemon answers; ``str()`` is the one line to show the user, no traceback needed."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(
            f"taskqueue: docker backend selected but no Docker daemon answers ({detail}); "
            "use --taskqueue-backend=local"
        )


class DockerBackendError(UserMessageError):
    """A container of the docker backend could not be provided or did not become ready.

    The message names the backend and its image; for a readiness failure it carries the tail of
    the container's log.
    """


@dataclass(frozen=True)
class DockerService:
    """One running backend container: where the host reaches it and where containers reach it."""

    role: str
    """``dynamodb``, ``sqs`` or ``toxiproxy``."""
    image: str
    container_id: str
    alias: str
    """Its name on the set's network."""
    container_port: int
    host: str
    port: int
    """The host port mapped to ``container_port``."""

    @property
    def endpoint(self) -> str:
        """HTTP URL of the service from the host (for Toxiproxy: its API)."""
        return f"http://{self.host}:{self.port}"

    @property
    def internal_address(self) -> str:
        """``alias:port`` from another container on the set's network (a proxy's upstream)."""
        return f"{self.alias}:{self.container_port}"


# ---------------------------------------------------------------------------------------------
# Daemon access


def _testcontainers() -> Any:
    """Import testcontainers with its Ryuk reaper disabled (this module cleans up by label).

    Imported lazily: it is an optional dependency (extra ``docker``) and the local backend must
    not need it.
    """
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
    try:
        from testcontainers.core.config import testcontainers_config
    except ImportError as exc:
        raise DockerBackendError(
            "taskqueue: the docker backend needs testcontainers: pip install 'pytest-taskqueue[docker]'"
        ) from exc
    testcontainers_config.ryuk_disabled = True
    return testcontainers_config


def _docker_host() -> str | None:
    """The daemon address testcontainers will use (TESTCONTAINERS_HOST_OVERRIDE, DOCKER_HOST, context)."""
    _testcontainers()
    from testcontainers.core.docker_client import get_docker_host

    with contextlib.suppress(Exception):
        return get_docker_host()
    return os.environ.get("DOCKER_HOST")


def _root_cause(exc: BaseException) -> str:
    """The most specific short reason in an exception chain (the OS error, if there is one)."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    best: str | None = None
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return current.strerror
        explanation = getattr(current, "explanation", None)  # docker.errors.APIError: the daemon's words
        if best is None and isinstance(explanation, str) and explanation.strip():
            best = explanation.strip().splitlines()[0]
        if best is None and str(current):
            best = str(current).splitlines()[0]
        pending.extend(arg for arg in current.args if isinstance(arg, BaseException))
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                pending.append(linked)
    return best or type(exc).__name__


def _client(timeout_s: float | None = None) -> Any:
    """A docker SDK client for the daemon testcontainers uses; raises DockerUnavailableError."""
    host = _docker_host()
    display = host or "unix:///var/run/docker.sock"
    try:
        import docker  # type: ignore[import-untyped]

        kwargs: dict[str, Any] = {} if timeout_s is None else {"timeout": timeout_s}
        client = docker.DockerClient(base_url=host, **kwargs) if host else docker.from_env(**kwargs)
        client.ping()
    except Exception as exc:
        raise DockerUnavailableError(f"{display}: {_root_cause(exc)}") from None
    return client


def check_docker(timeout_s: float = _PING_TIMEOUT_S) -> str:
    """Ping the Docker daemon and return its version.

    Raises:
        DockerUnavailableError: nothing answers (the message is the one line to show).
    """
    client = _client(timeout_s)
    try:
        version = client.version()
    except Exception as exc:
        raise DockerUnavailableError(_root_cause(exc)) from None
    finally:
        client.close()
    return str(version.get("Version", "unknown"))


# ---------------------------------------------------------------------------------------------
# Process-wide bookkeeping: session id, live sets, exit hooks

_SESSION_ID = os.environ.get("PYTEST_XDIST_TESTRUNUID") or uuid.uuid4().hex
_HOSTNAME = socket.gethostname()
_OWNER = f"{_HOSTNAME}:{os.getpid()}"


def _process_start(pid: int) -> str:
    """A process's start time in clock ticks since boot (Linux), or "" where unknown.

    With the pid it identifies the process: a pid reused by a later process has another start.
    """
    record = read_process(pid)
    return str(record.start_ticks) if record is not None else ""


_OWNER_START = _process_start(os.getpid())
_LIVE: dict[str, DockerBackends] = {}
_LIVE_LOCK = threading.Lock()
_ATEXIT_REGISTERED = False


def _stop_all_live() -> None:
    """atexit: stop every set this process still has."""
    with _LIVE_LOCK:
        live = list(_LIVE.values())
    for backends in live:
        with contextlib.suppress(Exception):
            backends.stop()


def _sigterm_to_interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM while a set is live: unwind like Ctrl-C, so every ``finally`` and ``__exit__`` runs."""
    raise KeyboardInterrupt(f"signal {signum}")


def _install_exit_hooks() -> None:
    """atexit hook once per process; SIGTERM -> KeyboardInterrupt while sets are live.

    SIGTERM is taken over only when nobody handles it (its default kills the process without
    running ``atexit``, which would leak the containers) and only from the main thread.
    """
    global _ATEXIT_REGISTERED
    if not _ATEXIT_REGISTERED:
        _ATEXIT_REGISTERED = True
        atexit.register(_stop_all_live)
    if threading.current_thread() is threading.main_thread():
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
                signal.signal(signal.SIGTERM, _sigterm_to_interrupt)


def _release_sigterm() -> None:
    """Give SIGTERM its default back once no set is live (if the handler is still ours)."""
    if threading.current_thread() is threading.main_thread():
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(signal.SIGTERM) is _sigterm_to_interrupt:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back while Docker calls that must finish together run.

    A Ctrl-C between "the daemon created a container" and "we know its id" is what leaks
    containers; here the signal is recorded and re-raised once the block is done. Only the main
    thread can change handlers; elsewhere the block runs unprotected (label cleanup still works).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def record(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous: dict[signal.Signals, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, OSError):
            previous[sig] = signal.signal(sig, record)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if received:
            # Deliver the first held signal again, now to the handler that was in place.
            signal.raise_signal(received[0])


def _owner_alive(owner: str, start: str) -> bool:
    """Whether the ``host:pid`` that owns a set may still run (other hosts count as alive).

    ``start`` is the owner's start time from its label: a live pid with another start time is a
    later process that got the same pid, so the owner is gone.
    """
    host, _, pid_text = owner.rpartition(":")
    if host != _HOSTNAME or not pid_text.isdigit():
        return True
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    current = _process_start(int(pid_text))
    return not (start and current and current != start)


def _remove_labelled(client: Any, label_filter: str) -> int:
    """Force-remove every container, then every network, matching a label filter."""
    removed = 0
    import docker

    for container in client.containers.list(all=True, filters={"label": label_filter}):
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True, v=True)
            removed += 1
    for network in client.networks.list(filters={"label": label_filter}):
        with contextlib.suppress(docker.errors.NotFound):
            network.remove()
    return removed


def remove_leftovers(*, include_live: bool = False) -> int:
    """Remove containers and networks of sets whose owning process is gone; return how many containers.

    Only sets owned by a process of this host that no longer exists are touched, unless
    ``include_live`` (a manual cleanup: every set of the toolkit on this daemon).
    """
    client = _client()
    try:
        owners: set[tuple[str, str]] = set()
        for container in client.containers.list(all=True, filters={"label": _LABEL_OWNER}):
            labels = container.labels
            owners.add((labels.get(_LABEL_OWNER, ""), labels.get(_LABEL_OWNER_START, "")))
        for network in client.networks.list(filters={"label": _LABEL_OWNER}):
            labels = network.attrs.get("Labels") or {}
            owners.add((labels.get(_LABEL_OWNER, ""), labels.get(_LABEL_OWNER_START, "")))
        removed = 0
        for owner, start in sorted(owners):
            if owner == _OWNER and not include_live:
                continue
            if include_live or not _owner_alive(owner, start):
                removed += _remove_labelled(client, f"{_LABEL_OWNER}={owner}")
        return removed
    finally:
        client.close()


# ---------------------------------------------------------------------------------------------
# A container as a wait target


class _ContainerTarget:
    """A started container as a ``pytest_taskqueue._waits.WaitTarget``."""

    def __init__(self, container: Any) -> None:
        self._container = container

    def exit_status(self) -> str | None:
        wrapped = self._container.get_wrapped_container()
        wrapped.reload()
        if wrapped.status in ("exited", "dead"):
            return f"exit code {wrapped.attrs.get('State', {}).get('ExitCode')}"
        return None

    def output(self) -> str:
        return bytes(self._container.get_wrapped_container().logs()).decode("utf-8", "replace")

    def wait_for_exit(self, seconds: float) -> None:
        time.sleep(seconds)  # the pace between probes; the exit is checked before each probe


# ---------------------------------------------------------------------------------------------
# The set


@dataclass
class _Started:
    role: str
    image: str
    alias: str
    container_port: int
    container: Any
    """The testcontainers DockerContainer."""
    ready: Callable[[str], WaitStrategy]
    """Its readiness, given its endpoint on the host."""


class DockerBackends:
    """DynamoDB, ElasticMQ and Toxiproxy containers for one test session (or one xdist worker).

    Use as a context manager (or :meth:`start` / :meth:`stop`); nothing is left on any exit path.
    Endpoints are HTTP URLs on 127.0.0.1 mapped ports: :attr:`dynamodb_endpoint`,
    :attr:`sqs_endpoint`, :attr:`toxiproxy_url`; :attr:`proxies` gives every proxy slot's
    ``listen`` (inside the Toxiproxy container) and host address, :attr:`dynamodb_upstream` /
    :attr:`sqs_upstream` the upstreams of the backend proxies.

    Args:
        dynamodb_image / elasticmq_image / toxiproxy_image: images to run (defaults pinned by tag).
        dynamodb_command: the DynamoDB container's command; by default
            :data:`DYNAMODB_LOCAL_COMMAND` for ``amazon/dynamodb-local`` images and the image's own
            command for any other image (a stand-in such as moto's server).
        start_timeout_s: deadline for all three to answer their probe.
        api_port: host port to publish the ``api`` proxy slot on (0: a free one, chosen by Docker),
            for a fixed target such as ``taskqueue-harness up --port 50051``.
        worker_id: labels and names the set (default: ``$PYTEST_XDIST_WORKER`` or ``main``).
    """

    def __init__(
        self,
        *,
        dynamodb_image: str = DEFAULT_DYNAMODB_IMAGE,
        elasticmq_image: str = DEFAULT_ELASTICMQ_IMAGE,
        toxiproxy_image: str = DEFAULT_TOXIPROXY_IMAGE,
        dynamodb_command: Sequence[str] | None = None,
        start_timeout_s: float = 120.0,
        api_port: int = 0,
        worker_id: str | None = None,
    ) -> None:
        self.dynamodb_image = dynamodb_image
        self.elasticmq_image = elasticmq_image
        self.toxiproxy_image = toxiproxy_image
        if dynamodb_command is None and _is_dynamodb_local(dynamodb_image):
            dynamodb_command = DYNAMODB_LOCAL_COMMAND
        self.dynamodb_command: tuple[str, ...] | None = (
            tuple(dynamodb_command) if dynamodb_command is not None else None
        )
        self.start_timeout_s = start_timeout_s
        self.api_port = api_port
        self.worker_id = worker_id or os.environ.get("PYTEST_XDIST_WORKER") or "main"
        self.set_id = uuid.uuid4().hex[:12]
        self.labels: dict[str, str] = {
            _LABEL_SET: self.set_id,
            _LABEL_SESSION: _SESSION_ID,
            _LABEL_WORKER: self.worker_id,
            _LABEL_OWNER: _OWNER,
            _LABEL_OWNER_START: _OWNER_START,
        }
        self._client: Any = None
        self._network: Any = None
        self._network_name = f"taskqueue-{self.worker_id}-{self.set_id}"
        self._started: dict[str, _Started] = {}
        self._services: dict[str, DockerService] = {}
        self._proxies: dict[str, ProxyEndpoint] = {}
        self._host = "127.0.0.1"
        self._gateway: str | None = None

    def __repr__(self) -> str:
        state = "running" if self._services else "stopped"
        return f"DockerBackends(set={self.set_id}, worker={self.worker_id}, {state})"

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> DockerBackends:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> DockerBackends:
        """Start the three containers and wait until each answers; on any failure, remove them all.

        Raises:
            DockerUnavailableError: no daemon answers.
            DockerBackendError: an image is missing and cannot be pulled, or a backend did not
                become ready (with its log tail).
        """
        if self._services:
            return self
        self._client = _client()
        _testcontainers()
        _install_exit_hooks()
        with _LIVE_LOCK:
            _LIVE[self.set_id] = self
        try:
            with contextlib.suppress(Exception):
                remove_leftovers()
            self._host = _published_host(self._client)
            for role, image in (
                ("dynamodb", self.dynamodb_image),
                ("sqs", self.elasticmq_image),
                ("toxiproxy", self.toxiproxy_image),
            ):
                self._ensure_image(role, image)
            self._create_network()
            self._start_containers()
            self._wait_ready()
            self._collect_endpoints()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Remove every container and the network of this set (by label, so also half-started ones).

        Idempotent; Ctrl-C during it is held back until it is done.
        """
        with _LIVE_LOCK:
            live = _LIVE.pop(self.set_id, None) is not None
            none_left = not _LIVE
        if none_left:
            _release_sigterm()
        if not live and self._client is None:
            return
        with _interrupts_deferred():
            client = self._client
            try:
                if client is None:
                    client = _client()
                _remove_labelled(client, f"{_LABEL_SET}={self.set_id}")
            except DockerUnavailableError:
                pass
            finally:
                for started in self._started.values():
                    with contextlib.suppress(Exception):
                        started.container.get_docker_client().client.close()
                if self._network is not None:
                    with contextlib.suppress(Exception):
                        self._network._docker.client.close()
                if client is not None:
                    with contextlib.suppress(Exception):
                        client.close()
                self._client = None
                self._network = None
                self._started.clear()
                self._services.clear()
                self._proxies.clear()
                self._gateway = None

    # -- what callers use ------------------------------------------------------------------------

    def _service(self, role: str) -> DockerService:
        try:
            return self._services[role]
        except KeyError:
            raise RuntimeError(f"{self!r} is not started") from None

    @property
    def dynamodb(self) -> DockerService:
        """The DynamoDB container (``.endpoint``: URL from the host)."""
        return self._service("dynamodb")

    @property
    def sqs(self) -> DockerService:
        """The ElasticMQ container (``.endpoint``: URL from the host)."""
        return self._service("sqs")

    @property
    def toxiproxy(self) -> DockerService:
        """The Toxiproxy container (``.endpoint``: its API URL from the host)."""
        return self._service("toxiproxy")

    @property
    def dynamodb_endpoint(self) -> str:
        """DynamoDB's URL from the host, direct (not through a proxy)."""
        return self.dynamodb.endpoint

    @property
    def sqs_endpoint(self) -> str:
        """ElasticMQ's URL from the host, direct (not through a proxy)."""
        return self.sqs.endpoint

    @property
    def toxiproxy_url(self) -> str:
        """Toxiproxy's API URL from the host."""
        return self.toxiproxy.endpoint

    @property
    def dynamodb_upstream(self) -> str:
        """The upstream for a DynamoDB proxy created in the Toxiproxy container."""
        return self.dynamodb.internal_address

    @property
    def sqs_upstream(self) -> str:
        """The upstream for an SQS proxy created in the Toxiproxy container."""
        return self.sqs.internal_address

    @property
    def host_gateway(self) -> str:
        """The host's IP address on the set's network: a host process the Toxiproxy container
        must reach (the ``api`` proxy's upstream) listens there."""
        self._service("toxiproxy")
        assert self._gateway is not None
        return self._gateway

    @property
    def server_host(self) -> str:
        """Where a host process the proxies reach listens: :attr:`host_gateway`."""
        return self.host_gateway

    def processes(self) -> dict[str, ManagedProcess]:
        """No host processes: the backends are containers."""
        return {}

    @property
    def proxies(self) -> Mapping[str, ProxyEndpoint]:
        """Every proxy slot of :data:`PROXY_PORTS`: its ``listen`` and its host address."""
        self._service("toxiproxy")
        return dict(self._proxies)

    def proxy(self, name: str) -> ProxyEndpoint:
        """One proxy slot by name (``api``, ``server_dynamodb``, ...)."""
        try:
            return self.proxies[name]
        except KeyError:
            raise KeyError(f"no proxy slot {name!r}; slots: {', '.join(PROXY_PORTS)}") from None

    def logs(self, role: str, lines: int = _LOG_TAIL_LINES) -> str:
        """The tail of a backend container's log (``dynamodb``, ``sqs`` or ``toxiproxy``)."""
        return _log_tail(self._started[role].container, lines)

    def as_dict(self) -> dict[str, Any]:
        """Endpoints and identifiers, JSON-ready (for ``taskqueue-harness up --json`` and reports)."""
        return {
            "backend": "docker",
            "set": self.set_id,
            "worker": self.worker_id,
            "dynamodb": self.dynamodb_endpoint,
            "sqs": self.sqs_endpoint,
            "toxiproxy": self.toxiproxy_url,
            "images": {
                "dynamodb": self.dynamodb_image,
                "elasticmq": self.elasticmq_image,
                "toxiproxy": self.toxiproxy_image,
            },
            "proxies": {name: p.address for name, p in self.proxies.items()},
        }

    # -- start, step by step ---------------------------------------------------------------------

    def _ensure_image(self, role: str, image: str) -> None:
        """Make sure an image is present, pulling it once if not; a failed pull is one clear line."""
        import docker

        try:
            self._client.images.get(image)
            return
        except docker.errors.ImageNotFound:
            pass
        print(f"taskqueue: pulling {image} (first use)...", file=sys.stderr, flush=True)
        try:
            self._client.images.pull(image)
        except Exception as exc:
            raise DockerBackendError(
                f"taskqueue: docker image {image} ({role}) is not present and could not be pulled "
                f"({_root_cause(exc)}); pull or build it, or choose another with {_OPTION_OF_ROLE[role]}"
            ) from None

    def _create_network(self) -> None:
        from testcontainers.core.network import Network

        self._network = Network(docker_network_kw={"labels": dict(self.labels)})
        self._network.name = self._network_name
        with _interrupts_deferred():
            self._network.create()

    def _container(
        self, role: str, image: str, alias: str, ports: Sequence[int], fixed: Mapping[int, int] | None = None
    ) -> Any:
        from testcontainers.core.container import DockerContainer

        labels = {**self.labels, _LABEL_ROLE: role}
        container = DockerContainer(
            image,
            name=f"taskqueue-{self.worker_id}-{role}-{self.set_id}",
            labels=labels,
        )
        container.with_network(self._network).with_network_aliases(alias)
        bind_ip = "127.0.0.1" if self._host == "127.0.0.1" else "0.0.0.0"
        for port in ports:
            # docker-py accepts (ip, None): a random host port on that address only. testcontainers
            # types the value as an int, hence the cast.
            host_port = (fixed or {}).get(port) or None
            container.ports[f"{port}/tcp"] = cast(Any, (bind_ip, host_port))
        return container

    def _start_containers(self) -> None:
        specs: list[
            tuple[str, str, str, int, Sequence[int], Sequence[str] | None, Callable[[str], WaitStrategy]]
        ] = [
            (
                "dynamodb",
                self.dynamodb_image,
                "dynamodb",
                DYNAMODB_PORT,
                [DYNAMODB_PORT],
                self.dynamodb_command,
                # Any answer: DynamoDB images need not accept the probe's fake signature.
                lambda endpoint: dynamodb_ready(endpoint, any_answer=True, probe_timeout=_PROBE_TIMEOUT_S),
            ),
            (
                "sqs",
                self.elasticmq_image,
                "elasticmq",
                ELASTICMQ_PORT,
                [ELASTICMQ_PORT],
                None,
                lambda endpoint: sqs_ready(endpoint, probe_timeout=_PROBE_TIMEOUT_S),
            ),
            (
                "toxiproxy",
                self.toxiproxy_image,
                "toxiproxy",
                TOXIPROXY_API_PORT,
                [TOXIPROXY_API_PORT, *PROXY_PORTS.values()],
                ["-host=0.0.0.0", f"-port={TOXIPROXY_API_PORT}"],
                lambda endpoint: toxiproxy_ready(endpoint, probe_timeout=_PROBE_TIMEOUT_S),
            ),
        ]
        for role, image, alias, port, ports, command, ready in specs:
            fixed = {PROXY_PORTS["api"]: self.api_port} if role == "toxiproxy" else None
            container = self._container(role, image, alias, ports, fixed)
            if command is not None:
                container.with_command(list(command))
            self._started[role] = _Started(role, image, alias, port, container, ready)
            with _interrupts_deferred():
                try:
                    container.start()
                except Exception as exc:
                    raise DockerBackendError(
                        f"taskqueue: could not start the {role} container ({image}): {_root_cause(exc)}"
                    ) from None

    def _wait_ready(self) -> None:
        """Wait for every backend to answer, its container to exit, or the deadline to pass."""
        deadline = time.monotonic() + self.start_timeout_s
        for role, started in self._started.items():
            port = _mapped_port(started.container.get_wrapped_container(), started.container_port)
            try:
                wait_until_ready(
                    _ContainerTarget(started.container),
                    started.ready(f"http://{self._host}:{port}"),
                    max(deadline - time.monotonic(), 0.0),
                    first=0.05,
                    cap=0.5,
                )
            except TargetExited as exited:
                raise DockerBackendError(
                    f"taskqueue: the {role} container ({started.image}) exited during start-up "
                    f"({exited.status}); log tail:\n{_log_tail(started.container)}"
                ) from None
            except NotReady as late:
                raise DockerBackendError(
                    f"taskqueue: the {role} container ({started.image}) did not answer on "
                    f"{self._host}:{port} within {self.start_timeout_s:.0f} s "
                    f"(last probe: {late.last_probe}); log tail:\n{_log_tail(started.container)}"
                ) from None

    def _collect_endpoints(self) -> None:
        for role, started in self._started.items():
            wrapped = started.container.get_wrapped_container()
            self._services[role] = DockerService(
                role=role,
                image=started.image,
                container_id=wrapped.id,
                alias=started.alias,
                container_port=started.container_port,
                host=self._host,
                port=_mapped_port(wrapped, started.container_port),
            )
        toxiproxy = self._started["toxiproxy"].container.get_wrapped_container()
        self._proxies = {
            name: ProxyEndpoint(
                name=name, listen=f"0.0.0.0:{port}", host=self._host, port=_mapped_port(toxiproxy, port)
            )
            for name, port in PROXY_PORTS.items()
        }
        networks = toxiproxy.attrs.get("NetworkSettings", {}).get("Networks", {})
        gateway = networks.get(self._network_name, {}).get("Gateway")
        if not gateway:
            raise DockerBackendError(f"taskqueue: network {self._network_name} reports no gateway address")
        self._gateway = str(gateway)


def _is_dynamodb_local(image: str) -> bool:
    """Whether an image reference names Amazon's DynamoDB Local (any registry prefix, tag or digest)."""
    name = image.split("@", 1)[0]
    slash, colon = name.rfind("/"), name.rfind(":")
    if colon > slash:  # a tag, not a registry's port
        name = name[:colon]
    return name == _DYNAMODB_LOCAL_REPOSITORY or name.endswith("/" + _DYNAMODB_LOCAL_REPOSITORY)


def _published_host(client: Any) -> str:
    """Where published ports are reached: 127.0.0.1 for a local daemon, else the daemon's host."""
    from urllib.parse import urlparse

    url = urlparse(str(client.api.base_url))
    if url.scheme in ("http", "https", "tcp") and url.hostname not in (None, "localhost", "127.0.0.1", "::1"):
        return str(url.hostname)
    return "127.0.0.1"


def _mapped_port(wrapped: Any, container_port: int) -> int:
    """The host port docker published for a container port (read from the container's state)."""
    wrapped.reload()
    bindings = wrapped.attrs.get("NetworkSettings", {}).get("Ports", {}).get(f"{container_port}/tcp") or []
    for binding in bindings:
        if binding.get("HostPort"):
            return int(binding["HostPort"])
    raise DockerBackendError(
        f"taskqueue: container {wrapped.name} publishes no host port for {container_port}"
    )


def _log_tail(container: Any, lines: int = _LOG_TAIL_LINES) -> str:
    """The last lines of a testcontainers container's log (stdout and stderr interleaved)."""
    try:
        raw = container.get_wrapped_container().logs(tail=lines)
    except Exception as exc:
        return f"(no log: {_root_cause(exc)})"
    text = bytes(raw).decode("utf-8", "replace").rstrip()
    return text or "(empty log)"
