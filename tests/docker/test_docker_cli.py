"""``taskqueue-harness up --backend docker`` as a user runs it: a subprocess, signals, containers."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.docker.docker_testutil import Images, labelled
from tests.process_tools import poll_until

_EXIT_TIMEOUT_S = 120.0


def _up(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pytest_taskqueue.cli", "up", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _image_args(images: Images) -> list[str]:
    return [
        f"--dynamodb-image={images['dynamodb_image']}",
        f"--elasticmq-image={images['elasticmq_image']}",
        f"--taskqueue-toxiproxy-image={images['toxiproxy_image']}",
    ]


def _owned_by(docker_client: Any, pid: int) -> list[str]:
    return labelled(docker_client, "owner", f"{socket.gethostname()}:{pid}")[0]


def test_up_json_then_ctrl_c_leaves_nothing(docker_images: Images, docker_client: Any) -> None:
    up = _up("--backend=docker", "--json", *_image_args(docker_images))
    try:
        assert up.stdout is not None
        line = up.stdout.readline()
        assert line, f"up exited early ({up.poll()}): {up.stderr.read() if up.stderr else ''}"
        info = json.loads(line)
        assert info["backend"] == "docker"
        assert len(_owned_by(docker_client, up.pid)) == 3
        with grpc.insecure_channel(info["target"]) as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=30, wait_for_ready=True
            )
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        up.send_signal(signal.SIGINT)
        assert up.wait(_EXIT_TIMEOUT_S) == 0
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    assert _owned_by(docker_client, up.pid) == []


def test_up_without_a_daemon_is_one_line(tmp_path: pathlib.Path) -> None:
    socket_url = f"unix://{tmp_path / 'absent.sock'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "TASKQUEUE_"))}
    env["DOCKER_HOST"] = socket_url
    done = subprocess.run(
        [sys.executable, "-m", "pytest_taskqueue.cli", "up", "--taskqueue-backend=docker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=_EXIT_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        f"taskqueue-harness: error: docker backend selected but no Docker daemon answers ({socket_url}: "
        "No such file or directory); use --taskqueue-backend=local"
    ]


def test_up_interrupted_during_start_leaves_nothing(docker_images: Images, docker_client: Any) -> None:
    """SIGINT once the first container exists (the start is under way): exit 130, nothing left."""
    up = _up("--backend=docker", "--json", *_image_args(docker_images))
    try:
        poll_until(lambda: bool(labelled_any(docker_client, up.pid)), 60, "a container of the start")
        up.send_signal(signal.SIGINT)
        assert up.wait(_EXIT_TIMEOUT_S) == 128 + signal.SIGINT
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    assert labelled_any(docker_client, up.pid) == []


def labelled_any(docker_client: Any, pid: int) -> list[str]:
    """Containers or networks of the process, created or not yet running."""
    containers, networks = labelled(docker_client, "owner", f"{socket.gethostname()}:{pid}")
    return containers + networks
