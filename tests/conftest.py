"""What every test of the repository shares: pytester, the toolkit's cache folder pinned for inner runs,
and a Toxiproxy server (``toxiproxy``).

pytester is enabled here once for every folder (``pytest_plugins`` is refused in a conftest below
the rootdir, so the hook imports it).

pytester points ``HOME`` at a temporary folder for each inner run, and the toolkit's cache
(ElasticMQ's classpath, the Toxiproxy binary) follows ``HOME`` unless ``TASKQUEUE_CACHE_DIR`` is
set: without this, every inner run that starts a stack would fetch ElasticMQ and build Toxiproxy
again. Pinning it here, before any test changes ``HOME``, makes inner runs reuse the outer cache.
A test that wants a fresh cache sets ``TASKQUEUE_CACHE_DIR`` itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from pytest_taskqueue._cache import ENV_VAR, cache_dir

if TYPE_CHECKING:
    from fault_injection import Toxiproxy


def pytest_configure(config: pytest.Config) -> None:
    """Enable pytester; pin the cache folder in the environment that inner runs and children inherit."""
    if not config.pluginmanager.has_plugin("pytester"):
        config.pluginmanager.import_plugin("pytester")
    os.environ.setdefault(ENV_VAR, str(cache_dir()))


@pytest.fixture(scope="session")
def toxiproxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Toxiproxy]:
    """A running Toxiproxy server (one per session, supervised like the stack's), as a client of its API.

    The binary comes from the toolkit cache (built by ``ensure_toxiproxy`` on first use); the server
    runs on a free 127.0.0.1 port and is stopped on every exit path."""
    from fault_injection import Toxiproxy
    from pytest_taskqueue._backends import ToxiproxyServer

    log_dir = tmp_path_factory.mktemp("toxiproxy")
    with ToxiproxyServer(log_dir=log_dir, progress=None, log_level="warn") as server:
        yield Toxiproxy(server.endpoint)
