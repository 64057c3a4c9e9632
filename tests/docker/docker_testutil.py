"""Helpers shared by the docker backend's tests (imported by conftest and the test modules)."""

from __future__ import annotations

import os
from typing import Any, TypedDict

from pytest_taskqueue._docker import LABEL_PREFIX


class Images(TypedDict):
    """The image arguments of DockerBackends."""

    dynamodb_image: str
    elasticmq_image: str
    toxiproxy_image: str


TEST_IMAGES: Images = {
    "dynamodb_image": os.environ.get("TASKQUEUE_DYNAMODB_IMAGE", "taskqueue-test/dynamodb:moto"),
    "elasticmq_image": os.environ.get("TASKQUEUE_ELASTICMQ_IMAGE", "taskqueue-test/elasticmq:1.6.16"),
    "toxiproxy_image": os.environ.get("TASKQUEUE_TOXIPROXY_IMAGE", "taskqueue-test/toxiproxy:2.12.0"),
}
"""Constructor arguments of DockerBackends for the images under test."""


def labelled(client: Any, label: str, value: str) -> tuple[list[str], list[str]]:
    """Names of the containers and networks (any state) whose ``org.pytest-taskqueue.<label>`` is value."""
    selector = f"{LABEL_PREFIX}.{label}={value}"
    containers = [c.name for c in client.containers.list(all=True, filters={"label": selector})]
    networks = [n.name for n in client.networks.list(filters={"label": selector})]
    return containers, networks
