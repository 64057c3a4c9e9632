"""DockerBackends against a real Docker engine: real DynamoDB and SQS calls, cleanup on every path.

Skipped (with the reason) when no daemon answers or the images are missing; see conftest.py.
"""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from fault_injection import Toxiproxy
from pytest_taskqueue._docker import (
    PROXY_PORTS,
    DockerBackendError,
    DockerBackends,
    remove_leftovers,
)
from tests.docker.docker_testutil import Images, labelled

_CHILD = pathlib.Path(__file__).with_name("docker_child.py")
_AWS = {"region_name": "us-east-1", "aws_access_key_id": "test", "aws_secret_access_key": "test"}


def _nothing_left(client: Any, set_id: str) -> None:
    assert labelled(client, "set", set_id) == ([], [])


@pytest.fixture(scope="module")
def backends(docker_images: Images, docker_client: Any) -> Iterator[DockerBackends]:
    """One running set shared by the tests that only make calls through it."""
    with DockerBackends(**docker_images) as started:
        yield started
    _nothing_left(docker_client, started.set_id)


def test_dynamodb_calls_work(backends: DockerBackends) -> None:
    db = boto3.client("dynamodb", endpoint_url=backends.dynamodb_endpoint, **_AWS)
    db.create_table(
        TableName="docker-test",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    db.put_item(
        TableName="docker-test", Item={"pk": {"S": "a"}}, ConditionExpression="attribute_not_exists(pk)"
    )
    with pytest.raises(db.exceptions.ConditionalCheckFailedException):
        db.put_item(
            TableName="docker-test", Item={"pk": {"S": "a"}}, ConditionExpression="attribute_not_exists(pk)"
        )
    assert db.get_item(TableName="docker-test", Key={"pk": {"S": "a"}})["Item"] == {"pk": {"S": "a"}}


def test_sqs_calls_work(backends: DockerBackends) -> None:
    sqs = boto3.client("sqs", endpoint_url=backends.sqs_endpoint, **_AWS)
    url = sqs.create_queue(QueueName="docker-test")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody='{"task_id": "t1"}')
    received = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5)["Messages"]
    assert [m["Body"] for m in received] == ['{"task_id": "t1"}']


def test_endpoints_are_loopback_mapped_ports(backends: DockerBackends) -> None:
    described = backends.as_dict()
    for key in ("dynamodb", "sqs", "toxiproxy"):
        assert described[key].startswith("http://127.0.0.1:")
    assert set(backends.proxies) == set(PROXY_PORTS)
    for name, proxy in backends.proxies.items():
        assert proxy.listen == f"0.0.0.0:{PROXY_PORTS[name]}"
        assert proxy.host == "127.0.0.1"


def test_calls_through_toxiproxy_proxies(backends: DockerBackends) -> None:
    """The proxy slots reach the backends by network alias, and a host process via host_gateway."""
    toxiproxy = Toxiproxy(backends.toxiproxy_url)
    created = []
    try:
        for name, upstream in (
            ("worker_dynamodb", backends.dynamodb_upstream),
            ("worker_sqs", backends.sqs_upstream),
        ):
            created.append(toxiproxy.create_proxy(name, backends.proxy(name).listen, upstream))
        db = boto3.client(
            "dynamodb", endpoint_url=f"http://{backends.proxy('worker_dynamodb').address}", **_AWS
        )
        assert isinstance(db.list_tables()["TableNames"], list)
        sqs = boto3.client("sqs", endpoint_url=f"http://{backends.proxy('worker_sqs').address}", **_AWS)
        sqs.create_queue(QueueName="through-proxy")
        assert any(u.endswith("/through-proxy") for u in sqs.list_queues()["QueueUrls"])

        with socket.socket() as listener:
            listener.bind((backends.host_gateway, 0))
            listener.listen()
            host_port = listener.getsockname()[1]
            created.append(
                toxiproxy.create_proxy(
                    "api", backends.proxy("api").listen, f"{backends.host_gateway}:{host_port}"
                )
            )
            served = threading.Thread(target=_greet_once, args=(listener,), daemon=True)
            served.start()
            api = backends.proxy("api")
            with socket.create_connection((api.host, api.port), timeout=10) as client:
                client.settimeout(10)
                assert client.recv(64) == b"hello from the host\n"
            served.join(10)
    finally:
        for proxy in created:
            proxy.delete()


def _greet_once(listener: socket.socket) -> None:
    listener.settimeout(30)
    connection, _ = listener.accept()
    with connection:
        connection.sendall(b"hello from the host\n")


def test_nothing_left_after_an_exception_inside(docker_images: Images, docker_client: Any) -> None:
    backends = DockerBackends(worker_id="gw7", **docker_images)
    with pytest.raises(ZeroDivisionError), backends:
        containers, networks = labelled(docker_client, "set", backends.set_id)
        assert len(containers) == 3 and len(networks) == 1
        assert all("-gw7-" in name for name in containers)
        assert labelled(docker_client, "worker", "gw7")[0] == containers
        _ = 1 / 0
    _nothing_left(docker_client, backends.set_id)


def test_failed_start_half_way_leaves_nothing(docker_images: Images, docker_client: Any) -> None:
    """The DynamoDB container exits at once: the error carries its log, and all three are removed."""
    backends = DockerBackends(**docker_images, dynamodb_command=["--port", "8000", "--no-such-flag"])
    if backends.dynamodb_image.startswith("amazon/dynamodb-local"):
        pytest.skip("relies on the moto stand-in's argument parser")
    with pytest.raises(DockerBackendError) as caught:
        backends.start()
    message = str(caught.value)
    assert message.startswith("taskqueue: the dynamodb container (")
    assert "exited during start-up" in message
    assert "--no-such-flag" in message  # from the container's log tail
    _nothing_left(docker_client, backends.set_id)


def test_readiness_timeout_names_the_backend(docker_images: Images, docker_client: Any) -> None:
    """A DynamoDB image that never answers on 8000: a timeout error with the log tail, nothing left."""
    images: Images = {**docker_images, "dynamodb_image": docker_images["toxiproxy_image"]}
    backends = DockerBackends(**images, dynamodb_command=["-host=0.0.0.0", "-port=9999"], start_timeout_s=3.0)
    with pytest.raises(DockerBackendError) as caught:
        backends.start()
    message = str(caught.value)
    assert message.startswith("taskqueue: the dynamodb container (")
    assert "did not answer on 127.0.0.1:" in message
    assert "log tail:" in message
    _nothing_left(docker_client, backends.set_id)


def test_missing_image_is_one_line(docker_images: Images, docker_client: Any) -> None:
    images: Images = {**docker_images, "toxiproxy_image": "taskqueue-test/absent:0"}
    backends = DockerBackends(**images)
    with pytest.raises(DockerBackendError) as caught:
        backends.start()
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("taskqueue: docker image taskqueue-test/absent:0 (toxiproxy) is not present")
    assert message.endswith("choose another with --taskqueue-toxiproxy-image")
    _nothing_left(docker_client, backends.set_id)


def test_two_sets_are_independent(docker_images: Images, docker_client: Any) -> None:
    """What pytest-xdist does: a set per worker; stopping one leaves the other running.

    The first set also publishes its ``api`` proxy slot on a fixed host port (``api_port``).
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        api_port = probe.getsockname()[1]
    with DockerBackends(worker_id="gw0", api_port=api_port, **docker_images) as first:
        assert first.proxy("api").address == f"127.0.0.1:{api_port}"
        with DockerBackends(worker_id="gw1", **docker_images) as second:
            assert first.dynamodb_endpoint != second.dynamodb_endpoint
        _nothing_left(docker_client, second.set_id)
        assert len(labelled(docker_client, "set", first.set_id)[0]) == 3
        db = boto3.client("dynamodb", endpoint_url=first.dynamodb_endpoint, **_AWS)
        assert isinstance(db.list_tables()["TableNames"], list)
    _nothing_left(docker_client, first.set_id)


# -- other processes: signals and leftovers ----------------------------------------------------


def _spawn(docker_images: Images) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            str(_CHILD),
            docker_images["dynamodb_image"],
            docker_images["elasticmq_image"],
            docker_images["toxiproxy_image"],
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=_CHILD.parent,
    )


def _expect(child: subprocess.Popen[str], word: str) -> str:
    """Read the child's next line, which must be ``<word> <set id>``; return the set id."""
    assert child.stdout is not None
    line = child.stdout.readline().split()
    if not line or line[0] != word:
        child.kill()
        _, stderr = child.communicate(timeout=60)
        pytest.fail(f"child printed {line!r} instead of {word!r}; stderr:\n{stderr}")
    return line[1]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_while_running_leaves_nothing(
    docker_images: Images, docker_client: Any, signum: signal.Signals
) -> None:
    child = _spawn(docker_images)
    try:
        set_id = _expect(child, "starting")
        _expect(child, "ready")
        assert len(labelled(docker_client, "set", set_id)[0]) == 3
        child.send_signal(signum)
        _, stderr = child.communicate(timeout=120)
        assert child.returncode == 130, stderr
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    _nothing_left(docker_client, set_id)


def test_ctrl_c_during_start_leaves_nothing(docker_images: Images, docker_client: Any) -> None:
    """Ctrl-C wherever it lands in start(): whatever was created is removed."""
    child = _spawn(docker_images)
    try:
        set_id = _expect(child, "starting")
        child.send_signal(signal.SIGINT)
        child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    _nothing_left(docker_client, set_id)


def test_leftovers_of_a_killed_owner_are_swept(docker_images: Images, docker_client: Any) -> None:
    """SIGKILL runs no cleanup; the next sweep removes that set, and never a set whose owner lives."""
    with DockerBackends(**docker_images) as mine:
        child = _spawn(docker_images)
        try:
            set_id = _expect(child, "starting")
            _expect(child, "ready")
            child.kill()
            child.wait()
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert len(labelled(docker_client, "set", set_id)[0]) == 3
        assert remove_leftovers() >= 3
        _nothing_left(docker_client, set_id)
        # A sweep from another process leaves this (live) owner's set alone.
        sweep = subprocess.run(
            [
                sys.executable,
                "-c",
                "from pytest_taskqueue._docker import remove_leftovers; remove_leftovers()",
            ],
            env=os.environ,
            check=True,
            timeout=120,
        )
        assert sweep.returncode == 0
        assert len(labelled(docker_client, "set", mine.set_id)[0]) == 3
    _nothing_left(docker_client, mine.set_id)
