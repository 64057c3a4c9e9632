"""What every test of the repository shares: pytester, and the toolkit's cache folder pinned for inner runs.

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

import pytest

from pytest_taskqueue._cache import ENV_VAR, cache_dir


def pytest_configure(config: pytest.Config) -> None:
    """Enable pytester; pin the cache folder in the environment that inner runs and children inherit."""
    if not config.pluginmanager.has_plugin("pytester"):
        config.pluginmanager.import_plugin("pytester")
    os.environ.setdefault(ENV_VAR, str(cache_dir()))
