"""The chaos run inside pytest: ``fault_injection``'s checked chaos run against the harness's target.

The scenario ``test_chaos_run_breaks_no_rule`` (``--taskqueue-chaos-seconds``) calls
``run_chaos_for_harness``; ``taskqueue-harness chaos`` runs the same engine from the command line.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fault_injection.chaos import ChaosOutcome
    from pytest_taskqueue._harness import TestHarness

__all__ = ["run_chaos_for_harness"]


async def run_chaos_for_harness(
    harness: TestHarness,
    seconds: float,
    seed: int,
    history_path: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> ChaosOutcome:
    """The chaos run against the harness's target, faulting every link of its stack, then checked.

    The worker links are skipped (and listed in the history) when the implementation runs without
    ``--taskqueue-worker-cmd``: nothing uses them.

    Skips (through ``harness.faults``) against a plain ``--taskqueue-target``, whose links are not
    proxied. The history is saved to ``history_path`` when given.
    """
    from fault_injection.chaos import ChaosConfig, run_and_check

    links = harness.faults.proxies  # resets Toxiproxy first; the harness resets it after the test
    skipped: dict[str, str] = {}
    if harness.worker_is_server:  # no --taskqueue-worker-cmd: the work runs in the API process
        reason = "nothing uses it: no --taskqueue-worker-cmd, the worker runs in the server"
        skipped = {name: reason for name in links if name.startswith("worker_")}
    config = ChaosConfig(
        seed=seed,
        duration_s=seconds,
        fault_proxies=tuple(name for name in links if name not in skipped),
        skipped_links=skipped,
    )
    return await run_and_check(
        harness.api.target,
        harness.faults.toxiproxy,
        config,
        history_path=history_path,
        progress=progress,
    )
