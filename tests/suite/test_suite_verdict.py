"""The bundled suite passes against a conforming server and fails, naming the rule, against broken ones.

A suite that cannot fail is worth nothing: for every break of tests/servers/inmemory, the scenario
for the broken rule must fail and the verdict must be NOT CONFORMING.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import pytest

from tests.servers import BREAKS, QUIRKS
from tests.suite._runs import SuiteRun, SuiteRunner


def test_whole_suite_passes_against_the_conforming_server(run_suite: SuiteRunner) -> None:
    """Every scenario a plain target can reach passes; the verdict is CONFORMING AT API LEVEL (never
    the bare CONFORMING), listing the required scenarios this level could not run, and exits 0."""
    run = run_suite()
    assert run.result.ret == 0 and run.report["verdict"] == "conforming-at-api-level", run.explain()
    assert run.report["summary"]["failed"] == 0 and run.report["summary"]["errors"] == 0, run.explain()
    assert any("taskqueue verdict: CONFORMING AT API LEVEL (" in line for line in run.result.outlines)
    assert not any(line.rstrip() == "taskqueue verdict: CONFORMING" for line in run.result.outlines)
    not_run = {entry["id"]: entry for entry in run.report["not_run"]}
    assert not_run, "the harness-only scenarios (dlq, recovery, faults) cannot run against a plain target"
    for scenario, entry in not_run.items():
        module = scenario.split("::")[0]
        assert module in ("scenarios/dlq.py", "scenarios/recovery.py", "scenarios/faults.py"), run.explain()
        # Only the level (no harness-owned backends, no fault proxies) or an opt-in run not asked for.
        assert entry["why"] in ("level", "opt-in"), f"{scenario} did not run for another reason: {entry}"


def test_suite_passes_with_two_xdist_workers(run_suite: SuiteRunner) -> None:
    """Scenarios stay isolated when two workers share one target (keys are namespaced per worker);
    a run narrowed to two areas is PARTIAL."""
    run = run_suite(args=("-n", "2", "-m", "idempotency or lifecycle"))
    assert run.result.ret == 6 and run.report["verdict"] == "partial", run.explain()
    assert run.report["summary"]["failed"] == 0 and run.report["summary"]["errors"] == 0, run.explain()


@dataclass(frozen=True)
class Broken:
    """A break, what to run against it, and the scenario ids (fnmatch) that must fail."""

    name: str
    select: tuple[str, ...]
    must_fail: tuple[str, ...]
    sweep_rules: tuple[str, ...] = ()
    """Rules (``spec 2.3 (event_after_terminal)``) the closing sweep must report; with no
    ``must_fail``, the sweep alone catches the break: every scenario passes."""


def _area(area: str, *patterns: str) -> tuple[str, ...]:
    return ("-m", area, *(("-k", " or ".join(patterns)) if patterns else ()))


BROKEN = [
    Broken(
        "created_false_on_create",
        _area("lifecycle", "submit_answers_created"),
        ("*::test_submit_answers_created_pending_and_a_task_id",),
    ),
    Broken(
        "rerun_later",
        _area("lifecycle", "noop_history or task_fields_echo"),
        (),
        sweep_rules=("spec 2.3 (event_after_terminal)", "spec 7.1 (double_completed)"),
    ),
    Broken(
        "wrong_error_codes",
        _area("errors"),
        (
            "*::test_invalid_submit_is_invalid_argument[[]empty-key]",
            "*::test_empty_task_id_is_invalid_argument[[]GetTask]",
            "*::test_bad_task_payload_is_never_internal[[]sleep-not-json]",
        ),
    ),
    Broken(
        "race_duplicates",
        _area("idempotency", "racing"),
        ("*::test_racing_identical_submits_create_one_task",),
    ),
    Broken(
        "extra_attempt",
        _area("retry"),
        ("*::test_fail_always_is_dead_after_exactly_max_attempts[[]default]",),
    ),
    Broken(
        "missing_event",
        _area("lifecycle", "noop_history"),
        ("*::test_noop_history_is_exactly_submitted_processing_completed",),
    ),
    Broken(
        "rerun_on_resubmit",
        _area("idempotency", "resubmit"),
        ("*::test_resubmit_after_completed_adds_no_event_and_does_not_rerun",),
    ),
    Broken(
        "created_true_on_resubmit",
        _area("idempotency", "resubmit_after_completed_returns"),
        ("*::test_resubmit_after_completed_returns_the_same_task",),
    ),
    Broken(
        "raw_max_attempts_compare",
        _area("idempotency", "default_and_explicit"),
        ("*::test_default_and_explicit_five_are_the_same_request[[]0-then-5]",),
    ),
    Broken(
        "no_already_exists",
        _area("idempotency", "already_exists"),
        ("*::test_different_request_on_used_key_is_already_exists[[]payload]",),
    ),
    Broken(
        "double_complete",
        _area("lifecycle", "noop_history or history_order"),
        (
            "*::test_noop_history_is_exactly_submitted_processing_completed",
            "*::test_history_order_and_task_consistency",
        ),
    ),
    Broken(
        "watch_never_closes",
        _area("watch", "terminal_task_sends_one_snapshot and noop"),
        ("*::test_watching_a_terminal_task_sends_one_snapshot[[]noop]",),
    ),
    Broken(
        "not_found_as_invalid",
        _area("errors", "not_found"),
        ("*::test_unknown_task_id_is_not_found[[]GetTask]",),
    ),
    Broken(
        "key_limit_off_by_one",
        _area("errors", "boundary"),
        ("*::test_boundary_values_are_accepted[[]key-256-bytes]",),
    ),
    Broken(
        "dead_too_early",
        _area("retry", "fail_always"),
        ("*::test_fail_always_is_dead_after_exactly_max_attempts[[]default]",),
    ),
    Broken(
        "wrong_attempt_numbers",
        _area("retry"),
        (
            "*::test_failed_attempts_record_their_error",
            "*::test_fail_times_completes_on_the_next_attempt[[]1]",
        ),
    ),
    Broken("health_overall_only", _area("lifecycle", "health"), ("*::test_health_is_serving[[]service]",)),
    Broken(
        "echo_text_result",
        _area("lifecycle", "echo"),
        ("*::test_echo_result_equals_payload[[]all-byte-values]",),
    ),
    Broken(
        "payload_limit_ignored",
        _area("errors", "invalid_submit_is"),
        ("*::test_invalid_submit_is_invalid_argument[[]payload-over-limit]",),
    ),
    Broken(
        "no_last_error", _area("retry", "record_their_error"), ("*::test_failed_attempts_record_their_error",)
    ),
    Broken(
        "conflict_overwrites",
        _area("idempotency", "already_exists"),
        ("*::test_different_request_on_used_key_is_already_exists[[]payload]",),
    ),
    Broken(
        "rejected_submit_reserves_key",
        _area("errors", "creates_nothing"),
        ("*::test_rejected_submit_creates_nothing[[]unknown-task-type]",),
    ),
    Broken(
        "updated_before_created",
        _area("lifecycle", "created_at"),
        ("*::test_created_at_never_changes",),
    ),
    Broken(
        "no_event_time",
        _area("lifecycle", "history_order"),
        ("*::test_history_order_and_task_consistency",),
    ),
    Broken(
        "payload_limit_unbounded",
        _area("lifecycle or errors", "server_info_describes or payload"),
        (
            "*::test_server_info_describes_the_contract",
            "*::test_invalid_submit_is_invalid_argument[[]payload-over-limit]",
            "*::test_boundary_values_are_accepted[[]payload-at-limit]",
        ),
    ),
    Broken(
        "bad_payload_stuck",
        _area("errors", "bad_task_payload_is_never_internal"),
        ("*::test_bad_task_payload_is_never_internal[[]sleep-not-json]",),
    ),
    Broken(
        "rejected_key_truncated",
        _area("errors", "creates_nothing"),
        ("*::test_rejected_submit_creates_nothing[[]key-257-bytes]",),
    ),
    Broken(
        "extra_member_rejected",
        _area("errors", "other_payload_members"),
        ("*::test_other_payload_members_are_ignored",),
    ),
    Broken(
        "retrying_shown_as_processing",
        _area("retry", "reads_while_retrying"),
        ("*::test_reads_while_retrying_show_retrying_and_the_attempts_so_far",),
    ),
    Broken(
        "sleep_returns_at_once",
        _area("lifecycle", "sleep_completes"),
        ("*::test_sleep_completes[[]300]",),
    ),
    Broken(
        "delayed_rerun_on_resubmit",
        _area("idempotency", "resubmit_after"),
        (
            "*::test_resubmit_after_completed_adds_no_event_and_does_not_rerun",
            "*::test_resubmit_after_dead_changes_nothing",
        ),
    ),
    Broken(
        "watch_one_snapshot_then_unavailable",
        _area("watch", "streams_to_the_terminal"),
        ("*::test_watch_streams_to_the_terminal_state[[]sleep]",),
    ),
    Broken(
        "attempts_zero_until_terminal",
        _area("watch or retry", "streams_to_the_terminal or reads_while_retrying"),
        (
            "*::test_watch_streams_to_the_terminal_state[[]sleep]",
            "*::test_reads_while_retrying_show_retrying_and_the_attempts_so_far",
        ),
    ),
    Broken(
        "stale_reads",
        _area("retry", "reads_while_retrying"),
        ("*::test_reads_while_retrying_show_retrying_and_the_attempts_so_far",),
    ),
    Broken(
        "unavailable_after_create",
        _area("lifecycle", "created_pending"),
        ("*::test_submit_answers_created_pending_and_a_task_id",),
    ),
    Broken(
        "cancel_strands_task",
        _area("idempotency", "cancelled_submit"),
        ("*::test_cancelled_submit_then_resubmit_runs_the_task_once",),
    ),
]


@pytest.mark.parametrize("quirk", sorted(QUIRKS))
def test_a_should_deviation_fails_only_optional_scenarios(run_suite: SuiteRunner, quirk: str) -> None:
    """A server that breaks only a SHOULD passes every required scenario (none is stricter than the spec)."""
    run = run_suite(quirk, args=("--taskqueue-timeout=5", "-m", "lifecycle or retry"))
    failed = run.outcomes("failed")
    required_failed = [
        s["id"] for s in run.report["scenarios"] if s["outcome"] == "failed" and s["obligation"] == "required"
    ]
    # Narrowed to two areas, so PARTIAL (exit 6), never NOT CONFORMING (exit 1).
    assert failed and not required_failed and run.report["verdict"] == "partial", run.explain()
    assert run.result.ret == 6, run.explain()


def test_each_xdist_worker_sweeps_its_own_tasks(run_suite: SuiteRunner) -> None:
    """Under xdist the closing sweep runs in the workers (over the tasks their scenarios created)
    and the controller's verdict counts what they found, naming each creating scenario."""
    args = (
        "-n",
        "2",
        "-m",
        "lifecycle or idempotency",
        "-k",
        "noop_history or task_fields_echo or distinct_keys",
    )
    run = run_suite("rerun_later", args=args)
    assert run.result.ret == 1 and run.report["verdict"] == "not-conforming", run.explain()
    assert not run.outcomes("failed"), run.explain()
    creators = {violation["scenario"] for violation in run.report["sweep"]["violations"]}
    assert len(creators) >= 2, creators


def test_every_break_is_covered() -> None:
    """A new break in tests/servers needs its row here (and the suite must catch it)."""
    assert sorted(case.name for case in BROKEN) == sorted(BREAKS)


def _require_caught(run: SuiteRun, case: Broken) -> None:
    failed = run.outcomes("failed")
    assert run.result.ret == 1 and run.report["verdict"] == "not-conforming", run.explain()
    assert any("taskqueue verdict: NOT CONFORMING" in line for line in run.result.outlines), run.explain()
    violations = run.report["sweep"]["violations"]
    if case.sweep_rules:
        rules = {violation["rule"] for violation in violations}
        assert set(case.sweep_rules) <= rules, f"{case.name}: the sweep reported {violations}"
        scenarios = {violation["scenario"] for violation in violations}
        assert scenarios and all(s.startswith("scenarios/") for s in scenarios), violations  # the creator
        if not case.must_fail:
            assert not failed, f"{case.name}: only the sweep was to catch it, but {failed} failed"
    missed = [pattern for pattern in case.must_fail if not fnmatch.filter(failed, pattern)]
    assert not missed, (
        f"{case.name}: expected failures {missed} not among the failed scenarios\n{run.explain()}"
    )
    unnamed = {scenario: message for scenario, message in failed.items() if "spec " not in message}
    assert not unnamed, f"{case.name}: failures that do not name a spec rule: {unnamed}"


@pytest.mark.parametrize("case", BROKEN, ids=[case.name for case in BROKEN])
def test_suite_fails_against_a_broken_server(run_suite: SuiteRunner, case: Broken) -> None:
    """The scenario for the broken rule fails, its message quotes the spec, the verdict is NOT CONFORMING."""
    _require_caught(run_suite(case.name, args=("--taskqueue-timeout=5", *case.select)), case)
