"""Headless chromium (Debian's package) for the tests that open the toolkit's HTML pages.

``chromium()`` finds it: when it is missing the test fails under CI (``CI=true``: `make` installs it
there) and is skipped elsewhere. ``rendered_dom(page)`` loads a local page with no network, lets its
scripts run, and returns the DOM as they left it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

__all__ = ["chromium", "rendered_dom"]


def chromium() -> str:
    """The chromium binary; fails the test under CI when absent, skips it elsewhere."""
    found = shutil.which("chromium")
    if found is None:
        message = "chromium is not installed (apt-get install -y chromium; `make` installs it for CI)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def rendered_dom(page: Path) -> str:
    """The DOM of ``page`` (a local file) after its scripts ran; the profile goes beside the page."""
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        f"--user-data-dir={page.parent / 'chromium-profile'}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        page.as_uri(),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL
    )
    assert done.returncode == 0, f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"
    return done.stdout
