"""The plugin's options: their declaration in the ``taskqueue`` group, and their validation.

Every option can come from the command line, an environment variable or an ini key (in that order
of precedence), because a CI job usually sets the target in its environment while a developer types
it. Values are validated once, in ``pytest_configure``, so a typo stops the run before anything is
collected or started, with a ``pytest.UsageError`` that names the option.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import re
import uuid
from typing import Final

import pytest

from pytest_taskqueue._images import DEFAULT_IMAGES

__all__ = [
    "CONFIG_KEY",
    "DEFAULT_CONNECT_TIMEOUT_S",
    "DEFAULT_SWEEP_WAIT_S",
    "DEFAULT_TIMEOUT_S",
    "TaskQueueConfig",
    "add_options",
    "load_config",
    "markdown_twin",
    "parse_target",
]

DEFAULT_TIMEOUT_S: Final = 60.0
"""Default deadline of one wait (``--taskqueue-timeout``): generous, since an implementation's own
retry backoff decides how long ``fail_always`` takes to die, and a passing wait ends as soon as it can."""

MAX_RPC_TIMEOUT_S: Final = 20.0
"""Unary calls get the smaller of ``--taskqueue-timeout`` and this as their deadline."""

DEFAULT_SWEEP_WAIT_S: Final = 3.0
"""Default of ``--taskqueue-sweep-wait`` (a plain target's visibility timeout is unknown)."""

DEFAULT_CONNECT_TIMEOUT_S: Final = 15.0
"""Default deadline for the target to answer its health check (``--taskqueue-connect-timeout``)."""

_GROUP = "taskqueue"
_TARGET_RE = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>[0-9]{1,5})$")


@dataclasses.dataclass(frozen=True)
class TaskQueueConfig:
    """The parsed and validated options of one pytest run (the ``taskqueue_config`` fixture).

    ``target`` is None when the harness starts the reference stack itself. ``run_id`` and
    ``worker_id`` make idempotency keys and stack resource names unique per run and per
    pytest-xdist worker; all workers of one run share the run id.
    """

    target: str | None
    timeout: float
    connect_timeout: float
    report: pathlib.Path | None
    tls_ca: pathlib.Path | None
    token: str | None
    strict: bool
    keep_logs: bool
    run_id: str
    worker_id: str
    backend: str = "local"
    """Where the harness-owned stack runs its backends: ``local`` (processes) or ``docker``."""
    dynamodb_image: str | None = None
    elasticmq_image: str | None = None
    toxiproxy_image: str | None = None
    """The docker backend's images (None: its pinned defaults; docs/docker.md)."""
    target_cmd: str | None = None
    """``--taskqueue-target-cmd``: the harness runs this implementation (docs/spec.md 10.1)."""
    worker_cmd: str | None = None
    """``--taskqueue-worker-cmd``: its separate worker (spec 10.3), only with ``target_cmd``."""
    chaos_seconds: float | None = None
    """``--taskqueue-chaos-seconds``: run the chaos scenario for this long (None: skip it)."""
    chaos_seed: int = 0
    """``--taskqueue-chaos-seed``: the seed of its fault schedule and workload."""
    sweep_wait: float = DEFAULT_SWEEP_WAIT_S
    """``--taskqueue-sweep-wait``: against a plain target, how long after the last task was created
    the closing sweep re-reads the tasks (a harness-owned stack uses its queue's visibility timeout)."""

    @property
    def resource_prefix(self) -> str:
        """Prefix for this worker's tables and queues, e.g. ``tq-3f9a1c2e-gw0``."""
        return f"tq-{self.run_id}-{self.worker_id}"


CONFIG_KEY: Final = pytest.StashKey[TaskQueueConfig]()
"""Where ``pytest_configure`` keeps the parsed options on ``config.stash``."""


def add_options(parser: pytest.Parser) -> None:
    """Declare the command-line options and ini keys, all in the ``taskqueue`` group."""
    group = parser.getgroup(_GROUP, "conformance testing of taskqueue.v1 services (pytest-taskqueue)")
    group.addoption(
        "--taskqueue-target",
        metavar="HOST:PORT",
        default=None,
        help="implementation under test; without it the harness starts the reference stack "
        "(env TASKQUEUE_TARGET, ini taskqueue_target)",
    )
    group.addoption(
        "--taskqueue-timeout",
        metavar="SECONDS",
        default=None,
        help=f"deadline of one wait for a task status (default {DEFAULT_TIMEOUT_S:g}; "
        "env TASKQUEUE_TIMEOUT, ini taskqueue_timeout)",
    )
    group.addoption(
        "--taskqueue-connect-timeout",
        metavar="SECONDS",
        default=None,
        help="how long the target may take to answer its health check before the run stops "
        f"(default {DEFAULT_CONNECT_TIMEOUT_S:g}; env TASKQUEUE_CONNECT_TIMEOUT, "
        "ini taskqueue_connect_timeout)",
    )
    group.addoption(
        "--taskqueue-report",
        metavar="PATH",
        default=None,
        help="write the conformance report as JSON to PATH and as Markdown beside it (PATH with .md)",
    )
    group.addoption(
        "--taskqueue-tls-ca",
        metavar="PATH",
        default=None,
        help="connect with TLS, trusting the CA certificates in PATH (PEM; env TASKQUEUE_TLS_CA)",
    )
    group.addoption(
        "--taskqueue-token",
        metavar="TOKEN",
        default=None,
        help="send 'authorization: Bearer TOKEN' metadata with every call (env TASKQUEUE_TOKEN)",
    )
    group.addoption(
        "--taskqueue-strict",
        action="store_true",
        default=None,
        help="failures of optional scenarios fail the run too (env TASKQUEUE_STRICT=1)",
    )
    group.addoption(
        "--taskqueue-keep-logs",
        action="store_true",
        default=None,
        help="keep the logs of the processes the harness started (env TASKQUEUE_KEEP_LOGS=1)",
    )
    group.addoption(
        "--taskqueue-backend",
        metavar="local|docker",
        default=None,
        help="backends of the harness-owned stack: local processes (default) or Docker containers "
        "through testcontainers (env TASKQUEUE_BACKEND, ini taskqueue_backend; docs/docker.md)",
    )
    for role, default in DEFAULT_IMAGES:
        group.addoption(
            f"--taskqueue-{role}-image",
            metavar="IMAGE",
            default=None,
            help=f"{role} image of the docker backend (default {default}; "
            f"env TASKQUEUE_{role.upper()}_IMAGE, ini taskqueue_{role}_image)",
        )
        parser.addini(f"taskqueue_{role}_image", f"{role} image of the docker backend", default="")
    group.addoption(
        "--taskqueue-target-cmd",
        metavar="COMMAND",
        default=None,
        help="run this implementation against harness-owned backends, every link through a fault "
        "proxy; placeholders {port} (required) {dynamodb} {sqs} {region} {table} {queue} {dlq} "
        "(env TASKQUEUE_TARGET_CMD, ini taskqueue_target_cmd; docs/spec.md 10)",
    )
    group.addoption(
        "--taskqueue-worker-cmd",
        metavar="COMMAND",
        default=None,
        help="the implementation's separate worker, which scenarios may kill and start; the same "
        "placeholders but {port} (env TASKQUEUE_WORKER_CMD, ini taskqueue_worker_cmd)",
    )
    group.addoption(
        "--taskqueue-chaos-seconds",
        metavar="SECONDS",
        default=None,
        help="run the chaos scenario (seeded faults under a mixed workload, then the history "
        "checker) for this long; skipped without it (env TASKQUEUE_CHAOS_SECONDS)",
    )
    group.addoption(
        "--taskqueue-sweep-wait",
        metavar="SECONDS",
        default=None,
        help="against a plain --taskqueue-target: how long after the last task was created the "
        f"closing sweep re-reads every task (default {DEFAULT_SWEEP_WAIT_S:g}; set it to the "
        "implementation's visibility timeout; env TASKQUEUE_SWEEP_WAIT)",
    )
    group.addoption(
        "--taskqueue-chaos-seed",
        metavar="N",
        default=None,
        help="seed of the chaos scenario's fault schedule and workload (default 0; env TASKQUEUE_CHAOS_SEED)",
    )
    parser.addini("taskqueue_target_cmd", "implementation command the harness runs", default="")
    parser.addini("taskqueue_worker_cmd", "the implementation's separate worker command", default="")
    parser.addini("taskqueue_backend", "backends of the harness-owned stack: local or docker", default="")
    parser.addini("taskqueue_target", "implementation under test, HOST:PORT", default="")
    parser.addini("taskqueue_timeout", "deadline of one wait, in seconds", default="")
    parser.addini(
        "taskqueue_connect_timeout", "deadline for the target's health check, in seconds", default=""
    )
    parser.addini("taskqueue_strict", "optional scenarios fail the run too", type="bool", default=False)


def load_config(config: pytest.Config) -> TaskQueueConfig:
    """Read, merge and validate the options; raise ``pytest.UsageError`` naming a bad one.

    The error names what the user set: the option, the environment variable or the ini key.
    """
    target_set = _pick(config, "--taskqueue-target", "TASKQUEUE_TARGET", "taskqueue_target")
    target = None
    if target_set is not None:
        parse_target(target_set.value, target_set.name)
        target = target_set.value
    timeout = _seconds(
        _pick(config, "--taskqueue-timeout", "TASKQUEUE_TIMEOUT", "taskqueue_timeout"), DEFAULT_TIMEOUT_S
    )
    connect_timeout = _seconds(
        _pick(
            config, "--taskqueue-connect-timeout", "TASKQUEUE_CONNECT_TIMEOUT", "taskqueue_connect_timeout"
        ),
        DEFAULT_CONNECT_TIMEOUT_S,
    )
    report_set = _pick(config, "--taskqueue-report", None, None)
    report = _report_path(report_set.value) if report_set is not None else None
    ca_set = _pick(config, "--taskqueue-tls-ca", "TASKQUEUE_TLS_CA", None)
    tls_ca = _ca_path(ca_set) if ca_set is not None else None
    token_set = _pick(config, "--taskqueue-token", "TASKQUEUE_TOKEN", None)
    token = token_set.value if token_set is not None else None
    if token_set is not None and (not token_set.value.strip() or any(c in token_set.value for c in "\r\n")):
        raise pytest.UsageError(f"{token_set.name}: the token must be non-empty and on one line")
    strict = _flag(config, "--taskqueue-strict", "TASKQUEUE_STRICT", "taskqueue_strict")
    keep_logs = _flag(config, "--taskqueue-keep-logs", "TASKQUEUE_KEEP_LOGS", None)
    run_id, worker_id = _run_identity(config)
    backend_set = _pick(config, "--taskqueue-backend", "TASKQUEUE_BACKEND", "taskqueue_backend")
    backend = backend_set.value if backend_set is not None else "local"
    if backend_set is not None and backend not in ("local", "docker"):
        raise pytest.UsageError(f"{backend_set.name}: {backend!r} is not one of: local, docker")
    images: dict[str, str | None] = {}
    for role, _ in DEFAULT_IMAGES:
        image = _pick(
            config, f"--taskqueue-{role}-image", f"TASKQUEUE_{role.upper()}_IMAGE", f"taskqueue_{role}_image"
        )
        if image is not None and (not image.value.strip() or any(c.isspace() for c in image.value.strip())):
            raise pytest.UsageError(f"{image.name}: {image.value!r} is not an image reference")
        images[f"{role}_image"] = image.value.strip() if image is not None else None
    target_cmd, worker_cmd = _implementation_commands(config, target_set, backend)
    chaos_set = _pick(config, "--taskqueue-chaos-seconds", "TASKQUEUE_CHAOS_SECONDS", None)
    chaos_seconds = _seconds(chaos_set, 0.0) if chaos_set is not None else None
    return TaskQueueConfig(
        target=target,
        timeout=timeout,
        connect_timeout=connect_timeout,
        report=report,
        tls_ca=tls_ca,
        token=token,
        strict=strict,
        keep_logs=keep_logs,
        run_id=run_id,
        worker_id=worker_id,
        backend=backend,
        **images,
        target_cmd=target_cmd,
        worker_cmd=worker_cmd,
        chaos_seconds=chaos_seconds,
        chaos_seed=_chaos_seed(_pick(config, "--taskqueue-chaos-seed", "TASKQUEUE_CHAOS_SEED", None)),
        sweep_wait=_seconds(
            _pick(config, "--taskqueue-sweep-wait", "TASKQUEUE_SWEEP_WAIT", None), DEFAULT_SWEEP_WAIT_S
        ),
    )


def _implementation_commands(
    config: pytest.Config, target: _Setting | None, backend: str
) -> tuple[str | None, str | None]:
    """``--taskqueue-target-cmd`` and ``--taskqueue-worker-cmd``, their templates checked."""
    target_cmd = _pick(config, "--taskqueue-target-cmd", "TASKQUEUE_TARGET_CMD", "taskqueue_target_cmd")
    worker_cmd = _pick(config, "--taskqueue-worker-cmd", "TASKQUEUE_WORKER_CMD", "taskqueue_worker_cmd")
    if target_cmd is None:
        if worker_cmd is not None:
            raise pytest.UsageError(f"{worker_cmd.name}: needs --taskqueue-target-cmd (the API it works for)")
        return None, None
    if target is not None:
        raise pytest.UsageError(
            f"{target_cmd.name}: give either it (the harness runs the implementation) "
            f"or {target.name} (it runs already), not both"
        )
    if backend != "local":
        raise pytest.UsageError(f"{target_cmd.name}: works with --taskqueue-backend=local only")
    from pytest_taskqueue._implementation import ImplementationCommands, TemplateError

    try:
        ImplementationCommands.parse(target_cmd.value, worker_cmd.value if worker_cmd is not None else None)
    except TemplateError as error:
        # The template's message names the option; name what the user set instead.
        message = str(error)
        for setting in (target_cmd, worker_cmd):
            if setting is not None and message.startswith(f"{setting.option}:"):
                message = setting.name + message[len(setting.option) :]
        raise pytest.UsageError(message) from None
    return target_cmd.value, worker_cmd.value if worker_cmd is not None else None


def _chaos_seed(setting: _Setting | None) -> int:
    """A non-negative integer seed (default 0)."""
    if setting is None:
        return 0
    try:
        value = int(setting.value)
    except ValueError:
        value = -1
    if value < 0:
        raise pytest.UsageError(f"{setting.name}: {setting.value!r} is not a non-negative integer")
    return value


def parse_target(target: str, name: str = "--taskqueue-target") -> tuple[str, int]:
    """Split ``HOST:PORT`` (or ``[IPv6]:PORT``); a malformed one is a ``UsageError`` naming ``name``."""
    match = _TARGET_RE.match(target.strip())
    if match is None:
        raise pytest.UsageError(f"{name}: {target!r} is not HOST:PORT (for example 127.0.0.1:50051)")
    port = int(match["port"])
    if not 1 <= port <= 65535:
        raise pytest.UsageError(f"{name}: port {port} in {target!r} is out of range (1-65535)")
    return match["host"], port


def markdown_twin(report: pathlib.Path) -> pathlib.Path:
    """The Markdown report written beside the JSON one: the same path with the suffix ``.md``."""
    return report.with_suffix(".md")


@dataclasses.dataclass(frozen=True)
class _Setting:
    """One option's value and ``name``, what the user set: the option, the variable or the ini key."""

    value: str
    name: str
    option: str


def _pick(config: pytest.Config, option: str, env: str | None, ini: str | None) -> _Setting | None:
    """The first value set among the command line, the environment and the ini file."""
    value = config.getoption(option)
    if value is not None:
        return _Setting(str(value), option, option)
    if env is not None and os.environ.get(env):
        return _Setting(os.environ[env], f"environment variable {env}", option)
    if ini is not None:
        ini_value = config.getini(ini)
        if isinstance(ini_value, str) and ini_value.strip():
            where = config.inipath.name if config.inipath is not None else "the ini file"
            return _Setting(ini_value.strip(), f"{ini} (in {where})", option)
    return None


def _flag(config: pytest.Config, option: str, env: str, ini: str | None) -> bool:
    """A boolean option: set on the command line, by ``ENV=1``/``true``/``yes``, or in the ini file."""
    if config.getoption(option):
        return True
    if os.environ.get(env, "").strip().lower() in {"1", "true", "yes", "on"}:
        return True
    return bool(config.getini(ini)) if ini is not None else False


def _seconds(setting: _Setting | None, default: float) -> float:
    """A positive, finite number of seconds."""
    if setting is None:
        return default
    try:
        value = float(setting.value)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise pytest.UsageError(f"{setting.name}: {setting.value!r} is not a positive number of seconds")
    return value


def _report_path(raw: str) -> pathlib.Path:
    """The JSON report path; its folder is created, and must be writable."""
    path = pathlib.Path(raw).expanduser().absolute()
    if path.suffix == ".md":
        raise pytest.UsageError(
            f"--taskqueue-report: {raw!r} ends with .md, which is where the Markdown twin goes; "
            "give the JSON path (e.g. report.json)"
        )
    if path.is_dir():
        raise pytest.UsageError(f"--taskqueue-report: {raw!r} is a directory; give a file path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise pytest.UsageError(f"--taskqueue-report: cannot create folder {path.parent}: {exc}") from exc
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise pytest.UsageError(f"--taskqueue-report: folder {path.parent} is not writable")
    for existing in (path, markdown_twin(path)):
        if existing.exists() and not os.access(existing, os.W_OK):
            raise pytest.UsageError(f"--taskqueue-report: {existing} exists and is not writable")
    return path


def _ca_path(setting: _Setting) -> pathlib.Path:
    """A readable PEM file of CA certificates."""
    raw, name = setting.value, setting.name
    path = pathlib.Path(raw).expanduser().absolute()
    if not path.is_file():
        raise pytest.UsageError(f"{name}: {raw!r} is not a file")
    try:
        with path.open("rb") as handle:
            head = handle.read(4096)
    except OSError as exc:
        raise pytest.UsageError(f"{name}: cannot read {raw!r}: {exc}") from exc
    if b"-----BEGIN CERTIFICATE-----" not in head:
        raise pytest.UsageError(f"{name}: {raw!r} holds no PEM certificate")
    return path


def _run_identity(config: pytest.Config) -> tuple[str, str]:
    """The run id shared by all xdist workers of one run, and this process's worker id.

    pytest-xdist gives every worker ``workerinput`` with the run's ``testrunuid`` and the
    worker's ``workerid``; a run without xdist is the worker ``main`` with a fresh id.
    """
    workerinput = getattr(config, "workerinput", None)
    if isinstance(workerinput, dict):
        run_uid = str(workerinput.get("testrunuid") or uuid.uuid4().hex)
        return run_uid[:8], str(workerinput.get("workerid", "gw"))
    return uuid.uuid4().hex[:8], "main"
