"""``harness.server``, ``harness.worker`` (and ``worker_is_server``) and ``harness.second_api()`` in
inner runs on owned stacks: the reference stack, and an implementation run by
``--taskqueue-target-cmd`` without a worker command (the reference's ``all`` mode, whose API
process runs the work)."""

from __future__ import annotations

import pytest

from tests.faults.faults_testutil import reference_cmd

_HEADER = """
import asyncio
import signal

import pytest
from pytest_taskqueue import TestHarness, pb

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.recovery, pytest.mark.required]


async def completes(harness, answer):
    task = await harness.wait_for_terminal(answer.task_id, timeout=60)
    assert task.status == pb.TASK_STATUS_COMPLETED, task
"""

_SEPARATE_WORKER = (
    _HEADER
    + """
async def test_server_kill_start_and_restart(harness: TestHarness):
    assert harness.worker_is_server is False
    server = harness.server
    server.kill()
    assert server.returncode == -signal.SIGKILL and harness.worker.running
    server.start()
    await server.wait_ready()
    await completes(harness, await harness.submit("noop"))
    pid = server.pid
    server.restart()
    await server.wait_ready()
    assert server.pid != pid
    await completes(harness, await harness.submit("noop"))


async def test_worker_kill_is_sigkill_and_leaves_the_server(harness: TestHarness):
    harness.worker.kill()
    assert harness.worker.returncode == -signal.SIGKILL and harness.server.running
    harness.worker.start()
    await harness.worker.wait_ready()
    await completes(harness, await harness.submit("noop"))


async def test_second_api_shares_the_backends_and_stops_on_exit(harness: TestHarness):
    key = harness.key("two-apis")
    async with harness.second_api() as second:
        process = next(p for name, p in harness.stack.processes().items() if "[second]" in name)
        assert process.running and second.target != harness.api.target
        first_answer, second_answer = await asyncio.gather(
            harness.api.submit(key, "echo", b"once"), second.submit(key, "echo", b"once")
        )
    assert not process.running
    assert first_answer.task_id == second_answer.task_id
    assert sorted([first_answer.created, second_answer.created]) == [False, True]
    await completes(harness, first_answer)
"""
)

_WORKER_IN_SERVER = (
    _HEADER
    + """
async def test_the_worker_is_the_api_process(harness: TestHarness):
    assert harness.worker_is_server is True
    harness.worker.kill()
    assert not harness.server.running and harness.server.returncode == -signal.SIGKILL
    harness.worker.start()
    await harness.worker.wait_ready()
    await completes(harness, await harness.submit("noop"))


async def test_second_api_of_the_implementation(harness: TestHarness):
    async with harness.second_api() as second:
        answer = await second.submit(harness.key("second"), "echo", b"via the second")
    await completes(harness, answer)
"""
)


def test_process_control_and_a_second_api_on_the_reference_stack(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_processes=_SEPARATE_WORKER)
    result = inner.runpytest_subprocess("-p", "no:cacheprovider", "test_processes.py", timeout=600)
    result.assert_outcomes(passed=3)


def test_without_a_worker_command_the_worker_is_the_api_process(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_processes=_WORKER_IN_SERVER)
    result = inner.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        f"--taskqueue-target-cmd={reference_cmd('all')}",
        "test_processes.py",
        timeout=600,
    )
    result.assert_outcomes(passed=2)
