"""The DynamoDB stand-in's HTTP layer: whole requests before the state, one slow link stalls only itself.

moto's server runs as the harness starts it (``MotoServer``), each client on its own Toxiproxy link.
No test asserts a time: the slow client holds its request open itself, so "the other client was
served while the slow upload was still in flight" is an ordering, not a stopwatch.
"""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from botocore.config import Config

from fault_injection import Proxy, Toxiproxy, faults
from pytest_taskqueue._backends import MotoServer, ToxiproxyServer
from pytest_taskqueue._procs import free_port
from tests.test_backends import keyed_table

AUTH = (
    "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/dynamodb/aws4_request, "
    "SignedHeaders=host, Signature=0"
)
#: Seconds any single socket operation of these tests may take before the test fails saying which.
STEP_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    with MotoServer(log_dir=tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture(scope="module")
def toxiproxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Toxiproxy]:
    with ToxiproxyServer(log_dir=tmp_path_factory.mktemp("toxiproxy")) as server:
        yield Toxiproxy(server.endpoint)


def link(toxiproxy: Toxiproxy, moto: MotoServer, name: str) -> Proxy:
    return toxiproxy.create_proxy(
        f"{name}-{uuid.uuid4().hex[:6]}", f"127.0.0.1:{free_port()}", f"127.0.0.1:{moto.port}"
    )


def dynamodb(endpoint: str) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(
            retries={"total_max_attempts": 1},
            connect_timeout=STEP_TIMEOUT_S,
            read_timeout=STEP_TIMEOUT_S,
            max_pool_connections=4,
        ),
    )


def request_bytes(port: int, target: str, body: dict[str, Any], *extra_headers: str) -> tuple[bytes, bytes]:
    """(head, body) of a signed-looking DynamoDB JSON request."""
    data = json.dumps(body).encode()
    lines = [
        "POST / HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/x-amz-json-1.0",
        f"X-Amz-Target: DynamoDB_20120810.{target}",
        f"Authorization: {AUTH}",
        f"Content-Length: {len(data)}",
        *extra_headers,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), data


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """Status and body of one response (Content-Length framed), skipping a ``100 Continue``."""
    buffer = b""
    while True:
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError(f"connection closed before a whole response head; got {buffer!r}")
            buffer += chunk
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status != 100:
            break
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(buffer) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed after {len(buffer)} of {length} body bytes")
        buffer += chunk
    return status, buffer[:length]


def read_interim(sock: socket.socket) -> bytes:
    """The interim ``100 Continue`` response the server sends once it has read a request's head."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(1)
        if not chunk:
            raise AssertionError(f"connection closed before 100 Continue; got {buffer!r}")
        buffer += chunk
    return buffer


def test_a_sliced_upload_on_one_link_does_not_stall_another_client(
    moto: MotoServer, toxiproxy: Toxiproxy
) -> None:
    """One client uploads a 3 KB PutItem through a 1-byte slicer and keeps half of it back; meanwhile a
    client on another link is served, call after call. Only then does the slow upload finish."""
    slow_link, fast_link = link(toxiproxy, moto, "slow"), link(toxiproxy, moto, "fast")
    fast = dynamodb(f"http://{fast_link.listen}")
    table = keyed_table(fast, "sliced")
    head, body = request_bytes(
        slow_link.port,
        "PutItem",
        {"TableName": table, "Item": {"pk": {"S": "slow"}, "sk": {"S": "x"}, "blob": {"S": "x" * 3000}}},
        "Expect: 100-continue",
    )
    served: list[str] = []
    with faults.slicer(slow_link, 1, delay_us=1000, stream="upstream"):
        with socket.create_connection((slow_link.host, slow_link.port), timeout=STEP_TIMEOUT_S) as slow:
            slow.sendall(head)
            interim = read_interim(slow)  # the server has read the head and now waits for the body
            assert interim.startswith(b"HTTP/1.1 100"), interim
            half = len(body) // 2
            slow.sendall(body[:half])  # trickles through the slicer, and the rest is held back
            for n in range(10):
                fast.describe_table(TableName=table)  # raises ReadTimeoutError if the server is stuck
                fast.put_item(TableName=table, Item={"pk": {"S": f"fast-{n}"}, "sk": {"S": "x"}})
                served.append(f"call {n}")
            slow.sendall(body[half:])
            status, answer = read_response(slow)
    assert len(served) == 10
    assert status == 200, answer
    item = fast.get_item(TableName=table, Key={"pk": {"S": "slow"}, "sk": {"S": "x"}})["Item"]
    assert len(item["blob"]["S"]) == 3000


def test_a_client_that_vanishes_mid_request_leaves_the_server_serving(
    moto: MotoServer, toxiproxy: Toxiproxy
) -> None:
    faulty, healthy = link(toxiproxy, moto, "faulty"), link(toxiproxy, moto, "healthy")
    db = dynamodb(f"http://{healthy.listen}")
    table = keyed_table(db, "vanish")
    half_item = {"pk": {"S": "half"}, "sk": {"S": "x"}}
    head, body = request_bytes(faulty.port, "PutItem", {"TableName": table, "Item": half_item})
    with socket.create_connection((faulty.host, faulty.port), timeout=STEP_TIMEOUT_S) as sock:
        sock.sendall(head + body[: len(body) // 2])
    faulty.disable()  # and the link goes down with the half-sent request
    try:
        db.put_item(TableName=table, Item={"pk": {"S": "whole"}, "sk": {"S": "x"}})
        keys = {item["pk"]["S"] for item in db.scan(TableName=table)["Items"]}
    finally:
        faulty.enable()
    assert keys == {"whole"}  # the half request was never applied


def test_many_connections_at_once_are_all_served(moto: MotoServer) -> None:
    """300 clients connect and send at the same moment; every one gets its answer."""
    clients = 300
    barrier = threading.Barrier(clients)
    head, body = request_bytes(moto.port, "ListTables", {})

    def one(_: int) -> int:
        barrier.wait(STEP_TIMEOUT_S)
        with socket.create_connection(("127.0.0.1", moto.port), timeout=STEP_TIMEOUT_S) as sock:
            sock.sendall(head + body)
            status, _answer = read_response(sock)
            return status

    with ThreadPoolExecutor(clients) as pool:
        statuses = list(pool.map(one, range(clients)))
    assert statuses == [200] * clients


def test_keep_alive_and_chunked_bodies(moto: MotoServer) -> None:
    """Several requests on one connection; a chunked body is read whole like a sized one."""
    db = dynamodb(moto.endpoint)
    table = keyed_table(db, "keepalive")
    with socket.create_connection(("127.0.0.1", moto.port), timeout=STEP_TIMEOUT_S) as sock:
        for n in range(3):
            head, body = request_bytes(
                moto.port, "PutItem", {"TableName": table, "Item": {"pk": {"S": f"k{n}"}, "sk": {"S": "x"}}}
            )
            sock.sendall(head + body)
            assert read_response(sock)[0] == 200
        key = {"pk": {"S": "k2"}, "sk": {"S": "x"}}
        _, body = request_bytes(moto.port, "GetItem", {"TableName": table, "Key": key})
        chunked_head = (
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-amz-json-1.0\r\n"
            f"X-Amz-Target: DynamoDB_20120810.GetItem\r\nAuthorization: {AUTH}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        ).encode()
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:7], body[7:])) + b"0\r\n\r\n"
        sock.sendall(chunked_head + chunks)
        status, answer = read_response(sock)
    assert status == 200, answer
    assert json.loads(answer)["Item"]["pk"] == {"S": "k2"}


def test_a_malformed_request_is_answered_400(moto: MotoServer) -> None:
    with socket.create_connection(("127.0.0.1", moto.port), timeout=STEP_TIMEOUT_S) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nContent-Length: lots\r\n\r\n")
        status, answer = read_response(sock)
    assert status == 400
    assert b"Content-Length" in answer
