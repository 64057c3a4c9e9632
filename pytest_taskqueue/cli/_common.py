"""What every ``taskqueue-harness`` command shares: its name, exit statuses, error lines,
signal handling, failure descriptions, argument types, and bringing up a harness-owned stack."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import signal
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Final, TypeVar

if TYPE_CHECKING:
    from pytest_taskqueue._implementation import ImplementationCommands
    from pytest_taskqueue._stack import Stack

__all__ = [
    "EXIT_ANOMALIES",
    "EXIT_FAILURE",
    "EXIT_INFRA",
    "EXIT_OK",
    "EXIT_USAGE",
    "PROG",
    "InfraError",
    "Interrupted",
    "bounded",
    "describe_failure",
    "error",
    "exit_status_of_signal",
    "first_line",
    "fraction",
    "handling_signals",
    "harness_stack",
    "host_port",
    "non_negative_float",
    "non_negative_int",
    "port",
    "positive_float",
    "positive_int",
    "progress",
]

PROG: Final = "taskqueue-harness"

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
"""``up``/``install``: what was asked for failed (one error line says what)."""
EXIT_ANOMALIES: Final = 1
"""``chaos``/``check``: the history broke rules of the contract."""
EXIT_USAGE: Final = 2
EXIT_INFRA: Final = 3
"""``chaos``/``load``: the run could not be carried out (stack, Toxiproxy, target never SERVING)."""

SignalHandler = Callable[[int, FrameType | None], None]


def exit_status_of_signal(signum: int) -> int:
    """The shell's convention for a command stopped by a signal: 128 + its number (SIGINT: 130)."""
    return 128 + signum


def error(message: str, status: int = EXIT_FAILURE) -> int:
    """Print ``taskqueue-harness: error: MESSAGE`` on one line to stderr; return ``status``."""
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr, flush=True)
    return status


def progress(line: str) -> None:
    """A progress line, on stderr (stdout carries the results)."""
    print(line, file=sys.stderr, flush=True)


class Interrupted(BaseException):
    """SIGINT/SIGTERM/SIGHUP arrived: unwind (stopping what was started), then exit 128 + signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_status(self) -> int:
        """``exit_status_of_signal(signum)``."""
        return exit_status_of_signal(self.signum)


def raise_interrupted(signum: int, frame: FrameType | None) -> None:
    """A signal handler that raises ``Interrupted``."""
    raise Interrupted(signum)


@contextlib.contextmanager
def handling_signals(handlers: Mapping[signal.Signals, SignalHandler]) -> Iterator[None]:
    """Install ``handlers`` for the block; the previous handlers come back on every exit path."""
    previous = {signum: signal.signal(signum, handler) for signum, handler in handlers.items()}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def first_line(error: BaseException) -> str:
    """``TypeName: first line of the message`` (just ``TypeName`` for an empty message)."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def describe_failure(failure: BaseException, log_dir: Path | None) -> str:
    """One line for a start that failed: the backend's summary, a message already written for the
    user, or the error's first line and where the logs are."""
    from pytest_taskqueue._errors import UserMessageError
    from pytest_taskqueue._procs import BackendStartError

    if isinstance(failure, BackendStartError):
        return failure.summary
    if isinstance(failure, UserMessageError):
        return failure.user_message()
    where = f" (logs: {log_dir})" if log_dir is not None else ""
    return f"{first_line(failure)}{where}"


_N = TypeVar("_N", int, float)


def bounded(
    kind: type[_N],
    *,
    above: _N | None = None,
    at_least: _N | None = None,
    at_most: _N | None = None,
    noun: str = "",
    note: str = "",
) -> Callable[[str], _N]:
    """An argparse type: a finite ``kind`` (int or float) within the bounds given.

    The error names the bound broken and the value (``must be > 0, got 0.0``); ``noun`` replaces
    "a number"/"an integer" in ``not a number: 'x'``, ``note`` follows the bounds in the message."""
    noun = noun or ("an integer" if kind is int else "a number")
    if above is None and at_least is not None and at_most is not None:
        rule = f"in {at_least}..{at_most}" if kind is int else f"between {at_least:g} and {at_most:g}"
    else:
        bounds = [(">", above), (">=", at_least), ("<=", at_most)]
        rule = " and ".join(f"{sign} {bound:g}" for sign, bound in bounds if bound is not None)

    def parse(text: str) -> _N:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {noun}: {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if (
            (above is not None and not value > above)
            or (at_least is not None and not value >= at_least)
            or (at_most is not None and not value <= at_most)
        ):
            raise argparse.ArgumentTypeError(f"must be {rule}{note}, got {value}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


positive_float: Final = bounded(float, above=0.0)
non_negative_float: Final = bounded(float, at_least=0.0)
fraction: Final = bounded(float, at_least=0.0, at_most=1.0)
positive_int: Final = bounded(int, at_least=1)
non_negative_int: Final = bounded(int, at_least=0)
port: Final = bounded(int, at_least=0, at_most=65535, noun="a port number", note=" (0 picks a free port)")
"""The argparse types the commands use (``bounded``): a TCP port, 0 picking a free one, and so on."""


def host_port(text: str) -> str:
    """argparse type: ``HOST:PORT`` of a running implementation."""
    import pytest

    from pytest_taskqueue._options import parse_target

    try:
        parse_target(text)
    except pytest.UsageError:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (for example 127.0.0.1:50051)") from None
    return text.strip()


def implementation_commands(args: argparse.Namespace) -> ImplementationCommands | None:
    """The ``--target-cmd``/``--worker-cmd`` templates parsed, or None; ValueError names the option."""
    if args.worker_cmd is not None and args.target_cmd is None:
        raise ValueError("--worker-cmd: needs --target-cmd")
    if args.target_cmd is None:
        return None
    from pytest_taskqueue._implementation import ImplementationCommands, TemplateError

    try:
        return ImplementationCommands.parse(args.target_cmd, args.worker_cmd)
    except TemplateError as problem:
        raise ValueError(
            str(problem)
            .replace("--taskqueue-target-cmd", "--target-cmd")
            .replace("--taskqueue-worker-cmd", "--worker-cmd")
        ) from None


class InfraError(RuntimeError):
    """The run could not be carried out (a one-line message): exit ``EXIT_INFRA``, apart from anomalies."""


@contextlib.contextmanager
def harness_stack(
    commands: ImplementationCommands | None,
    *,
    prefix: str,
    log_dir: Path,
    start_timeout: float,
    visibility_timeout: int | None = None,
) -> Iterator[tuple[str, Stack]]:
    """Run the harness-owned stack and yield ``(mode, stack)`` for ``chaos`` and ``load``.

    With ``commands`` (``--target-cmd``/``--worker-cmd``) the stack runs that implementation on its
    own backends (mode ``target-cmd``); without, the reference (``reference-stack``). The logs go to
    ``log_dir`` and are kept; everything started is stopped on every exit path, a failed start and
    an interrupt (``Interrupted`` from a signal handler) included. A start that fails raises
    ``InfraError`` with one line: what failed and where its log is. ``visibility_timeout`` (seconds)
    replaces the stack's own (1 s, the conformance suite's) when given.
    """
    from pytest_taskqueue._implementation import reference_implementation
    from pytest_taskqueue._stack import Stack, StackConfig

    config = StackConfig(prefix=prefix, log_dir=log_dir, keep_logs=True, start_timeout=start_timeout)
    if visibility_timeout is not None:
        config = dataclasses.replace(config, visibility_timeout=visibility_timeout)
    if commands is not None:
        stack, mode = Stack(config, commands), "target-cmd"
    else:
        stack, mode = Stack(config, reference_implementation(config)), "reference-stack"
    try:
        try:
            stack.start()
        except Exception as failure:
            raise InfraError(f"the stack failed to start: {describe_failure(failure, log_dir)}") from failure
        yield mode, stack
    finally:
        stack.stop(keep_logs=True)
