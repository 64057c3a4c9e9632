"""The reference stack on the docker backend: the reference server and worker against containers.

Skipped (with the reason) when no daemon answers or the images are missing; see conftest.py.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import boto3
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pytest_taskqueue._stack import PROXY_NAMES, StackConfig, reference_stack
from taskqueue_proto import taskqueue_pb2 as pb
from taskqueue_proto import taskqueue_pb2_grpc as pb_grpc
from tests.docker.docker_testutil import Images, labelled


def _noop_completes(target: str, key: str) -> pb.Task:
    """Submit a ``noop`` task and return it once WatchTask shows it COMPLETED."""
    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=30, wait_for_ready=True
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stub = pb_grpc.TaskQueueStub(channel)
        submitted = stub.SubmitTask(pb.SubmitTaskRequest(idempotency_key=key, task_type="noop"), timeout=30)
        for task in stub.WatchTask(pb.WatchTaskRequest(task_id=submitted.task_id), timeout=60):
            if task.status == pb.TASK_STATUS_COMPLETED:
                return task
    raise AssertionError(f"task {submitted.task_id} ended without completing")


def test_reference_stack_on_the_docker_backend(docker_images: Images, docker_client: Any) -> None:
    config = StackConfig(
        prefix="dockerstack",
        backend="docker",
        dynamodb_image=docker_images["dynamodb_image"],
        elasticmq_image=docker_images["elasticmq_image"],
        toxiproxy_image=docker_images["toxiproxy_image"],
    )
    stack = reference_stack(config)
    with stack:
        info = stack.as_dict()
        assert info["backend"] == "docker"
        assert stack.target.startswith("127.0.0.1:") and stack.dynamodb_endpoint.startswith(
            "http://127.0.0.1:"
        )
        assert set(stack.toxiproxy_client().proxies()) == set(PROXY_NAMES)
        # Through the api proxy (Toxiproxy container -> host gateway -> server -> proxies -> backends).
        assert _noop_completes(stack.target, "docker-stack-noop").attempts == 1
        credentials = {
            "region_name": stack.region,
            "aws_access_key_id": "test",
            "aws_secret_access_key": "test",
        }
        db = boto3.client("dynamodb", endpoint_url=stack.dynamodb_endpoint, **credentials)
        assert stack.table in db.list_tables()["TableNames"]
        sqs = boto3.client("sqs", endpoint_url=stack.sqs_endpoint, **credentials)
        assert sqs.get_queue_url(QueueName=stack.dead_letter_queue)["QueueUrl"] == stack.dead_letter_queue_url
        mine = labelled(docker_client, "owner", f"{socket.gethostname()}:{os.getpid()}")[0]
        sets = {docker_client.containers.get(name).labels["org.pytest-taskqueue.set"] for name in mine}
        assert len(sets) == 1
    (set_id,) = sets
    assert labelled(docker_client, "set", set_id) == ([], [])
    assert not stack.server.running and not stack.worker.running
