"""The JSON report of a load run (format ``pytest-taskqueue-load-report/1``, docs/load.md).

The document is stable: members are only ever added within a format version. ``new_report``
starts it, the command fills ``run`` (or ``find_max``), ``slo`` and ``history``, and
``write_reports`` writes the JSON and, beside it, the HTML page rendered from the same document.
"""

from __future__ import annotations

import collections
import datetime
import json
import os
from pathlib import Path
from typing import Any, Final

from fault_injection.history import Anomaly

__all__ = ["REPORT_FORMAT", "anomalies_json", "new_report", "write_reports"]

REPORT_FORMAT: Final = "pytest-taskqueue-load-report/1"
"""Value of the ``format`` member of a load report."""


def new_report(config: dict[str, Any]) -> dict[str, Any]:
    """A report with every top-level member present (filled in as the run goes)."""
    return {
        "format": REPORT_FORMAT,
        "generated_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "verdict": "error",
        "exit_code": None,
        "error": "",
        "mode": None,
        "target": None,
        "config": config,
        "machine": {"cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()]},
        "run": None,
        "find_max": None,
        "slo": None,
        "history": None,
    }


def anomalies_json(
    anomalies: list[Anomaly], operations: int, tasks: int, path: Path | None
) -> dict[str, Any]:
    """The report's ``history`` object: counts and every anomaly (rule, meaning, task, key, evidence)."""
    return {
        "operations": operations,
        "tasks": tasks,
        "anomalies": [a.to_json() for a in anomalies],  # the one anomaly shape of every report
        "anomalies_by_rule": dict(collections.Counter(a.rule for a in anomalies)),
        "path": str(path) if path is not None else None,
    }


def write_reports(report: dict[str, Any], json_path: Path | None, html_path: Path | None) -> None:
    """Write the JSON document and the HTML page (either may be None)."""
    from pytest_taskqueue.load.html import render

    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    if html_path is not None:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(render(report), encoding="utf-8")
