"""Fixtures for the docker backend's tests: which images to run, and skips without Docker.

The integration tests need a Docker daemon and the three images. Without a daemon (the normal CI
of this repository) they skip with the reason; ``ci/docker/run-docker-suite.sh`` starts one and
builds the images. By default they run the locally built test images (ci/docker/build-images.sh);
``TASKQUEUE_DYNAMODB_IMAGE`` / ``TASKQUEUE_ELASTICMQ_IMAGE`` / ``TASKQUEUE_TOXIPROXY_IMAGE`` choose
others (e.g. the real defaults, on a machine that can pull them).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_taskqueue._docker import DockerUnavailableError, check_docker
from tests.docker.docker_testutil import TEST_IMAGES, Images


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester folder for runs of the plugin, free of the outer TASKQUEUE_* settings
    (but the cache folder, tests/conftest.py)."""
    for name in [n for n in os.environ if n.startswith("TASKQUEUE_") and n != "TASKQUEUE_CACHE_DIR"]:
        monkeypatch.delenv(name)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    return pytester


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    """A docker SDK client, or a skip saying why there is none."""
    try:
        check_docker()
    except DockerUnavailableError as exc:
        pytest.skip(f"no Docker daemon answers ({exc.detail}); ci/docker/run-docker-suite.sh starts one")
    import docker  # type: ignore[import-untyped]

    client = docker.from_env()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def docker_images(docker_client: Any) -> Images:
    """The images to test with; skips naming the build script when one is missing."""
    import docker

    missing: list[str] = []
    for image in (
        TEST_IMAGES["dynamodb_image"],
        TEST_IMAGES["elasticmq_image"],
        TEST_IMAGES["toxiproxy_image"],
    ):
        try:
            docker_client.images.get(image)
        except docker.errors.ImageNotFound:
            missing.append(image)
    if missing:
        pytest.skip(f"images not present: {', '.join(missing)}; build them with ci/docker/build-images.sh")
    return Images(**TEST_IMAGES)
