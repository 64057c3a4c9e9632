"""The harness against an external target: skips with reasons, waits, their timeout message, keys."""

from __future__ import annotations

from collections.abc import Callable

import pytest

_HEADER = """
import pytest
from pytest_taskqueue import HarnessNotOwnedError, TERMINAL_STATUSES, TestHarness, WaitTimeout, pb

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.lifecycle, pytest.mark.required]
"""

_SKIPS = (
    _HEADER
    + """
@pytest.mark.harness_only
async def test_needs_backends(harness):
    raise AssertionError("must be skipped")

@pytest.mark.capability("reflection")
async def test_needs_reflection(harness):
    pass

@pytest.mark.capability("teleport")
async def test_needs_teleport(harness):
    raise AssertionError("must be skipped")

async def test_backends_are_not_reachable(harness):
    assert harness.owned is False
    with pytest.raises(HarnessNotOwnedError, match="mark the scenario @pytest.mark.harness_only"):
        harness.db
    with pytest.raises(HarnessNotOwnedError):
        harness.worker
    with pytest.raises(HarnessNotOwnedError):
        harness.server
    with pytest.raises(HarnessNotOwnedError):
        harness.worker_is_server
    with pytest.raises(HarnessNotOwnedError, match="harness.second_api needs harness-owned backends"):
        async with harness.second_api():
            raise AssertionError("must not start")
"""
)

_WAITS = (
    _HEADER
    + """
async def test_wait_for_completed(harness: TestHarness):
    answer = await harness.submit("echo", b"hi")
    task = await harness.wait_for_status(answer.task_id, pb.TASK_STATUS_COMPLETED)
    assert task.result == b"hi"
    assert (await harness.wait_for_terminal(answer.task_id)).status in TERMINAL_STATUSES
    assert [e.type for e in await harness.events(answer.task_id)] == [
        pb.TASK_EVENT_TYPE_SUBMITTED, pb.TASK_EVENT_TYPE_PROCESSING, pb.TASK_EVENT_TYPE_COMPLETED
    ]

async def test_terminal_in_another_status_fails_at_once(harness: TestHarness):
    answer = await harness.submit("noop")
    await harness.wait_for_terminal(answer.task_id)
    with pytest.raises(WaitTimeout, match="became COMPLETED \\\\(terminal\\\\) while waiting for RETRYING"):
        await harness.wait_for_status(answer.task_id, pb.TASK_STATUS_RETRYING, timeout=60)

async def test_resubmit_with_explicit_key(harness: TestHarness):
    key = harness.key("mine")
    first = await harness.submit("noop", key=key)
    second = await harness.api.submit(key, "noop")
    assert (first.created, second.created, second.task_id) == (True, False, first.task_id)
"""
)

_STALLED = (
    _HEADER
    + """
async def test_never_completes(harness: TestHarness):
    answer = await harness.submit("noop")
    await harness.wait_for_status(answer.task_id, pb.TASK_STATUS_COMPLETED, timeout=0.5)
"""
)

_KEYS = (
    _HEADER
    + """
def test_keys(harness, taskqueue_config):
    a, b, labelled = harness.key(), harness.key(), harness.key("x" * 1000)
    assert len({a, b, labelled}) == 3
    assert a.startswith(f"tq-{taskqueue_config.run_id}-main-")
    assert len(labelled.encode()) <= 256
    print("KEY", a)

def test_other_test_other_namespace(harness):
    print("KEY", harness.key())
"""
)


def test_skip_reasons_against_an_external_target(
    inner: pytest.Pytester, fake_server: Callable[..., str]
) -> None:
    target = fake_server("--capabilities=reflection,zz")
    inner.makepyfile(test_skips=_SKIPS)
    result = inner.runpytest("test_skips.py", f"--taskqueue-target={target}", "-rs")
    result.assert_outcomes(passed=2, skipped=2)
    result.stdout.fnmatch_lines_random(
        [
            "SKIPPED *test_skips.py*: needs harness-owned backends: the target's DLQ/worker is not reachable",
            "SKIPPED *test_skips.py*: target lacks capability 'teleport' "
            "(GetServerInfo.capabilities of plugin-tests-fake: reflection, zz)",
        ]
    )


@pytest.mark.parametrize("server_args", [(), ("--no-watch",)], ids=["watch", "polling"])
def test_waits_with_and_without_watch(
    inner: pytest.Pytester, fake_server: Callable[..., str], server_args: tuple[str, ...]
) -> None:
    target = fake_server(*server_args)
    inner.makepyfile(test_waits=_WAITS)
    result = inner.runpytest("test_waits.py", f"--taskqueue-target={target}")
    result.assert_outcomes(passed=3)


@pytest.mark.parametrize("server_args", [(), ("--no-watch",)], ids=["watch", "polling"])
def test_wait_timeout_shows_status_and_history(
    inner: pytest.Pytester, fake_server: Callable[..., str], server_args: tuple[str, ...]
) -> None:
    target = fake_server("--stall", *server_args)
    inner.makepyfile(test_stalled=_STALLED)
    result = inner.runpytest("test_stalled.py", f"--taskqueue-target={target}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "E *pytest_taskqueue.WaitTimeout: task fake-1 did not reach COMPLETED within 0.5 s",
            "E *  current: status PENDING, attempts 0/5",
            "E *  statuses seen: PENDING",
            "E *  events (1):",
            "E *    #1 SUBMITTED attempt=0",
        ]
    )
    if server_args:
        result.stdout.fnmatch_lines(
            ["E *  note: WatchTask failed (UNIMPLEMENTED: *); polled GetTask instead"]
        )


def test_keys_are_unique_per_test_and_call(inner: pytest.Pytester, fake_server: Callable[..., str]) -> None:
    target = fake_server()
    inner.makepyfile(test_keys=_KEYS)
    result = inner.runpytest("test_keys.py", f"--taskqueue-target={target}", "-s")
    result.assert_outcomes(passed=2)
    keys = [line.split()[-1] for line in result.stdout.lines if "KEY " in line]
    namespaces = {key.rsplit("-", 1)[0] for key in keys}
    assert len(keys) == 2 and len(namespaces) == 2, keys


def test_report_names_target_and_implementation(
    inner: pytest.Pytester, fake_server: Callable[..., str]
) -> None:
    target = fake_server("--implementation=acme-queue")
    inner.makepyfile(test_waits=_WAITS)
    result = inner.runpytest("test_waits.py", f"--taskqueue-target={target}", "--taskqueue-report=r.json")
    result.stdout.fnmatch_lines(
        [
            f"taskqueue target: {target}  implementation: acme-queue 0.0-test",
            "taskqueue level: API level*",
            "*",
            "taskqueue verdict: PARTIAL (*)",
        ]
    )
    assert '"implementation": "acme-queue"' in (inner.path / "r.json").read_text()
