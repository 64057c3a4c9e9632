"""The plugin's fixtures (registered by ``plugin.py``); each is a documented override point.

Override any of them with an ordinary fixture of the same name in a ``conftest.py`` (see
docs/plugin.md). Dependencies run outward from the options: ``taskqueue_config`` ->
``taskqueue_stack`` -> ``taskqueue_target`` -> ``taskqueue_client`` -> ``taskqueue_server_info``
-> ``harness``. Session fixtures are set up on first use, so runs that never touch them (plain
tests on a machine where the plugin is installed) start nothing and contact nothing; the client,
harness and stack code (grpc, aioboto3) is imported by the fixtures that use it, not with this module.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

from pytest_taskqueue import _options
from pytest_taskqueue._collect import HARNESS_ONLY_REASON, PROP_SCENARIO, skip_for_level
from pytest_taskqueue._errors import UserMessageError
from pytest_taskqueue._infra import abort_run, one_line
from pytest_taskqueue._options import CONFIG_KEY, TaskQueueConfig
from pytest_taskqueue._report import INFO_KEY

if TYPE_CHECKING:
    from pytest_taskqueue._client import TaskQueueClient
    from pytest_taskqueue._harness import TestHarness
    from pytest_taskqueue._stack import Stack
    from pytest_taskqueue._sweep import SessionTasks
    from taskqueue_proto import taskqueue_pb2 as pb

__all__ = [
    "harness",
    "taskqueue_aws",
    "taskqueue_client",
    "taskqueue_config",
    "taskqueue_server_info",
    "taskqueue_stack",
    "taskqueue_sweep",
    "taskqueue_target",
    "taskqueue_tasks",
]


@pytest.fixture(scope="session")
def taskqueue_config(request: pytest.FixtureRequest) -> TaskQueueConfig:
    """The parsed ``--taskqueue-*`` options of this run."""
    return request.config.stash[CONFIG_KEY]


@pytest.fixture(scope="session")
def taskqueue_stack(
    request: pytest.FixtureRequest, taskqueue_config: TaskQueueConfig
) -> Iterator[Stack | None]:
    """The harness-owned stack (the reference, or ``--taskqueue-target-cmd``); None for an external target.

    Started once per session (once per xdist worker, its tables and queues named after the
    worker) and stopped at the end of it. A stack that fails to start stops the run with one
    line (exit code 3), after the rest of the error (the failing command, its log tail).
    """
    if taskqueue_config.target is not None:
        yield None
        return
    # Only runs that own a stack pay for these imports.
    from pytest_taskqueue._implementation import ImplementationCommands, reference_implementation
    from pytest_taskqueue._stack import Stack, StackConfig

    stack_config = StackConfig(
        prefix=taskqueue_config.resource_prefix,
        keep_logs=taskqueue_config.keep_logs,
        backend=taskqueue_config.backend,
        dynamodb_image=taskqueue_config.dynamodb_image,
        elasticmq_image=taskqueue_config.elasticmq_image,
        toxiproxy_image=taskqueue_config.toxiproxy_image,
    )
    target_cmd, worker_cmd = taskqueue_config.target_cmd, taskqueue_config.worker_cmd
    if target_cmd is not None:
        # --taskqueue-target-cmd: the same backends and proxies around the user's implementation.
        implementation = ImplementationCommands.parse(target_cmd, worker_cmd)
    else:
        implementation = reference_implementation(stack_config)
    stack = Stack(stack_config, implementation)
    try:
        stack.start()
    except Exception as error:
        first, _, rest = str(error).strip().partition("\n")
        # Errors already written for the user (the docker backend's "no Docker daemon answers ...;
        # use --taskqueue-backend=local") are shown as they are.
        if not isinstance(error, UserMessageError):
            owned = taskqueue_config.target_cmd is None
            what = "the reference stack" if owned else "the implementation's stack"
            first = f"taskqueue: {what} failed to start: {first}"
        abort_run(request, first, detail=rest)
    try:
        yield stack
    finally:
        log_dir = str(stack.log_dir)
        stack.stop()
        if taskqueue_config.keep_logs:
            request.config.stash[INFO_KEY].kept_logs.append(log_dir)


@pytest.fixture(scope="session")
def taskqueue_target(taskqueue_config: TaskQueueConfig, taskqueue_stack: Stack | None) -> str:
    """``host:port`` of the implementation under test: ``--taskqueue-target``, else the stack's API."""
    if taskqueue_stack is not None:
        return str(taskqueue_stack.target)
    assert taskqueue_config.target is not None
    return taskqueue_config.target


@pytest.fixture(scope="session")
def taskqueue_tasks() -> SessionTasks:
    """What the session's client saw: the tasks each scenario created and every read of them."""
    from pytest_taskqueue._sweep import SessionTasks

    return SessionTasks()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def taskqueue_client(
    request: pytest.FixtureRequest,
    taskqueue_config: TaskQueueConfig,
    taskqueue_target: str,
    taskqueue_tasks: SessionTasks,
) -> AsyncIterator[TaskQueueClient]:
    """A client of the target, once it answers its health check (else the run stops: exit code 3).

    An external target that refuses the connection stops the run at once; only a target the
    harness started is waited for while it may still be starting.
    Every answer it gets is noted in ``taskqueue_tasks`` for the closing sweep.
    """
    from pytest_taskqueue._client import ReadinessError, TaskQueueClient, check_listening

    client = TaskQueueClient(
        taskqueue_target,
        tls_ca=taskqueue_config.tls_ca,
        token=taskqueue_config.token,
        rpc_timeout=min(taskqueue_config.timeout, _options.MAX_RPC_TIMEOUT_S),
        observers=taskqueue_tasks.interceptors(),
    )
    try:
        try:
            if taskqueue_config.target is not None:
                await check_listening(taskqueue_target, taskqueue_config.connect_timeout)
            await client.wait_ready(taskqueue_config.connect_timeout)
        except ReadinessError as error:
            abort_run(request, f"taskqueue: target {taskqueue_target} is unreachable: {error}")
        yield client
    finally:
        await client.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def taskqueue_server_info(
    request: pytest.FixtureRequest, taskqueue_client: TaskQueueClient, taskqueue_target: str
) -> pb.ServerInfo:
    """The target's GetServerInfo answer, asked once per session (``harness.info``)."""
    from pytest_taskqueue._client import describe_rpc_error

    try:
        info = await taskqueue_client.server_info()
    except Exception as error:
        abort_run(
            request,
            f"taskqueue: target {taskqueue_target}: GetServerInfo failed: {describe_rpc_error(error)}",
        )
    request.config.stash[INFO_KEY].note_target(taskqueue_target, info.implementation, info.version)
    return info


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def taskqueue_aws(
    taskqueue_stack: Stack | None, taskqueue_target: str
) -> AsyncIterator[tuple[Any, Any] | None]:
    """aioboto3 ``(dynamodb, sqs)`` clients of the harness-owned backends, or None when not owned."""
    if taskqueue_stack is None or str(taskqueue_stack.target) != taskqueue_target:
        yield None
        return
    import aioboto3

    from pytest_taskqueue._implementation import TEST_CREDENTIALS

    session = aioboto3.Session(
        aws_access_key_id=TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=taskqueue_stack.region,
    )
    async with contextlib.AsyncExitStack() as clients:
        db = await clients.enter_async_context(
            session.client("dynamodb", endpoint_url=taskqueue_stack.dynamodb_endpoint)
        )
        sqs = await clients.enter_async_context(
            session.client("sqs", endpoint_url=taskqueue_stack.sqs_endpoint)
        )
        yield db, sqs


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def taskqueue_sweep(
    request: pytest.FixtureRequest,
    taskqueue_config: TaskQueueConfig,
    taskqueue_stack: Stack | None,
    taskqueue_target: str,
    taskqueue_client: TaskQueueClient,
    taskqueue_tasks: SessionTasks,
) -> AsyncIterator[SessionTasks]:
    """The closing sweep, run when the session ends (before the client closes); see ``_sweep``.

    Waits until the visibility timeout (the owned queue's, else ``--taskqueue-sweep-wait``) has
    passed since the last task was created, re-reads every task, and records what it found in the
    run's ``RunInfo``, which the verdict reads.
    """
    from pytest_taskqueue._sweep import sweep

    yield taskqueue_tasks
    info = request.config.stash[INFO_KEY]
    session = request.session
    if info.infra_error or session.shouldstop or session.shouldfail:
        info.sweep_note = "not run: the run stopped early"
        return
    owned = taskqueue_stack is not None and str(taskqueue_stack.target) == taskqueue_target
    wait = (
        float(taskqueue_stack.visibility_timeout)
        if owned and taskqueue_stack
        else taskqueue_config.sweep_wait
    )
    findings = await sweep(
        taskqueue_client, taskqueue_tasks, wait_s=wait, deadline_s=taskqueue_config.timeout
    )
    info.sweep_ran = True
    info.sweep_tasks += findings.tasks
    info.sweep_violations.extend(findings.violations)
    info.sweep_note = findings.note


def _capability_missing(request: pytest.FixtureRequest, info: pb.ServerInfo) -> str | None:
    """Why this scenario cannot run against this target, from its ``capability`` markers; None when it can."""
    for mark in request.node.iter_markers("capability"):
        name = str(mark.args[0]) if mark.args else str(mark.kwargs.get("name", ""))
        if name and name not in info.capabilities:
            listed = ", ".join(info.capabilities) or "none"
            return one_line(
                f"target lacks capability {name!r} (GetServerInfo.capabilities of "
                f"{info.implementation or 'the target'}: {listed})"
            )
    return None


@pytest_asyncio.fixture(loop_scope="session")
async def harness(
    request: pytest.FixtureRequest,
    taskqueue_config: TaskQueueConfig,
    taskqueue_stack: Stack | None,
    taskqueue_target: str,
    taskqueue_client: TaskQueueClient,
    taskqueue_server_info: pb.ServerInfo,
    taskqueue_aws: tuple[Any, Any] | None,
    taskqueue_sweep: SessionTasks,
) -> TestHarness:
    """A ``TestHarness`` for one test: its own key namespace, the session's client and backends.

    Skips the test, with the reason, when it is ``harness_only`` and the target is external, or
    when it needs a ``capability`` the target does not list.
    """
    from pytest_taskqueue._harness import KeyFactory, OwnedBackends, TestHarness

    taskqueue_sweep.scenario = str(dict(request.node.user_properties).get(PROP_SCENARIO, request.node.nodeid))
    owned = taskqueue_stack is not None and str(taskqueue_stack.target) == taskqueue_target
    if not owned and request.node.get_closest_marker("harness_only") is not None:
        skip_for_level(request.node, HARNESS_ONLY_REASON)
    reason = _capability_missing(request, taskqueue_server_info)
    if reason is not None:
        pytest.skip(reason)
    backends = None
    faults = None
    if owned and taskqueue_stack is not None and taskqueue_aws is not None:
        from pytest_taskqueue._faults import HarnessFaults

        backends = OwnedBackends(taskqueue_stack, *taskqueue_aws)
        faults = HarnessFaults(taskqueue_stack.toxiproxy_url)
        request.addfinalizer(faults.reset_if_used)  # per-test isolation: no fault outlives its test
    return TestHarness(
        api=taskqueue_client,
        info=taskqueue_server_info,
        timeout=taskqueue_config.timeout,
        keys=KeyFactory(taskqueue_config.run_id, taskqueue_config.worker_id, request.node.nodeid),
        backends=backends,
        faults=faults,
        node=request.node,
    )
