"""Importing the plugin (every pytest run on a machine with it installed does) loads only what
option parsing needs: no grpc, no Docker code, no AWS SDK, no stack.

The time it takes is measured by benchmarks/bench_import.py, not here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

_HEAVY = (
    "grpc",
    "grpc_health",
    "docker",
    "testcontainers",
    "boto3",
    "botocore",
    "aioboto3",
    "fault_injection",
    "pytest_taskqueue._docker",
    "pytest_taskqueue._client",
    "pytest_taskqueue._harness",
    "pytest_taskqueue._stack",
    "pytest_taskqueue._faults",
    "pytest_taskqueue._procs",
)


def _loaded_after(statement: str) -> list[str]:
    """The heavy modules in ``sys.modules`` after ``statement``, in a fresh interpreter."""
    script = (
        f"import json, sys\n{statement}\n"
        f"heavy = {_HEAVY!r}\n"
        "nested = tuple(h + '.' for h in heavy)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m in heavy or m.startswith(nested))))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


@pytest.mark.parametrize(
    "statement",
    ["import pytest_taskqueue.plugin", "import pytest_taskqueue.fixtures", "import pytest_taskqueue"],
)
def test_importing_the_plugin_loads_no_grpc_docker_or_stack(statement: str) -> None:
    assert _loaded_after(statement) == []


def test_the_public_names_still_import_on_use() -> None:
    loaded = _loaded_after("import pytest_taskqueue as t\nassert t.TestHarness.__name__ == 'TestHarness'")
    assert "pytest_taskqueue._harness" in loaded and "grpc" in loaded


def test_every_public_name_resolves() -> None:
    import pytest_taskqueue

    for name in pytest_taskqueue.__all__:
        assert getattr(pytest_taskqueue, name) is not None, name
    assert set(pytest_taskqueue.__all__) <= set(dir(pytest_taskqueue))
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        pytest_taskqueue.nothing_here  # noqa: B018
