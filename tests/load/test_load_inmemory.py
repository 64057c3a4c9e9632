"""``taskqueue-harness load`` against the in-memory test server: fast runs of every verdict.

A clean run writes a JSON report and an HTML page (checked in headless chromium) and keeps an SLO
set above what it measured; an SLO set below fails it (exit 4) naming the figure; a server broken
to race duplicates or to never run some tasks fails the run (exit 1) with the anomaly's rule named;
``--find-max`` reports a limit; bad options exit 2 naming the option.
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_taskqueue.cli import main
from tests.browser import rendered_dom
from tests.load.load_testutil import RELAXED_LAG, run_load
from tests.servers import running_server

_MIX = ("--mix", "noop:3,echo:1:64,sleep:1:5,fail_times:1:1")


@pytest.fixture(scope="module")
def conforming() -> Iterator[str]:
    with running_server() as address:
        yield address


def _body_attributes(dom: str) -> dict[str, str]:
    body = re.search(r"<body([^>]*)>", dom)
    assert body is not None, dom[:500]
    return dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1)))


def test_clean_run_reports_and_keeps_an_slo_above_what_it_measured(conforming: str, tmp_path: Path) -> None:
    report_path = tmp_path / "load.json"
    run = run_load(
        "--target",
        conforming,
        "--rate",
        "40",
        "--duration",
        "4",
        "--warmup",
        "1",
        *_MIX,
        *RELAXED_LAG,
        "--slo",
        "submit_p99<30s,e2e_p99<60s,errors<1%",
        report=report_path,
    )

    assert run.returncode == 0, run.explain()
    report = run.report
    assert report is not None and report["format"] == "pytest-taskqueue-load-report/1"
    assert report["verdict"] == "ok" and report["exit_code"] == 0 and report["mode"] == "target"
    result = report["run"]
    assert result["offered_rate"] == 40 and result["submits"]["sent"] >= 160
    for latency in ("submit", "e2e"):
        figures = result["latency_ms"][latency]
        assert figures["count"] > 0 and all(
            figures[p] is not None for p in ("p50", "p90", "p99", "p99.9", "max")
        )
        assert result["hdr"][latency]
    assert result["clock_check"]["ok"] and result["clock_check"]["checked"] > 0
    assert result["tasks"]["by_status"].get("COMPLETED", 0) > 0 and result["tasks"]["undrained"] == 0
    assert len(result["series"]["backlog"]) >= 4 and result["series"]["offered"][0] == 40
    assert report["history"]["anomalies"] == [] and report["history"]["operations"] >= 160
    assert all(r["ok"] for r in report["slo"]["results"])
    assert Path(report["history"]["path"]).is_file()
    assert "end-to-end  p50" in run.stdout and "load: OK" in run.stdout

    dom = rendered_dom(report_path.with_suffix(".html"))
    body = _body_attributes(dom)
    assert body["data-check"] == "ok", body
    assert body["data-charts"] == "4" and body["data-anomalies"] == "0", body
    for chart in ("latency", "throughput", "backlog", "distribution"):
        assert f'id="{chart}"' in dom


def test_slo_below_what_was_measured_fails_naming_the_figure(conforming: str, tmp_path: Path) -> None:
    run = run_load(
        "--target",
        conforming,
        "--rate",
        "30",
        "--duration",
        "2",
        *RELAXED_LAG,
        "--slo",
        "errors<1%,submit_p99<0.001ms",
        report=tmp_path / "load.json",
    )

    assert run.returncode == 4, run.explain()
    assert "SLO broken: submit_p99 = " in run.stdout and "(objective submit_p99<0.001ms)" in run.stdout
    assert "errors" not in [line.split()[2] for line in run.stdout.splitlines() if "SLO broken" in line]
    assert run.report is not None and run.report["verdict"] == "slo_broken"


def _inmemory_cmd(brk: str) -> str:
    """A --target-cmd template running the in-memory server (it ignores the harness's backends)."""
    return f"{shlex.quote(sys.executable)} -m tests.servers.inmemory --port {{port}} --break {brk}"


def test_a_generator_behind_its_schedule_makes_the_run_invalid(conforming: str, tmp_path: Path) -> None:
    """Every send counts as late when the allowed lag is a microsecond: the run must not pass."""
    run = run_load(
        "--target", conforming, "--rate", "30", "--duration", "2", "--max-lag-ms", "0.001",
        report=tmp_path / "load.json",
    )  # fmt: skip

    assert run.returncode == 5, run.explain()
    assert run.report is not None and run.report["verdict"] == "invalid"
    generator = run.report["run"]["generator"]
    assert not generator["valid"] and "fell behind its schedule" in generator["reason"]
    assert "INVALID RUN: the generator fell behind" in run.stdout


@pytest.mark.parametrize(
    ("brk", "extra", "rule", "through"),
    [
        ("race_duplicates", ("--duplicates", "0.3"), "duplicate_task_for_key", "target"),
        ("never_complete_every_50th", ("--drain-timeout", "3"), "not_terminal", "target"),
        ("race_duplicates", ("--duplicates", "0.3"), "duplicate_task_for_key", "target-cmd"),
    ],
)
def test_broken_server_fails_the_run_with_the_anomaly_named(
    tmp_path: Path, brk: str, extra: tuple[str, ...], rule: str, through: str
) -> None:
    report_path = tmp_path / "load.json"
    common = ("--rate", "50", "--duration", "3", *extra, *RELAXED_LAG)
    if through == "target-cmd":  # the harness runs it beside backends of its own, as chaos does
        run = run_load("--target-cmd", _inmemory_cmd(brk), *common, report=report_path)
    else:
        with running_server(brk) as address:
            run = run_load("--target", address, *common, report=report_path)

    assert run.returncode == 1, run.explain()
    assert run.report is not None and run.report["verdict"] == "anomalies" and run.report["mode"] == through
    assert rule in run.report["history"]["anomalies_by_rule"], run.report["history"]["anomalies_by_rule"]
    assert f"{rule}: task" in run.stdout and "load: ANOMALIES" in run.stdout

    dom = rendered_dom(report_path.with_suffix(".html"))
    body = _body_attributes(dom)
    assert body["data-check"] == "ok" and int(body["data-anomalies"]) > 0, body
    assert rule in dom


def test_find_max_reports_a_limit(conforming: str, tmp_path: Path) -> None:
    run = run_load(
        "--target",
        conforming,
        "--find-max",
        "--rate",
        "20",
        "--max-rate",
        "40",
        "--duration",
        "2",
        *RELAXED_LAG,
        report=tmp_path / "max.json",
    )

    assert run.returncode == 0, run.explain()
    assert run.report is not None
    found = run.report["find_max"]
    assert [step["rate"] for step in found["steps"]][:2] == [20, 40]
    assert found["highest_sustainable_rate"] == 40 and "--max-rate 40 reached" in found["limited_by"]
    assert found["at"]["latency_ms"]["e2e"]["count"] > 0
    assert "highest sustainable rate: 40 tasks/s" in run.stdout

    dom = rendered_dom(tmp_path / "max.html")
    assert _body_attributes(dom)["data-check"] == "ok" and 'class="steps"' in dom


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--mix", "noop:1,teleport:2"), "--mix: 'teleport:2': unknown task type"),
        (("--slo", "submit_p99<fast"), "--slo: 'submit_p99<fast' is not FIGURE<LIMIT"),
        (("--warmup", "5", "--duration", "5"), "--warmup: 5 s leaves nothing of --duration 5 s"),
        (("--duplicates", "1.5"), "--duplicates: a share in 0..1, got 1.5"),
        (("--worker-cmd", "x"), "--worker-cmd: needs --target-cmd"),
        (("--find-max", "--rate", "100", "--max-rate", "50"), "--max-rate 50 is below --rate 100"),
    ],
)
def test_bad_options_exit_2_naming_the_option(
    args: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["load", *args]) == 2
    assert message in capsys.readouterr().err


def test_implementation_that_cannot_start_is_exit_3_with_one_error_line(tmp_path: Path) -> None:
    """The stack's bring-up is chaos's (cli/_common.harness_stack): one line, the logs kept."""
    report_path = tmp_path / "load.json"
    exits = f"{shlex.quote(sys.executable)} -c 'import sys; sys.exit(3)' {{port}}"
    run = run_load("--duration", "2", "--target-cmd", exits, report=report_path)

    assert run.returncode == 3, run.explain()
    errors = [line for line in run.stderr.splitlines() if line.startswith("taskqueue-harness: error:")]
    assert len(errors) == 1, run.stderr
    assert "stack failed to start: implementation (--taskqueue-target-cmd): exited with code 3" in errors[0]
    assert run.report is not None and run.report["verdict"] == "error" and run.report["exit_code"] == 3
    assert Path(run.report["logs"]).is_dir()
