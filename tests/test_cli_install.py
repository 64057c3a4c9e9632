"""``taskqueue-harness install`` fills the cache and says where (the Makefile's `backends` step)."""

from __future__ import annotations

import subprocess
import sys


def test_install_reports_the_cached_backends() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest_taskqueue.cli", "install"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "ElasticMQ classpath" in done.stdout
    assert "Toxiproxy" in done.stdout


def test_install_rejects_an_unknown_option() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest_taskqueue.cli", "install", "--bogus"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--bogus" in done.stderr
