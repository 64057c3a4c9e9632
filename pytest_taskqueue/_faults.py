"""Faults for the harness: the stack's Toxiproxy proxies, and an implementation the harness runs itself.

- ``HarnessFaults`` (``harness.faults``): the named proxies of the harness-owned stack (``api``,
  ``server_dynamodb``, ``server_sqs``, ``worker_dynamodb``, ``worker_sqs``) as
  ``fault_injection.Proxy`` objects, and the named faults of ``fault_injection.faults`` by link
  name. The first use in a test resets Toxiproxy (every link up, no toxic); the harness resets it
  again after that test, so a fault never leaks into the next one.
- ``CommandTemplate`` and ``ImplementationCommands``: ``--taskqueue-target-cmd`` and
  ``--taskqueue-worker-cmd`` (docs/spec.md section 10), checked before anything starts.
- ``CommandStack``: the reference stack's backends, Toxiproxy and proxies, with the
  implementation's own command(s) instead of the reference server and worker, started once the
  backends and proxies are up and ready when its gRPC health answers SERVING.

A plain external target (``--taskqueue-target``) is not proxied: nothing of its links is under the
harness's control, so scenarios that need ``harness.faults`` skip with ``NO_PROXIES_REASON``.
"""

from __future__ import annotations

import contextlib
import shlex
import string
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Final, Self

from fault_injection import Proxy, Toxiproxy, faults
from fault_injection.faults import ActiveFault, Direction
from pytest_taskqueue._backends import child_environment
from pytest_taskqueue._procs import GrpcHealthWait, ManagedProcess
from pytest_taskqueue._stack import PROXY_NAMES, ReferenceStack, StackConfig

__all__ = [
    "NO_PROXIES_REASON",
    "NO_WORKER_REASON",
    "SERVER_PLACEHOLDERS",
    "WORKER_PLACEHOLDERS",
    "CommandStack",
    "CommandTemplate",
    "HarnessFaults",
    "ImplementationCommands",
    "TemplateError",
]

SERVER_PLACEHOLDERS: Final = ("port", "dynamodb", "sqs", "region", "table", "queue", "dlq")
"""What ``--taskqueue-target-cmd`` may name (docs/spec.md 10.1)."""

WORKER_PLACEHOLDERS: Final = ("dynamodb", "sqs", "region", "table", "queue", "dlq")
"""What ``--taskqueue-worker-cmd`` may name: the same but ``{port}`` (spec 10.3)."""

NO_PROXIES_REASON: Final = (
    "needs the harness's fault proxies: a plain --taskqueue-target is not proxied; "
    "let the harness run the implementation with --taskqueue-target-cmd"
)
"""Why a scenario that injects faults is skipped against an external target."""

NO_WORKER_REASON: Final = "needs a separate worker process to kill: give --taskqueue-worker-cmd (spec 10.3)"
"""Why a scenario that kills the worker is skipped when the implementation has no worker command."""

_FORMATTER = string.Formatter()
_TEST_CREDENTIALS: Final = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}


class TemplateError(ValueError):
    """A command template is unusable; the message starts with the option's name."""


@dataclass(frozen=True)
class CommandTemplate:
    """A command line with ``{placeholder}`` fields, split like a POSIX shell would split it.

    Each word is filled in on its own (``str.format``), so a value with spaces stays one argument;
    ``{{`` and ``}}`` are literal braces. No shell runs it.
    """

    option: str
    text: str
    words: tuple[str, ...]
    fields: frozenset[str]

    @classmethod
    def parse(
        cls, text: str, option: str, allowed: Sequence[str], required: Sequence[str] = ()
    ) -> CommandTemplate:
        """Check ``text`` against the placeholders ``allowed`` (and ``required``); raise TemplateError."""
        known = ", ".join(f"{{{name}}}" for name in allowed)
        try:
            words = tuple(shlex.split(text))
        except ValueError as error:
            raise TemplateError(f"{option}: cannot split {text!r} into words: {error}") from None
        if not words:
            raise TemplateError(f"{option}: the command is empty")
        fields: set[str] = set()
        for word in words:
            try:
                parsed = list(_FORMATTER.parse(word))
            except ValueError as error:
                raise TemplateError(
                    f"{option}: bad placeholder in {word!r}: {error} (use {{{{ and }}}} for braces)"
                ) from None
            for _, name, spec, conversion in parsed:
                if name is None:
                    continue
                if name not in allowed:
                    raise TemplateError(
                        f"{option}: unknown placeholder {{{name}}} in {word!r} (known: {known})"
                    )
                if spec or conversion:
                    raise TemplateError(f"{option}: write the placeholder as {{{name}}}, without a format")
                fields.add(name)
        missing = [name for name in required if name not in fields]
        if missing:
            raise TemplateError(
                f"{option}: the command must contain {', '.join(f'{{{m}}}' for m in missing)} "
                "(where the implementation listens; the harness picks the port)"
            )
        return cls(option=option, text=text, words=words, fields=frozenset(fields))

    def render(self, values: Mapping[str, object]) -> list[str]:
        """The argv with every placeholder filled in from ``values``."""
        return [word.format(**values) for word in self.words]


@dataclass(frozen=True)
class ImplementationCommands:
    """What ``--taskqueue-target-cmd`` (and ``--taskqueue-worker-cmd``) ask the harness to run."""

    server: CommandTemplate
    worker: CommandTemplate | None = None

    @classmethod
    def parse(cls, target_cmd: str, worker_cmd: str | None = None) -> ImplementationCommands:
        """Check both templates (TemplateError names the option at fault)."""
        server = CommandTemplate.parse(
            target_cmd, "--taskqueue-target-cmd", SERVER_PLACEHOLDERS, required=("port",)
        )
        worker = None
        if worker_cmd is not None:
            if "{port}" in worker_cmd:
                raise TemplateError(
                    "--taskqueue-worker-cmd: {port} is the API's port; the worker command gets "
                    "every placeholder but {port} (spec 10.3)"
                )
            worker = CommandTemplate.parse(worker_cmd, "--taskqueue-worker-cmd", WORKER_PLACEHOLDERS)
        return cls(server=server, worker=worker)


class CommandStack(ReferenceStack):
    """The reference stack's backends and proxies around an implementation the harness runs.

    ``start()`` brings up ElasticMQ, moto, Toxiproxy and the five proxies (creating no table or
    queue: the implementation does, spec 10.1), then runs the implementation's command with
    ``{port}`` (the ``api`` proxy's upstream), ``{dynamodb}``/``{sqs}`` (the ``server_*`` proxies)
    and the names filled in, and the worker command (if any) with the ``worker_*`` proxies. It is
    ready when the implementation's gRPC health answers SERVING. Afterwards ``queue_url``,
    ``dead_letter_queue_url`` and ``visibility_timeout`` are read from SQS when the queues exist.
    ``server`` is the implementation's process; ``worker`` exists only with a worker command
    (``has_worker``). Everything stops as the reference stack does.
    """

    def __init__(self, config: StackConfig, commands: ImplementationCommands) -> None:
        if config.backend != "local":
            raise ValueError(
                "--taskqueue-target-cmd runs the implementation beside local backends only "
                f"(the {config.backend!r} backend is not supported with it)"
            )
        super().__init__(config)
        self.commands = commands
        self._visibility: int | None = None

    # The implementation is started by ``start`` after the backends, and creates its own resources.

    def _api_processes(self) -> tuple[ManagedProcess | None, ManagedProcess | None]:
        return None, None

    def _create_queues(self) -> None:
        """Nothing: the implementation creates its queues (spec 10.1)."""

    @property
    def has_worker(self) -> bool:
        """True when a worker command was given (``worker`` can then be killed and started)."""
        return self.commands.worker is not None

    @property
    def visibility_timeout(self) -> int:
        """The work queue's visibility timeout as SQS reports it (else the stack's default)."""
        return self._visibility if self._visibility is not None else self.config.visibility_timeout

    def placeholder_values(self, side: str) -> dict[str, str]:
        """What the templates' placeholders stand for; ``side`` is ``server`` or ``worker``."""
        ports = self._need()
        return {
            "port": str(ports.server),
            "dynamodb": f"http://127.0.0.1:{getattr(ports, side + '_dynamodb')}",
            "sqs": f"http://127.0.0.1:{getattr(ports, side + '_sqs')}",
            "region": self.region,
            "table": self.table,
            "queue": self.queue,
            "dlq": self.dead_letter_queue,
        }

    def start(self) -> Self:
        """Start the backends and proxies, then the implementation; on failure stop all and raise."""
        super().start()
        if self._server is not None:  # already started
            return self
        try:
            self._start_implementation()
        except BaseException:
            self._failed = True
            self.stop()
            raise
        return self

    def _start_implementation(self) -> None:
        config = self.config
        log_dir = self._need_log_dir()
        env = _implementation_environment(self.region)
        server = ManagedProcess(
            "implementation (--taskqueue-target-cmd)",
            self.commands.server.render(self.placeholder_values("server")),
            log_path=log_dir / "implementation.log",
            wait=GrpcHealthWait(f"127.0.0.1:{self._need().server}"),
            env=env,
            start_timeout=config.start_timeout,
            stop_timeout=config.shutdown_grace + 5.0,
        )
        self._server = server
        worker = None
        if self.commands.worker is not None:
            worker = ManagedProcess(
                "implementation worker (--taskqueue-worker-cmd)",
                self.commands.worker.render(self.placeholder_values("worker")),
                log_path=log_dir / "implementation-worker.log",
                env=env,
                start_timeout=config.start_timeout,
                stop_timeout=config.shutdown_grace + 5.0,
            )
            self._worker = worker
            worker.start(wait=False)
        server.start(wait=False)
        server.wait_ready()
        if worker is not None:
            worker.wait_ready()  # no readiness signal is specified: it must at least still run
        self._read_queues()

    def _read_queues(self) -> None:
        """Learn the queues' URLs and visibility timeout, if the implementation created them."""
        sqs = self._boto_client("sqs", self.sqs_endpoint)
        with contextlib.suppress(Exception):
            self.dead_letter_queue_url = str(sqs.get_queue_url(QueueName=self.dead_letter_queue)["QueueUrl"])
        with contextlib.suppress(Exception):
            self.queue_url = str(sqs.get_queue_url(QueueName=self.queue)["QueueUrl"])
            answer = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["VisibilityTimeout"])
            self._visibility = int(answer["Attributes"]["VisibilityTimeout"])

    def as_dict(self) -> dict[str, Any]:
        """The reference stack's fields, plus the implementation's command lines."""
        data = super().as_dict()
        data["target_cmd"] = self._server.command_line if self._server is not None else None
        data["worker_cmd"] = self._worker.command_line if self._worker is not None else None
        return data

    def __repr__(self) -> str:
        where = self.target if self._ports is not None else "not started"
        return f"<CommandStack {where}: {self.commands.server.text}>"


def _implementation_environment(region: str) -> dict[str, str]:
    """This process's environment without AWS or TASKQUEUE settings, with test credentials."""
    env = {
        key: value
        for key, value in child_environment().items()
        if not key.startswith("AWS_") and not (key.startswith("TASKQUEUE_") and key != "TASKQUEUE_CACHE_DIR")
    }
    env.update(_TEST_CREDENTIALS, AWS_DEFAULT_REGION=region, AWS_REGION=region, PYTHONUNBUFFERED="1")
    return env


Link = str | Proxy
"""A link by proxy name (``"api"``) or as the ``Proxy`` itself."""


class HarnessFaults:
    """The named Toxiproxy proxies of the harness-owned stack, and faults on them (``harness.faults``).

    ``faults["api"]`` (or ``harness.proxies["api"]``) is a ``fault_injection.Proxy``; the methods
    open the named faults of ``fault_injection.faults`` on a link given by name, e.g.
    ``with harness.faults.partition("server_dynamodb", "worker_dynamodb"): ...``. Every fault
    context undoes itself on exit; ``reset()`` heals everything at once.
    """

    def __init__(self, toxiproxy_url: str, names: Sequence[str] = PROXY_NAMES) -> None:
        self.toxiproxy = Toxiproxy(toxiproxy_url)
        self.names = tuple(names)
        self.used = False
        self._proxies: dict[str, Proxy] | None = None

    def __repr__(self) -> str:
        return f"<HarnessFaults {self.toxiproxy.api_url} links={','.join(self.names)}>"

    @property
    def proxies(self) -> dict[str, Proxy]:
        """The stack's proxies by name; the first use resets Toxiproxy (every link up, no toxic)."""
        if self._proxies is None:
            self.used = True
            self.toxiproxy.reset()
            found = self.toxiproxy.proxies()
            missing = [name for name in self.names if name not in found]
            if missing:
                raise LookupError(
                    f"Toxiproxy at {self.toxiproxy.api_url} has no proxy {', '.join(missing)} "
                    f"(it has: {', '.join(sorted(found)) or 'none'})"
                )
            self._proxies = {name: found[name] for name in self.names}
        return dict(self._proxies)

    def __getitem__(self, name: str) -> Proxy:
        proxies = self.proxies
        if name not in proxies:
            raise KeyError(f"no link {name!r}; the links are {', '.join(proxies)}")
        return proxies[name]

    def _proxy(self, link: Link) -> Proxy:
        return link if isinstance(link, Proxy) else self[link]

    def reset(self) -> None:
        """Heal every link now: enable every proxy and remove every toxic."""
        self.toxiproxy.reset()

    def reset_if_used(self) -> None:
        """``reset()`` if this test touched the proxies (the harness calls it after each test)."""
        if self.used:
            self.reset()

    def latency(
        self, link: Link, ms: int, jitter_ms: int = 0, *, stream: Direction = "downstream"
    ) -> AbstractContextManager[ActiveFault]:
        """Delay data on ``link`` by ``ms`` (plus or minus ``jitter_ms``)."""
        return faults.latency(self._proxy(link), ms, jitter_ms, stream=stream)

    def bandwidth(
        self, link: Link, kbps: int, *, stream: Direction = "downstream"
    ) -> AbstractContextManager[ActiveFault]:
        """Limit ``link`` to ``kbps`` kilobytes per second."""
        return faults.bandwidth(self._proxy(link), kbps, stream=stream)

    def timeout(
        self, link: Link, ms: int = 0, *, stream: Direction = "downstream"
    ) -> AbstractContextManager[ActiveFault]:
        """Swallow data on ``link``; close its connections after ``ms`` (0: never)."""
        return faults.timeout(self._proxy(link), ms, stream=stream)

    def reset_peer(
        self, link: Link, after_ms: int = 0, *, stream: Direction = "downstream"
    ) -> AbstractContextManager[ActiveFault]:
        """Reset (TCP RST) the connections of ``link`` ``after_ms`` after data arrives."""
        return faults.reset_peer(self._proxy(link), after_ms, stream=stream)

    def slicer(
        self,
        link: Link,
        avg_size: int,
        size_variation: int = 0,
        delay_us: int = 0,
        *,
        stream: Direction = "downstream",
    ) -> AbstractContextManager[ActiveFault]:
        """Cut the data on ``link`` into small pieces."""
        return faults.slicer(self._proxy(link), avg_size, size_variation, delay_us, stream=stream)

    def limit_data(
        self, link: Link, bytes: int, *, stream: Direction = "downstream"
    ) -> AbstractContextManager[ActiveFault]:
        """Close each connection of ``link`` after ``bytes`` bytes."""
        return faults.limit_data(self._proxy(link), bytes, stream=stream)

    def down(self, link: Link) -> AbstractContextManager[ActiveFault]:
        """Take ``link`` down (no listener, connections closed) for the block."""
        return faults.down(self._proxy(link))

    def partition(self, *links: Link) -> AbstractContextManager[ActiveFault]:
        """Take every given link down for the block."""
        return faults.partition(*(self._proxy(link) for link in links))
