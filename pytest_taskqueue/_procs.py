"""Process supervision: every process the toolkit starts runs as a ``ManagedProcess``.

``ManagedProcess`` runs one command with its output appended to a log file, in a process group of
its own, and with Linux's parent-death signal set so the child dies with the harness even when the
harness is SIGKILLed; ``stop`` sends SIGTERM to the group, then SIGKILL. It is a
``pytest_taskqueue._waits.WaitTarget``: it waits for readiness with a ``WaitStrategy`` (HTTP, TCP,
a log line, gRPC health), returning early when the process exits; nothing sleeps a fixed time. A
start that fails (early exit, timeout, missing binary) stops what it started and raises
``BackendStartError`` whose first line names the backend, the reason and the command line,
followed by the tail of the log.

Parent-death signals are tied to the *thread* that forked the child, not the process: a child
started from a short-lived thread would be killed when that thread ends. All children are therefore
forked by one long-lived daemon thread (``_Spawner``), whichever thread asks for the start.

The signal is set by util-linux's ``setpriv --pdeathsig`` in front of the command, which keeps it
across its ``exec``. Python code between ``fork`` and ``exec`` (a ``preexec_fn``) is unsafe in a
process with threads, and the harness has many: children restarted from a busy harness sometimes
died of SIGSEGV or SIGABRT before they ran. Only where ``setpriv`` is missing does a ``preexec_fn``
call ``prctl`` instead.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import queue
import shlex
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn, Self

from pytest_taskqueue._waits import NotReady, TargetExited, WaitStrategy, wait_until_ready

__all__ = [
    "BackendStartError",
    "ManagedProcess",
    "MissingToolError",
    "ProcessRecord",
    "StartAborted",
    "display_command",
    "free_port",
    "free_ports",
    "read_process",
]

_LOG_TAIL_LINES = 30
_LOG_TAIL_BYTES = 16_384
_FIRST_DELAY_S = 0.005
_MAX_DELAY_S = 0.02
"""The readiness probe's pace: a restarted process is seen ready within 20 ms of being so (a probe
is a local connect, a health call or a read of the log: cheap)."""
_PR_SET_PDEATHSIG = 1


class BackendStartError(RuntimeError):
    """A backend or stack process could not be started.

    ``summary`` is one line naming the backend, what went wrong, its command line and log file;
    ``str()`` adds the tail of the log on the following lines.
    """

    def __init__(
        self,
        name: str,
        reason: str,
        *,
        command: str | None = None,
        log_path: Path | None = None,
        log_tail: str = "",
    ) -> None:
        self.name = name
        self.reason = reason
        self.command = command
        self.log_path = log_path
        self.log_tail = log_tail
        parts = [f"{name}: {reason}"]
        if command:
            parts.append(f"command: {command}")
        if log_path is not None:
            parts.append(f"log: {log_path}")
        self.summary = " ".join(" | ".join(parts).split())
        message = self.summary
        if log_tail.strip():
            message += f"\n--- last lines of {log_path or 'the log'} ---\n{log_tail.rstrip()}"
        super().__init__(message)


class StartAborted(BackendStartError):
    """The start was abandoned because the process was stopped meanwhile (usually by a caller
    reacting to another failure): a consequence, not a cause."""


class MissingToolError(BackendStartError):
    """A program the stack needs (``java``, ``mvn``, ``go``) is not installed; the message says what to do."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(name, reason)


# --------------------------------------------------------------------------------------------- ports


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Return ``count`` distinct ports that were free on ``host`` a moment ago.

    All sockets stay bound until every port is chosen, so the ports are distinct; a port can still
    be taken by someone else between this call and its use (the usual race of this technique).
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port(host: str = "127.0.0.1") -> int:
    """Return a port that was free on ``host`` a moment ago."""
    return free_ports(1, host)[0]


# --------------------------------------------------------------------------------------- spawning

try:
    _LIBC: Any = ctypes.CDLL(None, use_errno=True)
    _PRCTL: Any = _LIBC.prctl
except (OSError, AttributeError):  # not Linux: no parent-death signal, the group kill still works
    _PRCTL = None


_SETPRIV = shutil.which("setpriv") if _PRCTL is not None else None
"""util-linux's ``setpriv``, which sets the parent-death signal and then runs the command."""


def _with_death_signal(argv: Sequence[str], death_signal: int) -> list[str]:
    """``argv`` run through ``setpriv`` so the child gets ``death_signal`` when its parent dies."""
    assert _SETPRIV is not None
    return [_SETPRIV, f"--pdeathsig={signal.Signals(death_signal).name}", "--", *argv]


def _runnable(program: str, env: Mapping[str, str] | None, cwd: str | Path | None) -> bool:
    """Whether ``program`` names an executable, as ``exec`` would look it up for the child."""
    if os.sep in program:
        path = Path(cwd or ".") / program
        return path.is_file() and os.access(path, os.X_OK)
    return shutil.which(program, path=(env if env is not None else os.environ).get("PATH")) is not None


def _child_setup(death_signal: int, parent_pid: int) -> Callable[[], None]:
    """The ``preexec_fn``: ask Linux to send ``death_signal`` to the child when its parent dies."""

    def setup() -> None:
        if _PRCTL is not None:
            _PRCTL(_PR_SET_PDEATHSIG, death_signal, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return setup


class _Spawner:
    """One long-lived daemon thread that forks every child (see the module docstring)."""

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue[tuple[Callable[[], subprocess.Popen[bytes]], Future[Any]]] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def popen(self, make: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
        """Run ``make`` (which calls ``subprocess.Popen``) on the spawner thread and return its result."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="taskqueue-spawner", daemon=True)
                self._thread.start()
        future: Future[subprocess.Popen[bytes]] = Future()
        self._requests.put((make, future))
        try:
            return future.result()
        except BaseException:
            # Interrupted (Ctrl-C) while the spawner worked: do not leave an untracked child behind.
            with contextlib.suppress(BaseException):
                child = future.result()
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.wait()
            raise

    def _run(self) -> None:
        while True:
            make, future = self._requests.get()
            try:
                future.set_result(make())
            except BaseException as error:
                future.set_exception(error)


_SPAWNER = _Spawner()
_LIVE: set[ManagedProcess] = set()
_LIVE_LOCK = threading.Lock()


@atexit.register
def _stop_leftovers() -> None:
    """Last resort at interpreter exit: stop whatever a caller forgot to stop."""
    with _LIVE_LOCK:
        leftovers = list(_LIVE)
    for process in leftovers:
        with contextlib.suppress(Exception):
            process.stop(timeout=2.0)


def display_command(argv: Sequence[str]) -> str:
    """The command line as a shell would show it, with very long arguments shortened."""
    shown = [arg if len(arg) <= 160 else f"{arg[:80]}...({len(arg)} chars)" for arg in argv]
    return shlex.join(shown)


# ----------------------------------------------------------------------------- process table


@dataclass(frozen=True)
class ProcessRecord:
    """One line of the Linux process table (from ``/proc/<pid>/stat``).

    ``start_ticks`` (start time since boot) tells a process apart from a later one with the same pid.
    """

    pid: int
    ppid: int
    pgid: int
    state: str
    start_ticks: int
    command: str


def read_process(pid: int) -> ProcessRecord | None:
    """The process ``pid`` as the kernel shows it now, or None if there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces or parentheses itself.
    fields = stat[stat.rindex(")") + 2 :].split()
    command = raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()
    return ProcessRecord(
        pid=pid,
        ppid=int(fields[1]),
        pgid=int(fields[2]),
        state=fields[0],
        start_ticks=int(fields[19]),
        command=command or stat[stat.index("(") + 1 : stat.rindex(")")],
    )


# -------------------------------------------------------------------------------------- processes


class ManagedProcess:
    """One supervised child process (a context manager: start on enter, stop on exit).

    Args:
        name: what the process is, for messages ("ElasticMQ", "reference worker").
        argv: the command.
        log_path: file that receives stdout and stderr (appended to; each start writes a header).
        wait: readiness strategy; None means ready as soon as it is spawned.
        env: the child's whole environment (default: this process's).
        start_timeout: seconds to wait for readiness.
        stop_timeout: seconds between SIGTERM and SIGKILL in ``stop``.
        death_signal: what the child gets when the harness dies.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        wait: WaitStrategy | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        start_timeout: float = 30.0,
        stop_timeout: float = 5.0,
        death_signal: int = signal.SIGKILL,
    ) -> None:
        self.name = name
        self.argv = [str(arg) for arg in argv]
        self.log_path = Path(log_path)
        self.wait = wait
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.death_signal = death_signal
        self.run_log_offset = 0
        self.starts = 0
        self._popen: subprocess.Popen[bytes] | None = None
        self._stopping = False
        self._terminated = False
        self._lock = threading.RLock()

    # ------------------------------------------------------------------------------ properties

    def __repr__(self) -> str:
        return f"<ManagedProcess {self.name} pid={self.pid} running={self.running}>"

    @property
    def command_line(self) -> str:
        """The command as one shell-quoted line (long arguments shortened)."""
        return display_command(self.argv)

    @property
    def pid(self) -> int | None:
        """The pid of the current (or last) run, None before the first start."""
        return self._popen.pid if self._popen is not None else None

    @property
    def returncode(self) -> int | None:
        """Exit status of the last run (negative: killed by that signal); None while it runs."""
        return self._popen.poll() if self._popen is not None else None

    @property
    def running(self) -> bool:
        """True while the current run has not exited."""
        return self._popen is not None and self._popen.poll() is None

    @property
    def crashed(self) -> bool:
        """True when the current run exited on its own (not through ``stop`` or ``kill``)."""
        return self._popen is not None and self._popen.poll() is not None and not self._stopping

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines this run wrote to its log."""
        try:
            with open(self.log_path, "rb") as log:
                size = log.seek(0, os.SEEK_END)
                start = max(self.run_log_offset, size - _LOG_TAIL_BYTES)
                log.seek(start)
                text = log.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -------------------------------------------------------------------------------- lifecycle

    def start(self, *, wait: bool = True) -> Self:
        """Spawn the process and (unless ``wait=False``) wait until it is ready.

        Raises BackendStartError (after stopping the process) when it cannot be spawned, exits
        early or is not ready in time.
        """
        with self._lock:
            if self.running:
                raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
            self._stopping = False
            self._terminated = False
            self.starts += 1
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "ab") as log:
                header = f"--- pytest-taskqueue: start {self.starts} of {self.name}: {self.command_line}\n"
                log.write(header.encode())
                log.flush()
                # Probes and the error's log tail look at this run's output only, header excluded
                # (the command line in it could match a LogLineWait pattern).
                self.run_log_offset = log.tell()
                argv: list[str] = list(self.argv)
                setup: Callable[[], None] | None = None
                if _SETPRIV is None:
                    setup = _child_setup(self.death_signal, os.getpid())
                elif _runnable(argv[0], self.env, self.cwd):
                    argv = _with_death_signal(argv, self.death_signal)
                else:  # as Popen would say it, not as setpriv's failing exec would
                    raise BackendStartError(
                        self.name,
                        f"cannot run {self.argv[0]}: No such file or directory",
                        command=self.command_line,
                        log_path=self.log_path,
                    )

                def make() -> subprocess.Popen[bytes]:
                    return subprocess.Popen(
                        argv,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=self.env,
                        cwd=self.cwd,
                        start_new_session=True,
                        preexec_fn=setup,
                    )

                try:
                    self._popen = _SPAWNER.popen(make)
                except OSError as error:
                    raise BackendStartError(
                        self.name,
                        f"cannot run {self.argv[0]}: {error.strerror or error}",
                        command=self.command_line,
                        log_path=self.log_path,
                    ) from error
            with _LIVE_LOCK:
                _LIVE.add(self)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float | None = None) -> None:
        """Probe until ready; on failure stop the process and raise BackendStartError."""
        popen = self._popen
        if popen is None:
            raise RuntimeError(f"{self.name} was never started")
        strategy = self.wait
        if strategy is None:
            if popen.poll() is not None:
                self._fail(f"exited with code {popen.returncode} at start")
            return
        limit = self.start_timeout if timeout is None else timeout
        try:
            wait_until_ready(self, strategy, limit, first=_FIRST_DELAY_S, cap=_MAX_DELAY_S)
        except TargetExited as exited:
            if self._stopping:
                reason = "was stopped before it was ready"
                raise StartAborted(self.name, reason, command=self.command_line) from None
            self._fail(str(exited))
        except NotReady as late:
            self._fail(str(late))

    # -------------------------------------------------------------------- as a wait target

    def exit_status(self) -> str | None:
        """None while the current run goes on; else ``exited with code N``."""
        code = self.returncode
        return None if code is None else f"exited with code {code}"

    def output(self) -> str:
        """What this run has written to its log so far."""
        with open(self.log_path, "rb") as log:
            log.seek(self.run_log_offset)
            return log.read().decode("utf-8", "replace")

    def wait_for_exit(self, seconds: float) -> None:
        """Wait up to ``seconds``; returns at once when the process exits."""
        popen = self._popen
        if popen is None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(seconds)

    def _fail(self, reason: str) -> NoReturn:
        self.stop()
        raise BackendStartError(
            self.name,
            reason,
            command=self.command_line,
            log_path=self.log_path,
            log_tail=self.log_tail(),
        )

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM the process group, wait up to ``timeout`` (default ``stop_timeout``), then SIGKILL.

        Idempotent; returns the exit status (None if never started).
        """
        with self._lock:
            popen = self._popen
            if popen is None:
                return None
            self._stopping = True
            try:
                if popen.poll() is None:
                    if not self._terminated:
                        self._signal_group(popen, signal.SIGTERM)
                        self._terminated = True
                    try:
                        popen.wait(self.stop_timeout if timeout is None else timeout)
                    except subprocess.TimeoutExpired:
                        self._signal_group(popen, signal.SIGKILL)
                        popen.wait()
                    # Anything the child left in its group goes too.
                    self._signal_group(popen, signal.SIGKILL)
            finally:
                with _LIVE_LOCK:
                    _LIVE.discard(self)
            return popen.returncode

    def terminate(self) -> None:
        """Send SIGTERM to the process group without waiting (``stop`` then waits, without a second one).

        Lets several processes shut down side by side; a second SIGTERM would mean "stop now" to
        servers that shut down gracefully.
        """
        with self._lock:
            popen = self._popen
            if popen is None or popen.poll() is not None or self._terminated:
                return
            self._stopping = True
            self._signal_group(popen, signal.SIGTERM)
            self._terminated = True

    def kill(self) -> None:
        """SIGKILL the process group now (a crash, for tests) and reap it."""
        with self._lock:
            popen = self._popen
            if popen is None:
                return
            self._stopping = True
            if popen.poll() is None:
                self._signal_group(popen, signal.SIGKILL)
                popen.wait()
            with _LIVE_LOCK:
                _LIVE.discard(self)

    def pause(self) -> None:
        """SIGSTOP the process group (a hang, for chaos runs); ``resume`` continues it."""
        with self._lock:
            if self._popen is not None and self._popen.poll() is None:
                self._signal_group(self._popen, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT the process group after ``pause``."""
        with self._lock:
            if self._popen is not None and self._popen.poll() is None:
                self._signal_group(self._popen, signal.SIGCONT)

    def restart(self, *, wait: bool = True) -> Self:
        """Stop (gracefully) if running, then start again."""
        self.stop()
        return self.start(wait=wait)

    @staticmethod
    def _signal_group(popen: subprocess.Popen[bytes], signum: int) -> None:
        # The child leads its own group (start_new_session), so its pid is the group id.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(popen.pid, signum)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
