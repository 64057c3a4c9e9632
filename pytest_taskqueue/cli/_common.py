"""What every ``taskqueue-harness`` command shares: its name, exit statuses, error lines,
signal handling, failure descriptions and argument types."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from pytest_taskqueue._implementation import ImplementationCommands

__all__ = [
    "EXIT_ANOMALIES",
    "EXIT_FAILURE",
    "EXIT_INFRA",
    "EXIT_OK",
    "EXIT_USAGE",
    "PROG",
    "Interrupted",
    "describe_failure",
    "error",
    "exit_status_of_signal",
    "first_line",
    "fraction",
    "handling_signals",
    "host_port",
    "non_negative_int",
    "port",
    "positive_float",
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
"""``chaos``: the run could not be carried out (stack, Toxiproxy, target never SERVING)."""

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


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def fraction(text: str) -> float:
    """argparse type: a number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value:g}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def port(text: str) -> int:
    """argparse type: a TCP port, 0 picking a free one."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be in 0..65535 (0 picks a free port), got {value}")
    return value


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
