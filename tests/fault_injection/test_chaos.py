"""The chaos run: its seeded schedule, and short runs through a real Toxiproxy against the in-memory
test server, conforming (no anomalies) and deliberately broken (the break is flagged).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest

from fault_injection import Proxy, Toxiproxy
from fault_injection.chaos import FAULT_KINDS, ChaosConfig, ChaosResult, fault_schedule, open_fault, run_chaos
from fault_injection.history import History, check
from tests.servers import running_server

_RUN = ChaosConfig(
    duration_s=5.0, clients=4, ops_per_second=30.0, progress_every_s=60.0, drain_timeout_s=60.0
)


def test_same_seed_same_schedule_and_other_seeds_differ() -> None:
    first = fault_schedule(42, 60.0, ["api", "server_sqs"])
    assert first == fault_schedule(42, 60.0, ["api", "server_sqs"])
    assert first != fault_schedule(43, 60.0, ["api", "server_sqs"])
    assert len(first) >= 10


def test_schedule_is_sequential_and_heals_before_the_end() -> None:
    schedule = fault_schedule(7, 30.0, ["a", "b"], kinds=("latency", "down"))
    assert schedule
    for earlier, later in itertools.pairwise(schedule):
        assert earlier.start_s + earlier.duration_s < later.start_s
    assert schedule[-1].start_s + schedule[-1].duration_s <= 30.0
    assert {f.kind for f in schedule} <= {"latency", "down"}
    assert {f.proxy for f in schedule} <= {"a", "b"}
    assert fault_schedule(7, 30.0, []) == []


def test_every_kind_opens_and_undoes_its_fault(toxiproxy: Toxiproxy, proxy: Proxy) -> None:
    kinds_seen = set()
    for seed in range(200):
        for fault in fault_schedule(seed, 20.0, [proxy.name]):
            if fault.kind in kinds_seen:
                continue
            kinds_seen.add(fault.kind)
            with open_fault(fault, proxy):
                state = toxiproxy.get_proxy(proxy.name)
                assert (not state.enabled) if fault.kind == "down" else bool(proxy.toxics())
            assert toxiproxy.get_proxy(proxy.name).enabled and proxy.toxics() == []
        if kinds_seen == set(FAULT_KINDS):
            break
    assert kinds_seen == set(FAULT_KINDS)


@pytest.fixture
def api_proxy_factory(toxiproxy: Toxiproxy) -> Iterator[list[Proxy]]:
    made: list[Proxy] = []
    yield made
    for proxy in made:
        toxiproxy.delete_proxy(proxy.name)


def _chaos_through_toxiproxy(
    toxiproxy: Toxiproxy, made: list[Proxy], config: ChaosConfig, *breaks: str
) -> ChaosResult:
    with running_server(*breaks, extra_args=("--backoff-ms", "20")) as address:
        api = toxiproxy.create_proxy(f"api-{uuid.uuid4().hex[:8]}", "127.0.0.1:0", address)
        made.append(api)
        lines: list[str] = []
        result = asyncio.run(
            run_chaos(api.listen, toxiproxy, replace(config, fault_proxies=[api.name]), progress=lines.append)
        )
        assert lines[0].startswith("chaos: seed=")
        return result


def test_conforming_server_under_faults_has_no_anomalies(
    toxiproxy: Toxiproxy, api_proxy_factory: list[Proxy]
) -> None:
    result = _chaos_through_toxiproxy(toxiproxy, api_proxy_factory, replace(_RUN, seed=3))

    assert check(result.history) == []
    assert result.operations > 50
    assert result.applied, "the schedule applied no fault"
    assert not result.undrained
    kinds = collections.Counter(op.kind for op in result.history.operations)
    assert kinds["submit"] > 0 and kinds["health_after"] == len(result.applied)
    assert {s.task_type for s in result.history.tasks.values() if s} >= {"noop", "echo", "fail_times"}
    again = History.loads(result.history.dumps())
    assert check(again) == []


@pytest.mark.parametrize(
    ("brk", "rule"),
    [("double_complete", "double_completed"), ("race_duplicates", "duplicate_task_for_key")],
)
def test_broken_server_is_flagged(
    toxiproxy: Toxiproxy, api_proxy_factory: list[Proxy], brk: str, rule: str
) -> None:
    result = _chaos_through_toxiproxy(toxiproxy, api_proxy_factory, replace(_RUN, seed=5), brk)

    rules = {a.rule for a in check(result.history)}
    assert rule in rules, rules
