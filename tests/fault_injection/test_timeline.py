"""The HTML timeline of a broken run, opened in a real headless browser (Debian's chromium).

The page must load offline without script errors and mark every anomaly of the run on the
timeline, each linked to its entry and that entry to its task's history.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fault_injection.chaos import ChaosConfig, run_chaos
from fault_injection.history import check, render_timeline

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:  # `tests` is not installed; plain `pytest` does not put the root on sys.path
    sys.path.insert(0, str(_ROOT))

from tests.servers import running_server  # noqa: E402

_RUN = ChaosConfig(
    duration_s=4.0, clients=3, ops_per_second=30.0, progress_every_s=600.0, drain_timeout_s=10.0
)


def _chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        message = "chromium is not installed (apt-get install -y chromium; `make` installs it for CI)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def _dump_dom(chromium: str, page: Path) -> str:
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        f"--user-data-dir={page.parent / 'profile'}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        page.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"
    return done.stdout


def test_timeline_of_a_broken_run_shows_its_anomalies_in_chromium(tmp_path: Path) -> None:
    chromium = _chromium()
    with running_server("double_complete", extra_args=("--backoff-ms", "20")) as address:
        result = asyncio.run(run_chaos(address, None, _RUN, progress=lambda line: None))
    anomalies = check(result.history)
    assert anomalies, "the broken server gave a clean history"
    page = tmp_path / "timeline.html"
    text = render_timeline(result.history, anomalies)
    page.write_text(text, encoding="utf-8")
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), "the page must not fetch anything"

    dom = _dump_dom(chromium, page)

    assert 'data-ready="yes"' in dom, "the page's script did not run to the end"
    assert re.search(r'<pre id="errors">\s*</pre>', dom), (
        "script errors: " + dom[dom.find('id="errors"') :][:500]
    )
    marked = re.search(r'<span id="marker-count">(\d+)</span>', dom)
    assert marked is not None and int(marked.group(1)) == len(anomalies), (marked, len(anomalies))
    for number, anomaly in enumerate(anomalies, start=1):
        assert f'id="anomaly-{number}"' in dom and f'href="#anomaly-{number}"' in dom
        assert anomaly.task_id is not None and f'id="task-{anomaly.task_id}"' in dom
    assert "double_completed" in dom
