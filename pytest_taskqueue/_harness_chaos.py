"""The chaos run inside pytest: ``fault_injection``'s checked chaos run against the harness's target.

The scenario ``test_chaos_run_breaks_no_rule`` (``--taskqueue-chaos-seconds``) calls
``run_chaos_for_harness``; ``taskqueue-harness chaos`` runs the same engine from the command line.
Both hand the processes the harness owns to the fault schedule as ``CrashableProcess``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fault_injection.chaos import ChaosOutcome
    from pytest_taskqueue._harness import TestHarness

__all__ = ["CrashableProcess", "run_chaos_for_harness"]

_STARTS = 3


class CrashableProcess:
    """A harness-owned process (``ManagedProcess``) as the chaos schedule's ``ProcessControl``.

    ``kill`` is SIGKILL, ``start`` starts it again and waits until it is ready, ``pause`` and
    ``resume`` are SIGSTOP and SIGCONT. A restart forks from a process whose gRPC threads are busy;
    a child that dies by a signal before it is ready (it never ran the implementation) is started
    again, up to three times, each said through ``progress``.
    """

    def __init__(self, process: Any, progress: Callable[[str], None] | None = None) -> None:
        self.process = process
        self._progress = progress

    def kill(self) -> None:
        self.process.kill()

    def start(self) -> None:
        from pytest_taskqueue._procs import BackendStartError

        for attempt in range(1, _STARTS + 1):
            try:
                self.process.start()
                return
            except BackendStartError:
                code = self.process.returncode
                if attempt == _STARTS or code is None or code >= 0:
                    raise
                if self._progress is not None:
                    self._progress(f"chaos: {self.process.name} died by signal {-code} while starting; again")

    def pause(self) -> None:
        self.process.pause()

    def resume(self) -> None:
        self.process.resume()


async def run_chaos_for_harness(
    harness: TestHarness,
    seconds: float,
    seed: int,
    history_path: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> ChaosOutcome:
    """The chaos run against the harness's target, faulting every link of its stack, then checked.

    The harness owns the processes, so the schedule also kills and pauses the API server and the
    worker (process faults). The worker links are skipped (and listed in the history) when the
    implementation runs without ``--taskqueue-worker-cmd``: nothing uses them.

    Skips (through ``harness.faults``) against a plain ``--taskqueue-target``, whose links are not
    proxied. The history is saved to ``history_path`` when given.
    """
    from fault_injection.chaos import ChaosConfig, run_and_check

    links = harness.faults.proxies  # resets Toxiproxy first; the harness resets it after the test
    skipped: dict[str, str] = {}
    if harness.worker_is_server:  # no --taskqueue-worker-cmd: the work runs in the API process
        reason = "nothing uses it: no --taskqueue-worker-cmd, the worker runs in the server"
        skipped = {name: reason for name in links if name.startswith("worker_")}
    processes = {"server": CrashableProcess(harness.server.process, progress)}
    if not harness.worker_is_server:
        processes["worker"] = CrashableProcess(harness.worker.process, progress)
    config = ChaosConfig(
        seed=seed,
        duration_s=seconds,
        fault_proxies=tuple(name for name in links if name not in skipped),
        skipped_links=skipped,
        fault_processes=tuple(sorted(processes)),
    )
    return await run_and_check(
        harness.api.target,
        harness.faults.toxiproxy,
        config,
        history_path=history_path,
        progress=progress,
        processes=processes,
    )
