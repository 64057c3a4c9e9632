"""Where the bundled suite's wall time goes: the top scenarios, each split into waiting and working.

    python benchmarks/bench_profile_suite.py [--top 15] [--json out.json] [-- extra pytest args]

Runs ``pytest --pyargs scenarios`` against the harness-owned reference stack (from an empty folder,
serially) with this file loaded as a pytest plugin (``-p bench_profile_suite``). For every test the
plugin records pytest's setup, call and teardown durations and the intervals the test process spent
waiting: inside ``TestHarness.wait_for_status``/``wait_for_terminal`` (the task has not got there
yet), in the worker or server control's ``kill``/``start``/``restart``/``wait_ready`` (a process
stopping and starting) and in ``asyncio.sleep``
outside those (a scenario's own timed window). Overlapping waits (``asyncio.gather`` of several)
count once. *working* is the rest: the test's own calls and checks, and fixture work.

It reports; it asserts nothing. The output format is described in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Generator
from pathlib import Path
from typing import Any

import pytest

#: Environment variable through which the runner tells the plugin where to write its records.
OUTPUT_ENV = "TASKQUEUE_BENCH_PROFILE_OUT"

# ----------------------------------------------------------------------------- the pytest plugin

_intervals: list[tuple[float, float, str]] = []
_records: list[dict[str, Any]] = []
_current: dict[str, Any] = {}


def _timed(kind: str, function: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
    @functools.wraps(function)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await function(*args, **kwargs)
        finally:
            _intervals.append((started, time.perf_counter(), kind))

    wrapper.__bench_profile__ = True  # type: ignore[attr-defined]
    return wrapper


def _timed_sync(kind: str, function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            _intervals.append((started, time.perf_counter(), kind))

    wrapper.__bench_profile__ = True  # type: ignore[attr-defined]
    return wrapper


def _install_probes() -> None:
    from pytest_taskqueue import _harness

    harness = _harness.TestHarness
    for name in ("wait_for_status", "wait_for_terminal"):
        method = getattr(harness, name)
        if not getattr(method, "__bench_profile__", False):
            setattr(harness, name, _timed("wait", method))
    control = _harness.ProcessControl
    if not getattr(control.wait_ready, "__bench_profile__", False):
        control.wait_ready = _timed("restart", control.wait_ready)  # type: ignore[method-assign]
        for name in ("kill", "start", "restart"):  # a graceful stop waits for the process to exit
            setattr(control, name, _timed_sync("restart", getattr(control, name)))
    if not getattr(asyncio.sleep, "__bench_profile__", False):
        asyncio.sleep = _timed("sleep", asyncio.sleep)


def _union(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get(OUTPUT_ENV):
        _install_probes()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    _intervals.clear()
    _current.clear()
    _current.update(nodeid=item.nodeid, phases={}, areas=sorted(m.name for m in item.iter_markers()))
    began = time.perf_counter()
    yield
    ended = time.perf_counter()
    kinds: dict[str, float] = {}
    for kind in {k for _, _, k in _intervals}:
        kinds[kind] = _union([(a, b) for a, b, k in _intervals if k == kind])
    waiting = _union([(max(a, began), min(b, ended)) for a, b, _ in _intervals if b > began and a < ended])
    _records.append({**_current, "wall_s": ended - began, "waiting_s": waiting, "waits": kinds})


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.nodeid == _current.get("nodeid"):
        _current["phases"][report.when] = report.duration
        if report.when == "call" or report.outcome != "passed":
            _current["outcome"] = report.outcome


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    out = os.environ.get(OUTPUT_ENV)
    if out:
        Path(out).write_text(json.dumps(_records))


# ------------------------------------------------------------------------------------ the runner

_AREAS = ("lifecycle", "idempotency", "retry", "dlq", "errors", "watch", "faults", "recovery")


def profile(extra: list[str]) -> dict[str, Any]:
    """Run the suite once with the plugin; the per-test records and the run's totals."""
    here = Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as folder:
        out = Path(folder) / "records.json"
        env = dict(os.environ)
        env[OUTPUT_ENV] = str(out)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(here), str(here.parent), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        argv = [sys.executable, "-m", "pytest", "--pyargs", "scenarios", "-q", "-p", "no:cacheprovider"]
        argv += ["-p", "bench_profile_suite", *extra]
        load = os.getloadavg()[0]
        started = time.perf_counter()
        done = subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
        records = json.loads(out.read_text()) if out.is_file() else []
    lines = [line for line in done.stdout.strip().splitlines() if line.strip()]
    return {
        "exit": done.returncode,
        "summary": lines[-1] if lines else "(no output)",
        "wall_s": wall,
        "load_1min": load,
        "records": records,
        "stderr_tail": done.stderr.strip().splitlines()[-5:],
    }


def summarise(run: dict[str, Any], top: int) -> dict[str, Any]:
    """The figures the report prints, as JSON-ready data."""
    records: list[dict[str, Any]] = run["records"]
    in_tests = sum(r["wall_s"] for r in records)
    waiting = sum(r["waiting_s"] for r in records)
    first_setup = records[0]["phases"].get("setup", 0.0) if records else 0.0
    by_area: dict[str, dict[str, float]] = {}
    for record in records:
        area = next((a for a in _AREAS if a in record["areas"]), "other")
        totals = by_area.setdefault(area, {"tests": 0, "wall_s": 0.0, "waiting_s": 0.0})
        totals["tests"] += 1
        totals["wall_s"] += record["wall_s"]
        totals["waiting_s"] += record["waiting_s"]
    ranked = sorted(records, key=lambda r: r["wall_s"], reverse=True)[:top]
    return {
        "summary": run["summary"],
        "exit": run["exit"],
        "wall_s": round(run["wall_s"], 2),
        "load_1min": round(run["load_1min"], 2),
        "stack_start_s": round(first_setup, 2),
        "in_tests_s": round(in_tests, 2),
        "waiting_s": round(waiting, 2),
        "working_s": round(in_tests - waiting, 2),
        "top": [
            {
                "test": r["nodeid"],
                "wall_s": round(r["wall_s"], 2),
                "waiting_s": round(r["waiting_s"], 2),
                "working_s": round(r["wall_s"] - r["waiting_s"], 2),
                "waits": {k: round(v, 2) for k, v in sorted(r["waits"].items())},
            }
            for r in ranked
        ],
        "by_area": {
            area: {k: round(v, 2) if isinstance(v, float) else v for k, v in totals.items()}
            for area, totals in sorted(by_area.items(), key=lambda kv: -kv[1]["wall_s"])
        },
    }


def render(report: dict[str, Any]) -> str:
    """The human-readable report (format: benchmarks/README.md)."""
    share = 100 * report["waiting_s"] / report["in_tests_s"] if report["in_tests_s"] else 0.0
    out = [
        f"suite: {report['summary']}",
        f"wall {report['wall_s']:.1f} s (load {report['load_1min']:.1f}); "
        f"stack start (first setup) {report['stack_start_s']:.1f} s",
        f"in tests {report['in_tests_s']:.1f} s: waiting {report['waiting_s']:.1f} s ({share:.0f} %), "
        f"working {report['working_s']:.1f} s",
        "",
        f"{'wall':>7} {'waiting':>8} {'working':>8}  test  [waits: wait/sleep/restart]",
    ]
    for row in report["top"]:
        waits = " ".join(f"{k} {v:.1f}" for k, v in row["waits"].items())
        figures = f"{row['wall_s']:6.2f}s {row['waiting_s']:7.2f}s {row['working_s']:7.2f}s"
        out.append(f"{figures}  {row['test']}  [{waits}]")
    out += ["", f"{'area':<12} {'tests':>5} {'wall':>8} {'waiting':>8}"]
    for area, totals in report["by_area"].items():
        out.append(f"{area:<12} {totals['tests']:>5} {totals['wall_s']:7.1f}s {totals['waiting_s']:7.1f}s")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=15, help="how many scenarios to list (default 15)")
    parser.add_argument("--json", help="also write the report here")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args()
    run = profile(args.pytest_args)
    if not run["records"]:
        print(f"no records: {run['summary']}\n" + "\n".join(run["stderr_tail"]), file=sys.stderr)
        return 1
    report = summarise(run, args.top)
    print(render(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
