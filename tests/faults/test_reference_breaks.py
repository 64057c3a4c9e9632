"""Rules that need real backends fail against the reference with that rule broken.

Each variant of ``tests.servers.reference_breaks`` runs through ``--taskqueue-target-cmd`` and
``--taskqueue-worker-cmd`` (API and worker broken the same way) against harness-owned backends; the
scenario for its rule must fail, naming the spec, and the verdict must be NOT CONFORMING. (The
unbroken reference passes the same scenarios in test_fault_scenarios.py.)
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass

import pytest

from tests.faults.faults_testutil import ROOT, inner_report, outcomes, reference_break_cmd
from tests.servers.reference_breaks import BREAKS

_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class BrokenReference:
    """A break of the reference, the scenario module and ``-k`` to run, the scenario that must fail."""

    name: str
    module: str
    select: str
    must_fail: str | tuple[str, ...]
    """The scenario id (fnmatch pattern) that must fail, or several that all must."""
    should_only: bool = False
    """The break deviates from a SHOULD: its optional scenario fails, the verdict is not affected."""


BROKEN_REFERENCE = [
    BrokenReference(
        "no_dead_letter",
        "dlq.py",
        "dead_task_message",
        "scenarios/dlq.py::test_dead_task_message_is_in_the_dead_letter_queue",
    ),
    BrokenReference(
        "no_heartbeat",
        "recovery.py",
        "longer_than_the_visibility_timeout",
        "scenarios/recovery.py::test_attempt_longer_than_the_visibility_timeout_runs_once",
    ),
    BrokenReference(
        "idempotency_per_process",
        "faults.py",
        "sigkill_of_the_api or two_api_processes",
        (
            "scenarios/faults.py::test_idempotency_survives_a_sigkill_of_the_api_process",
            "scenarios/faults.py::test_identical_submits_race_across_two_api_processes",
        ),
    ),
    BrokenReference(
        "internal_when_unreachable",
        "faults.py",
        "dynamodb_partition",
        "scenarios/faults.py::test_dynamodb_partition_while_processing",
    ),
    BrokenReference(
        "abandoned_attempt_stuck",
        "recovery.py",
        "worker_killed_mid_attempt",
        "scenarios/recovery.py::test_worker_killed_mid_attempt_completes_exactly_once",
    ),
    BrokenReference(
        "message_not_json",
        "dlq.py",
        "work_queue",
        "scenarios/dlq.py::test_task_message_in_the_work_queue_is_json_with_its_task_id",
    ),
    BrokenReference(
        "no_not_serving_notice",
        "lifecycle.py",
        "not_serving_before",
        "scenarios/lifecycle.py::test_health_answers_not_serving_before_the_server_stops",
        should_only=True,
    ),
    BrokenReference(
        "sqs_via_queue_url_host",
        "faults.py",
        "sqs_fault and partition",
        "scenarios/faults.py::test_sqs_fault_loses_no_task_and_completes_none_twice[[]partition]",
    ),
    BrokenReference(
        "never_queued",
        "recovery.py",
        "submitted_while_the_worker_is_down",
        "scenarios/recovery.py::test_task_submitted_while_the_worker_is_down_is_not_lost",
    ),
]


def test_every_reference_break_is_covered() -> None:
    assert sorted(case.name for case in BROKEN_REFERENCE) == sorted(BREAKS)


@pytest.mark.parametrize("case", BROKEN_REFERENCE, ids=[case.name for case in BROKEN_REFERENCE])
def test_suite_fails_against_a_broken_reference(inner: pytest.Pytester, case: BrokenReference) -> None:
    report_path = inner_report(inner)
    result = inner.runpytest_subprocess(
        f"--taskqueue-target-cmd={reference_break_cmd(case.name, 'serve')}",
        f"--taskqueue-worker-cmd={reference_break_cmd(case.name, 'worker')}",
        f"--taskqueue-report={report_path}",
        "--taskqueue-timeout=20",
        "-p",
        "no:cacheprovider",
        str(ROOT / "scenarios" / case.module),
        "-k",
        case.select,
        timeout=_TIMEOUT_S,
    )
    assert report_path.exists(), "\n".join(result.outlines[-40:] + result.errlines[-20:])
    report = json.loads(report_path.read_text())
    failed = {sid: message for sid, (outcome, message) in outcomes(report).items() if outcome == "failed"}
    explain = f"verdict {report.get('verdict')!r}\n" + "\n".join(result.outlines[-50:])
    patterns = (case.must_fail,) if isinstance(case.must_fail, str) else case.must_fail
    assert all(fnmatch.filter(failed, pattern) for pattern in patterns), explain
    matched = [scenario for pattern in patterns for scenario in fnmatch.filter(failed, pattern)]
    assert all("spec " in failed[scenario] for scenario in matched), explain
    if case.should_only:
        assert report["verdict"] != "not-conforming", explain
    else:
        assert report["verdict"] == "not-conforming", explain
