"""The HTML timeline of a broken run, opened in a real headless browser (Debian's chromium).

The page must load offline without script errors and mark every anomaly of the run on the
timeline, each linked to its entry and that entry to its task's history.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from fault_injection.chaos import ChaosConfig, run_chaos
from fault_injection.history import check, render_timeline
from tests.browser import chromium, rendered_dom
from tests.servers import running_server

_RUN = ChaosConfig(
    duration_s=4.0, clients=3, ops_per_second=30.0, progress_every_s=600.0, drain_timeout_s=10.0
)


def test_timeline_of_a_broken_run_shows_its_anomalies_in_chromium(tmp_path: Path) -> None:
    chromium()  # skip (or fail under CI) before running anything when it is missing
    with running_server("double_complete", extra_args=("--backoff-ms", "20")) as address:
        result = asyncio.run(run_chaos(address, None, _RUN, progress=lambda line: None))
    anomalies = check(result.history)
    assert anomalies, "the broken server gave a clean history"
    page = tmp_path / "timeline.html"
    text = render_timeline(result.history, anomalies)
    page.write_text(text, encoding="utf-8")
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), "the page must not fetch anything"

    dom = rendered_dom(page)

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
