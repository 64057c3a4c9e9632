"""Broken in-memory servers under a 20 s chaos run: the history checker names each break's rule.

Every break a mixed workload can observe through the API is run at once (one chaos run per
server, all in one event loop), with network faults on each server's own ``api`` proxy. Each run's
anomalies must include the rule the break violates. The chaos-only breaks (``CHAOS_BREAKS``) are
among them: a task never completed, INTERNAL during a backend outage, attempts abandoned by a live
worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import replace

from fault_injection import Toxiproxy
from fault_injection.chaos import ChaosConfig, ChaosResult, run_chaos
from fault_injection.history import check
from tests.servers import CHAOS_BREAKS, running_server

EXPECTED: dict[str, set[str]] = {
    "never_complete_every_50th": {"not_terminal"},
    "internal_on_backend_outage": {"forbidden_code"},
    "abandons_without_fault": {"abandoned_without_fault"},
    "stale_reads": {"read_went_back"},
    "attempts_zero_until_terminal": {"status_mismatch"},
    "delayed_rerun_on_resubmit": {"event_after_terminal", "double_completed", "attempt_numbering"},
    "double_complete": {"double_completed"},
    "race_duplicates": {"duplicate_task_for_key"},
    "created_true_on_resubmit": {"created_twice"},
    "extra_attempt": {"attempt_numbering", "dead_without_max_failures"},
    "dead_too_early": {"dead_without_max_failures"},
    "missing_event": {"status_mismatch"},
    "wrong_attempt_numbers": {"attempt_numbering"},
    "no_last_error": {"bad_task_field"},
    "updated_before_created": {"bad_task_field"},
    "no_event_time": {"bad_event_field"},
    "echo_text_result": {"wrong_outcome_for_type"},
    "conflict_overwrites": {"task_mismatch"},
}
"""Each break a mixed run observes through the API, with the rules (any one of them) its run must report.

Not here: breaks of bad input (the workload sends valid requests), of health, of ``sleep``'s
duration, of a stream's close, and ``retrying_shown_as_processing`` (a PROCESSING read between two
attempts is indistinguishable from one just before the failure): the suite's scenarios catch those.
"""

_RUN = ChaosConfig(
    duration_s=20.0,
    clients=3,
    ops_per_second=15.0,
    progress_every_s=600.0,
    drain_timeout_s=10.0,
    resolve_timeout_s=10.0,
)


def test_every_chaos_break_is_exercised() -> None:
    assert set(CHAOS_BREAKS) <= set(EXPECTED)


async def _run_all(targets: dict[str, tuple[str, str]], toxiproxy: Toxiproxy) -> dict[str, ChaosResult]:
    async def one(seed: int, brk: str) -> tuple[str, ChaosResult]:
        listen, proxy = targets[brk]
        config = replace(_RUN, seed=seed, fault_proxies=[proxy])
        return brk, await run_chaos(listen, toxiproxy, config, progress=lambda line: None)

    pairs = await asyncio.gather(*(one(seed, brk) for seed, brk in enumerate(targets)))
    return dict(pairs)


def test_twenty_second_runs_flag_each_break(toxiproxy: Toxiproxy) -> None:
    targets: dict[str, tuple[str, str]] = {}
    with contextlib.ExitStack() as running:
        for brk in EXPECTED:
            address = running.enter_context(running_server(brk, extra_args=("--backoff-ms", "20")))
            proxy = toxiproxy.create_proxy(f"api-{brk}-{uuid.uuid4().hex[:6]}", "127.0.0.1:0", address)
            running.callback(toxiproxy.delete_proxy, proxy.name)
            targets[brk] = (proxy.listen, proxy.name)
        results = asyncio.run(_run_all(targets, toxiproxy))
    missed = {}
    for brk, result in results.items():
        rules = {anomaly.rule for anomaly in check(result.history)}
        if not rules & EXPECTED[brk]:
            missed[brk] = (
                f"expected one of {sorted(EXPECTED[brk])}, got {sorted(rules)} ({result.operations} ops)"
            )
    assert not missed, missed
    never_completed = results["never_complete_every_50th"]
    assert never_completed.lost, "the tasks the drain gave up on are reported with evidence"
    assert all("PENDING" in line for line in never_completed.lost), never_completed.lost
