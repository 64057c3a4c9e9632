"""The toolkit's cache folder: downloaded and built artefacts that survive between runs.

``$TASKQUEUE_CACHE_DIR`` when set, else ``~/.cache/pytest-taskqueue``. It holds the ElasticMQ
classpath (the jars themselves stay in Maven's own ``~/.m2``), ElasticMQ's class-data-sharing
archive and the Toxiproxy binary. Several pytest-xdist workers may fill it at the same moment, so
writers take ``cache_lock`` and publish files with an atomic rename.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["ENV_VAR", "cache_dir", "cache_lock"]

ENV_VAR = "TASKQUEUE_CACHE_DIR"
"""The environment variable that moves the cache folder."""


def cache_dir() -> Path:
    """Return the cache folder, created if missing."""
    configured = os.environ.get(ENV_VAR, "").strip()
    path = Path(configured).expanduser() if configured else Path.home() / ".cache" / "pytest-taskqueue"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def cache_lock(directory: Path, name: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``<directory>/<name>.lock`` (across processes) for the block."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / f"{name}.lock", "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
