"""pytest-xdist: every worker has its own key namespace and stack prefix, and the run still works."""

from __future__ import annotations

from collections.abc import Callable

import pytest

_RECORD = """
import pathlib
import pytest

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.lifecycle, pytest.mark.required]

OUT = pathlib.Path({out!r})

@pytest.mark.parametrize("n", range(8))
async def test_record(harness, taskqueue_config, n):
    answer = await harness.submit(key=harness.key("x"))
    await harness.wait_for_terminal(answer.task_id)
    line = f"{{taskqueue_config.worker_id}} {{taskqueue_config.resource_prefix}} {{harness.key()}}\\n"
    with (OUT / f"{{taskqueue_config.worker_id}}-{{n}}.txt").open("w") as handle:
        handle.write(line)
"""


def test_two_workers_get_distinct_namespaces(inner: pytest.Pytester, fake_server: Callable[..., str]) -> None:
    target = fake_server()
    out = inner.mkdir("out")
    inner.makepyfile(test_record=_RECORD.format(out=str(out)))
    result = inner.runpytest_subprocess(
        "test_record.py", "-n", "2", f"--taskqueue-target={target}", "--taskqueue-report=r.json"
    )
    assert result.ret == 6, result.stdout.str()  # PARTIAL: its own scenarios, not the catalogue
    rows = [path.read_text().split() for path in sorted(out.iterdir())]
    assert len(rows) == 8
    workers = {row[0] for row in rows}
    assert workers == {"gw0", "gw1"}, rows  # xdist's load scheduling starts both workers
    prefixes = {row[0]: row[1] for row in rows}
    run_ids = {prefix.split("-")[1] for prefix in prefixes.values()}
    assert len(run_ids) == 1, prefixes  # one run id shared by the workers
    assert prefixes["gw0"].endswith("-gw0") and prefixes["gw1"].endswith("-gw1")
    keys = [row[2] for row in rows]
    assert len(set(keys)) == len(keys)
    for worker, _prefix, key in rows:
        assert f"-{worker}-" in key
    result.stdout.fnmatch_lines(["taskqueue verdict: PARTIAL (*)"])
