"""Load runs whose submits lose their answer after the task was created (spec 3.3, 3.6, 3.7).

A submit answered UNAVAILABLE or DEADLINE_EXCEEDED has an unknown outcome: the task may exist.
After the schedule the load run resubmits each such arrival with the same key and request until
a definite answer, counts the task that answer names, and checks its history like any other.

Two ways to lose the answers: the in-memory server's ``--lose-answers N`` (every Nth creating
submit writes and queues its task, then answers UNAVAILABLE), and a real Toxiproxy latency toxic
longer than the call's deadline, so that every submit of the schedule reaches the server (which
creates the task) after its client gave up with DEADLINE_EXCEEDED; the toxic is lifted when the
run starts resolving. (It delays the requests, not the answers: removing a latency toxic that
still holds data for a client gone meanwhile can hang Toxiproxy, Shopify/toxiproxy#412.)

The reference stack is loaded the second way through its own ``api`` link. A conforming server
passes with every task counted; a server that strands such a task
(``cancel_strands_task``) or runs it again on the retry (``rerun_on_resubmit``) fails the run with
the anomaly named.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from fault_injection import Proxy, Toxiproxy
from fault_injection.history import INDETERMINATE_CODES
from pytest_taskqueue._stack import StackConfig, reference_stack
from pytest_taskqueue.load.run import RunOutcome, RunSettings, run_load
from pytest_taskqueue.load.workload import Workload
from tests.fault_injection.fault_injection_testutil import proxy_to
from tests.load.load_testutil import RELAXED_LAG
from tests.load.load_testutil import run_load as run_load_command
from tests.servers import running_server

_LOSE_EVERY = 4
_RATE, _DURATION = 40, 3
_RERUN_RULES = {"event_after_terminal", "double_completed", "attempt_numbering"}
"""What a task run again after its terminal event breaks (any one of them names it)."""


def _lost_keys(history: dict[str, Any]) -> set[str]:
    """Keys with a submit whose outcome was unknown (one submit per arrival: the ones resolved)."""
    return {op["idempotency_key"] for op in history["operations"] if op["outcome"] == "unknown"}


def test_answers_lost_after_create_are_resolved_counted_and_checked(tmp_path: Path) -> None:
    report_path = tmp_path / "load.json"
    with running_server(extra_args=("--lose-answers", str(_LOSE_EVERY))) as address:
        run = run_load_command(
            "--target", address, "--rate", str(_RATE), "--duration", str(_DURATION), "--duplicates", "0",
            *RELAXED_LAG, report=report_path,
        )  # fmt: skip

    assert run.returncode == 0, run.explain()
    assert run.report is not None
    result = run.report["run"]
    submits, tasks = result["submits"], result["tasks"]
    lost = submits["errors_by_code"].get("UNAVAILABLE", 0)
    assert lost >= _RATE * _DURATION // _LOSE_EVERY - 1, submits
    assert submits["resolving"] == {"OK": lost} and submits["unresolved"] == 0, submits
    # Every arrival is one task, the ones whose answer was lost included, and every one was checked.
    assert tasks["acknowledged"] == _RATE * _DURATION, tasks
    assert tasks["by_status"] == {"COMPLETED": _RATE * _DURATION}, tasks
    assert run.report["history"]["anomalies"] == []
    assert "resolving" in run.stderr


@pytest.mark.parametrize(
    ("brk", "rules"),
    [("cancel_strands_task", {"not_terminal"}), ("rerun_on_resubmit", _RERUN_RULES)],
)
def test_a_server_that_mishandles_the_retry_of_a_lost_answer_fails_the_run(
    tmp_path: Path, brk: str, rules: set[str]
) -> None:
    """Only the tasks whose answer was lost are hurt, so only the resolution can reveal the break."""
    report_path = tmp_path / "load.json"
    with running_server(brk, extra_args=("--lose-answers", str(_LOSE_EVERY))) as address:
        run = run_load_command(
            "--target", address, "--rate", str(_RATE), "--duration", str(_DURATION), "--duplicates", "0",
            "--drain-timeout", "3", *RELAXED_LAG, report=report_path,
        )  # fmt: skip

    assert run.returncode == 1, run.explain()
    assert run.report is not None and run.report["verdict"] == "anomalies"
    found = run.report["history"]["anomalies"]
    assert rules & {a["rule"] for a in found}, run.report["history"]["anomalies_by_rule"]
    history = json.loads(Path(run.report["history"]["path"]).read_text())
    lost = _lost_keys(history)
    assert lost and {a["idempotency_key"] for a in found if a["rule"] in rules} <= lost, found
    assert any(f"{rule}: task" in run.stdout for rule in rules) and "load: ANOMALIES" in run.stdout


# ------------------------------------------------------------------- answers lost on the network


def _run_with_answers_delayed(
    proxy: Proxy, *, rpc_timeout_s: float, drain_timeout_s: float = 10
) -> RunOutcome:
    """A load run through ``proxy``, which delivers requests after their deadline until it resolves.

    The toxic goes on before the schedule and comes off when the run says it is resolving, so every
    schedule submit reaches the server (which creates the task) and none sees its answer."""
    proxy.add_toxic(
        "latency", name="requests-late", stream="upstream",
        attributes={"latency": int(rpc_timeout_s * 1000) + 700},
    )  # fmt: skip
    lifted: list[str] = []

    def progress(line: str) -> None:
        if "resolving" in line and not lifted:
            proxy.remove_toxic("requests-late")
            lifted.append(line)

    settings = RunSettings(
        rate=20,
        duration_s=2,
        workload=Workload.from_options("noop:1", 0, f"lost-{uuid.uuid4().hex[:8]}", 0.0),
        rpc_timeout_s=rpc_timeout_s,
        drain_timeout_s=drain_timeout_s,
        max_lag_s=5.0,
    )
    try:
        outcome = run_load(proxy.listen, settings, progress)
    finally:
        if not lifted:
            proxy.remove_toxic("requests-late")
    assert lifted, "the run never said it was resolving: no answer was lost"
    return outcome


def _assert_every_task_resolved_and_clean(outcome: RunOutcome) -> None:
    submits, tasks = outcome.summary["submits"], outcome.summary["tasks"]
    assert set(submits["errors_by_code"]) <= set(INDETERMINATE_CODES), submits
    assert submits["errors_by_code"].get("DEADLINE_EXCEEDED", 0) > 0, submits
    assert submits["resolving"].get("OK", 0) == 40 and submits["unresolved"] == 0, submits
    assert tasks["acknowledged"] == 40 and tasks["by_status"] == {"COMPLETED": 40}, tasks
    assert outcome.anomalies == [], [a.line() for a in outcome.anomalies]


def test_answers_lost_on_the_network_are_resolved_counted_and_checked(toxiproxy: Toxiproxy) -> None:
    with running_server() as address, proxy_to(toxiproxy, address, "load-lost") as proxy:
        outcome = _run_with_answers_delayed(proxy, rpc_timeout_s=0.5)

    _assert_every_task_resolved_and_clean(outcome)


def test_a_task_run_again_by_the_retry_of_a_lost_answer_is_caught(toxiproxy: Toxiproxy) -> None:
    with running_server("rerun_on_resubmit") as address, proxy_to(toxiproxy, address, "load-lost") as proxy:
        outcome = _run_with_answers_delayed(proxy, rpc_timeout_s=0.5)

    assert outcome.summary["submits"]["resolving"].get("OK", 0) == 40, outcome.summary["submits"]
    assert _RERUN_RULES & {a.rule for a in outcome.anomalies}, [a.line() for a in outcome.anomalies]


def test_the_reference_resolves_answers_lost_on_its_api_link(tmp_path: Path) -> None:
    """The reference stack, its own ``api`` Toxiproxy link delaying the requests past their deadline:
    the reference may be cancelled mid-submit (spec 3.7), and the retries must still give one task
    each, run once."""
    config = StackConfig(prefix=f"lost-{uuid.uuid4().hex[:6]}", log_dir=tmp_path / "logs", keep_logs=True)
    with reference_stack(config) as stack:
        api = stack.toxiproxy_client().get_proxy("api")
        outcome = _run_with_answers_delayed(api, rpc_timeout_s=2.0, drain_timeout_s=60)

    _assert_every_task_resolved_and_clean(outcome)
