"""Unit tests of the docker backend that need no Docker: the no-daemon line, image naming rules."""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys

import pytest

from pytest_taskqueue import _docker
from pytest_taskqueue._docker import (
    DYNAMODB_LOCAL_COMMAND,
    DockerBackends,
    DockerUnavailableError,
    check_docker,
)

_PREFIX = "taskqueue: docker backend selected but no Docker daemon answers ("
_SUFFIX = "); use --taskqueue-backend=local"


def _assert_one_line(error: DockerUnavailableError, socket_url: str, reason: str) -> None:
    message = str(error)
    assert "\n" not in message
    assert message == f"{_PREFIX}{socket_url}: {reason}{_SUFFIX}"
    # Raised "from None": printing it shows no chain of docker-client exceptions.
    assert error.__cause__ is None
    assert error.__suppress_context__


def test_missing_socket_gives_the_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    url = f"unix://{tmp_path / 'absent.sock'}"
    monkeypatch.setenv("DOCKER_HOST", url)
    with pytest.raises(DockerUnavailableError) as caught:
        check_docker()
    _assert_one_line(caught.value, url, "No such file or directory")


def test_dead_socket_gives_the_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    """A socket file with no process listening on it: what a crashed dockerd leaves."""
    path = tmp_path / "dead.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()
    url = f"unix://{path}"
    monkeypatch.setenv("DOCKER_HOST", url)
    with pytest.raises(DockerUnavailableError) as caught:
        check_docker()
    _assert_one_line(caught.value, url, "Connection refused")


def test_start_without_daemon_raises_the_same_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    url = f"unix://{tmp_path / 'absent.sock'}"
    monkeypatch.setenv("DOCKER_HOST", url)
    backends = DockerBackends()
    with pytest.raises(DockerUnavailableError) as caught, backends:
        pytest.fail("the block must not run without a daemon")
    _assert_one_line(caught.value, url, "No such file or directory")
    assert repr(backends).endswith("stopped)")


def test_uncaught_error_prints_no_docker_client_trace(tmp_path: pathlib.Path) -> None:
    """Even unhandled, the error's traceback names no docker-client frame or exception."""
    url = f"unix://{tmp_path / 'absent.sock'}"
    code = "from pytest_taskqueue._docker import DockerBackends\nDockerBackends().start()\n"
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**_env_without_docker(), "DOCKER_HOST": url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    expected = f"{_PREFIX}{url}: No such file or directory{_SUFFIX}"
    assert last == f"pytest_taskqueue._docker.DockerUnavailableError: {expected}"
    assert "docker.errors" not in done.stderr
    assert "requests.exceptions" not in done.stderr


def _env_without_docker() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "TESTCONTAINERS_"))}


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("amazon/dynamodb-local:2.5.2", True),
        ("amazon/dynamodb-local", True),
        ("amazon/dynamodb-local@sha256:0123", True),
        ("registry.example:5000/amazon/dynamodb-local:latest", True),
        ("taskqueue-test/dynamodb:moto", False),
        ("amazon/dynamodb-local-fork:1", False),
        ("localhost:5000/dynamodb:1", False),
    ],
)
def test_dynamodb_local_images_get_its_command(image: str, expected: bool) -> None:
    backends = DockerBackends(dynamodb_image=image)
    assert backends.dynamodb_command == (DYNAMODB_LOCAL_COMMAND if expected else None)


def test_explicit_dynamodb_command_wins() -> None:
    backends = DockerBackends(dynamodb_command=["-jar", "DynamoDBLocal.jar", "-inMemory"])
    assert backends.dynamodb_command == ("-jar", "DynamoDBLocal.jar", "-inMemory")


def test_labels_name_the_worker_and_owner(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    backends = DockerBackends()
    assert backends.worker_id == "gw3"
    assert backends.labels["org.pytest-taskqueue.worker"] == "gw3"
    assert backends.labels["org.pytest-taskqueue.set"] == backends.set_id
    assert backends.labels["org.pytest-taskqueue.owner"].endswith(f":{os.getpid()}")
    assert DockerBackends(worker_id="gw9").labels["org.pytest-taskqueue.worker"] == "gw9"


def test_endpoints_before_start_say_not_started() -> None:
    with pytest.raises(RuntimeError, match="is not started"):
        _ = DockerBackends().dynamodb_endpoint


def test_root_cause_prefers_the_os_error() -> None:
    inner = ConnectionRefusedError(111, "Connection refused")
    outer = RuntimeError("Error while fetching server API version: ('Connection aborted.', ...)")
    outer.__cause__ = ValueError("wrapped", inner)
    assert _docker._root_cause(outer) == "Connection refused"
    assert _docker._root_cause(RuntimeError("first line\nsecond")) == "first line"


def test_owner_liveness_by_pid_and_start_time() -> None:
    """A leftover sweep removes sets of dead owners only; a reused pid is a different owner."""
    me = f"{_docker._HOSTNAME}:{os.getpid()}"
    start = _docker._process_start(os.getpid())
    assert start.isdigit()
    assert _docker._owner_alive(me, start)
    assert _docker._owner_alive(me, "")  # no start time recorded: the pid decides
    assert not _docker._owner_alive(me, str(int(start) + 1))  # same pid, another process
    child = subprocess.Popen(["sleep", "60"])
    child_start = _docker._process_start(child.pid)
    child.kill()
    child.wait()
    # Gone (or its pid already reused by a process that started later): dead either way.
    assert not _docker._owner_alive(f"{_docker._HOSTNAME}:{child.pid}", child_start)
    assert _docker._owner_alive("some-other-host:1", "")  # other hosts are never judged dead
