"""How the harness runs an implementation: its command lines, their placeholders, its environment.

``--taskqueue-target-cmd`` and ``--taskqueue-worker-cmd`` (docs/spec.md section 10) are
``CommandTemplate``s, checked before anything starts; ``ImplementationCommands.parse`` turns them
into what ``pytest_taskqueue._stack.Stack`` runs on the harness-owned backends. The reference
server is one such implementation: ``reference_implementation`` holds its command lines, every flag
the harness gives it, in one place.

Each process gets this process's environment without its ``AWS_*`` and ``TASKQUEUE_*`` settings
(so a developer's real AWS profile or the harness's own options never leak into it), plus the
backends' test credentials and region (``implementation_environment``).
"""

from __future__ import annotations

import shlex
import string
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from pytest_taskqueue._backends import child_environment

if TYPE_CHECKING:
    from pytest_taskqueue._stack import StackConfig

__all__ = [
    "SERVER_PLACEHOLDERS",
    "TEST_CREDENTIALS",
    "WORKER_PLACEHOLDERS",
    "CommandTemplate",
    "ImplementationCommands",
    "TemplateError",
    "implementation_environment",
    "reference_implementation",
]

WORKER_READY: Final = r"\bworker ready\b"
"""The line a separate worker writes once it receives messages (docs/spec.md 10.3)."""

SERVER_PLACEHOLDERS: Final = ("port", "dynamodb", "sqs", "region", "table", "queue", "dlq")
"""What ``--taskqueue-target-cmd`` may name (docs/spec.md 10.1)."""

WORKER_PLACEHOLDERS: Final = ("dynamodb", "sqs", "region", "table", "queue", "dlq")
"""What ``--taskqueue-worker-cmd`` may name: the same but ``{port}`` (spec 10.3)."""

HOST_PLACEHOLDER: Final = "host"
"""Where the API must listen (127.0.0.1, or the host's address on the docker backend's network).
Only the reference's own commands name it; a user's command listens on 127.0.0.1 (spec 10.1)."""

TEST_CREDENTIALS: Final = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
"""The credentials every client of the harness-owned backends uses (they check none)."""

_FORMATTER = string.Formatter()


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
    """What the harness runs as the implementation under test: its API command and maybe a worker.

    Args:
        server: the API process; ready when its gRPC health answers SERVING.
        worker: a separate worker process, or None when the API process runs the work itself.
        name: ``reference`` or ``implementation`` (what the stack reports).
        server_name / worker_name: the processes' names in messages.
        server_log / worker_log: their log files in the stack's log folder.
        worker_ready: a pattern of the worker's log line that says it is ready (spec 10.3: a line
            containing ``worker ready`` on its standard output or error); None: a worker that still
            runs once the API is ready counts as ready.
        starts_with_backends: True when the implementation retries its backends itself (the
            reference does, until ``--startup-timeout``), so it is started with them; otherwise it
            is started once they answer and their proxies exist.
    """

    server: CommandTemplate
    worker: CommandTemplate | None = None
    name: str = "implementation"
    server_name: str = "implementation (--taskqueue-target-cmd)"
    worker_name: str = "implementation worker (--taskqueue-worker-cmd)"
    server_log: str = "implementation.log"
    worker_log: str = "implementation-worker.log"
    worker_ready: str | None = WORKER_READY
    starts_with_backends: bool = False

    @classmethod
    def parse(cls, target_cmd: str, worker_cmd: str | None = None) -> ImplementationCommands:
        """``--taskqueue-target-cmd`` and ``--taskqueue-worker-cmd``, checked (TemplateError names it)."""
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


def _literal(word: str) -> str:
    """A fixed word of a template (braces doubled, so ``str.format`` leaves them alone)."""
    return word.replace("{", "{{").replace("}", "}}")


def reference_implementation(config: StackConfig) -> ImplementationCommands:
    """The reference server and worker (``python -m reference_server serve|worker``) with the
    stack's names, endpoints and test-friendly timings (``config``); they create their own table
    and queues (``--create-resources``)."""

    def template(mode: str, port: str) -> CommandTemplate:
        fixed = [sys.executable, "-m", "reference_server", mode]
        flags = {
            "--host": "{host}",
            "--port": port,
            "--dynamodb-endpoint": "{dynamodb}",
            "--sqs-endpoint": "{sqs}",
            "--region": "{region}",
            "--table": "{table}",
            "--queue": "{queue}",
            "--dead-letter-queue": "{dlq}",
            "--visibility-timeout": str(config.visibility_timeout),
            "--retry-backoff-ms": str(config.retry_backoff_ms),
            "--retry-backoff-max-ms": str(config.retry_backoff_max_ms),
            "--concurrency": str(config.concurrency),
            "--startup-timeout": str(config.start_timeout),
            "--shutdown-grace": str(config.shutdown_grace),
        }
        words = [_literal(word) for word in fixed]
        for flag, value in flags.items():
            words += [flag, value if value.startswith("{") else _literal(value)]
        words.append("--create-resources")
        allowed = (*SERVER_PLACEHOLDERS, HOST_PLACEHOLDER)
        return CommandTemplate.parse(shlex.join(words), f"reference {mode}", allowed)

    return ImplementationCommands(
        server=template("serve", "{port}"),
        worker=template("worker", "0"),
        name="reference",
        server_name="reference server",
        worker_name="reference worker",
        server_log="reference-server.log",
        worker_log="reference-worker.log",
        worker_ready=WORKER_READY,
        starts_with_backends=True,
    )


def implementation_environment(region: str) -> dict[str, str]:
    """This process's environment without AWS or TASKQUEUE settings, with the test credentials."""
    env = {
        key: value
        for key, value in child_environment().items()
        if not key.startswith("AWS_") and not (key.startswith("TASKQUEUE_") and key != "TASKQUEUE_CACHE_DIR")
    }
    env.update(TEST_CREDENTIALS, AWS_DEFAULT_REGION=region, AWS_REGION=region, PYTHONUNBUFFERED="1")
    return env
