"""A Locust user for the TaskQueue gRPC API, driving the same workload as ``taskqueue-harness load``.

    locust -f "$(python -m pytest_taskqueue.load locustfile)" --host 127.0.0.1:50051 \\
        --headless -u 50 -r 10 -t 60s --tq-mix noop:3,echo:1:1KiB --tq-user-rate 2

Each user submits ``--tq-user-rate`` tasks/s (Locust's ``constant_throughput``) built by
``pytest_taskqueue.load.workload.Workload`` from ``--tq-mix``, ``--tq-seed`` and
``--tq-duplicates``, under keys unique to the user. Every SubmitTask is reported through Locust's
request event (type ``grpc``, name ``SubmitTask``; a gRPC error is a failure named by its code), so
Locust's UI, CSV files and distributed master/worker mode work unchanged. A share of the
acknowledged tasks (``--tq-e2e-share``, default 0.1: one WatchTask stream per watched task is what
tracking costs the target) is watched until terminal and reported as its own entry (type ``e2e``,
name ``submit->terminal``): the time from the submit's send to the terminal snapshot's
``updated_at``, the server's own timestamp. Watching gives up after ``--tq-e2e-timeout`` s (a
failure of that entry).
"""

from __future__ import annotations

import itertools
import time
import uuid
from typing import Any

import grpc
import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()  # before any channel: gRPC's I/O must cooperate with Locust's greenlets

import gevent  # noqa: E402
import gevent.pool  # noqa: E402
from locust import User, constant_throughput, events, task  # noqa: E402

from pytest_taskqueue.load.workload import DEFAULT_MIX, Workload  # noqa: E402
from taskqueue_proto import taskqueue_pb2, taskqueue_pb2_grpc  # noqa: E402

__all__ = ["E2E_NAME", "E2E_TYPE", "SUBMIT_NAME", "SUBMIT_TYPE", "TaskQueueUser"]

SUBMIT_TYPE = "grpc"
SUBMIT_NAME = "SubmitTask"
E2E_TYPE = "e2e"
E2E_NAME = "submit->terminal"
_TERMINAL = (taskqueue_pb2.TASK_STATUS_COMPLETED, taskqueue_pb2.TASK_STATUS_DEAD)
_RUN_ID = uuid.uuid4().hex[:8]
_USER_NUMBERS = itertools.count()


def _add_options(parser: Any) -> None:
    group = parser.add_argument_group("pytest-taskqueue")
    group.add_argument(
        "--tq-mix", default=DEFAULT_MIX, help="task mix TYPE:WEIGHT[:PARAM],... (docs/load.md)"
    )
    group.add_argument("--tq-seed", type=int, default=0, help="seed of the mix")
    group.add_argument("--tq-duplicates", type=float, default=0.0, help="share of tasks submitted twice")
    group.add_argument("--tq-user-rate", type=float, default=1.0, help="tasks/s per user")
    group.add_argument("--tq-e2e-share", type=float, default=0.1, help="share of tasks watched to terminal")
    group.add_argument("--tq-e2e-timeout", type=float, default=60.0, help="seconds a watch may take")
    group.add_argument("--tq-timeout", type=float, default=5.0, help="seconds per SubmitTask")


events.init_command_line_parser.add_listener(_add_options)  # type: ignore[no-untyped-call]


class TaskQueueUser(User):
    """Submits the workload's tasks at a constant rate and watches a share of them to the end."""

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        options = environment.parsed_options
        self._options = options
        number = next(_USER_NUMBERS)
        self.workload = Workload.from_options(
            getattr(options, "tq_mix", DEFAULT_MIX),
            getattr(options, "tq_seed", 0),
            f"locust-{_RUN_ID}-{uuid.uuid4().hex[:6]}-{number}",
            getattr(options, "tq_duplicates", 0.0),
        )
        self._indices = itertools.count()
        self._watches = gevent.pool.Group()
        self._channel: grpc.Channel | None = None
        self._stub: taskqueue_pb2_grpc.TaskQueueStub | None = None

    def wait_time(self) -> float:
        """Locust's constant throughput at ``--tq-user-rate`` tasks/s per user."""
        rate = float(getattr(self._options, "tq_user_rate", 1.0))
        return float(constant_throughput(rate)(self))

    def on_start(self) -> None:
        """Open this user's channel to ``--host``."""
        host = (self.host or "").removeprefix("grpc://").removeprefix("http://")
        self._channel = grpc.insecure_channel(host)
        self._stub = taskqueue_pb2_grpc.TaskQueueStub(self._channel)

    def on_stop(self) -> None:
        """Stop the watches and close the channel."""
        self._watches.kill()
        if self._channel is not None:
            self._channel.close()

    def _fire(
        self, request_type: str, name: str, started: float, length: int, error: BaseException | None
    ) -> None:
        self.environment.events.request.fire(
            request_type=request_type,
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=length,
            exception=error,
            context={},
        )

    @task
    def submit(self) -> None:
        """One arrival of the workload: SubmitTask (twice for a duplicate), then maybe a watch."""
        assert self._stub is not None
        index = next(self._indices)
        request = self.workload.request(index)
        timeout = float(getattr(self._options, "tq_timeout", 5.0))
        for _ in range(self.workload.copies(index)):
            sent_ns = time.time_ns()
            started = time.perf_counter()
            try:
                answer = self._stub.SubmitTask(request, timeout=timeout)
            except grpc.RpcError as error:
                code = error.code().name if hasattr(error, "code") else "UNKNOWN"
                self._fire(SUBMIT_TYPE, SUBMIT_NAME, started, 0, RuntimeError(f"gRPC {code}"))
                continue
            self._fire(SUBMIT_TYPE, SUBMIT_NAME, started, answer.ByteSize(), None)
            share = float(getattr(self._options, "tq_e2e_share", 0.1))
            if answer.created and self.workload.watched(index, share):
                self._watches.spawn(self._watch, answer.task_id, sent_ns, started)

    def _watch(self, task_id: str, sent_ns: int, started: float) -> None:
        """Follow one task with WatchTask; report the e2e entry from its terminal ``updated_at``."""
        assert self._stub is not None
        timeout = float(getattr(self._options, "tq_e2e_timeout", 60.0))
        try:
            for snapshot in self._stub.WatchTask(
                taskqueue_pb2.WatchTaskRequest(task_id=task_id), timeout=timeout
            ):
                if snapshot.status in _TERMINAL:
                    elapsed_ms = (snapshot.updated_at.ToNanoseconds() - sent_ns) / 1e6
                    self.environment.events.request.fire(
                        request_type=E2E_TYPE,
                        name=E2E_NAME,
                        response_time=max(0.0, elapsed_ms),
                        response_length=0,
                        exception=None,
                        context={"task_id": task_id},
                    )
                    return
            error: BaseException = RuntimeError("WatchTask closed before a terminal status")
        except grpc.RpcError as rpc_error:
            code = rpc_error.code().name if hasattr(rpc_error, "code") else "UNKNOWN"
            error = RuntimeError(f"gRPC {code} while watching")
        self._fire(E2E_TYPE, E2E_NAME, started, 0, error)
