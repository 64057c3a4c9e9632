"""The conformance report: scenario outcomes gathered from test reports, the verdict, and its renderings.

Outcomes are gathered by ``pytest_runtest_logreport`` on the process that prints the summary
(the only process without xdist, the controller with it), from the scenario metadata that
``_collect.tag_scenarios`` put on ``user_properties``. What only the processes running the tests
know (the target they used, GetServerInfo, an infrastructure error) is kept in ``RunInfo``; xdist
workers send theirs to the controller through ``workeroutput``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import pathlib
from typing import Any, Final

import pytest

from pytest_taskqueue._collect import AREAS, PROP_AREA, PROP_OBLIGATION, PROP_SCENARIO
from pytest_taskqueue._options import markdown_twin

__all__ = [
    "INFO_KEY",
    "RECORDER_KEY",
    "WORKER_OUTPUT_KEY",
    "Recorder",
    "RunInfo",
    "ScenarioResult",
    "Verdict",
    "as_json",
    "render_markdown",
    "render_terminal",
    "write_reports",
]

WORKER_OUTPUT_KEY: Final = "taskqueue"
"""Key of this plugin's entry in an xdist worker's ``workeroutput``."""

_MESSAGE_CHARS: Final = 500


@dataclasses.dataclass
class RunInfo:
    """What the processes running tests learned: target, implementation, an infrastructure error."""

    targets: list[str] = dataclasses.field(default_factory=list)
    implementation: str = ""
    version: str = ""
    infra_error: str | None = None
    infra_detail: str = ""
    kept_logs: list[str] = dataclasses.field(default_factory=list)

    def note_target(self, target: str, implementation: str, version: str) -> None:
        """Remember the target a session connected to and what it said it is."""
        if target not in self.targets:
            self.targets.append(target)
        self.implementation = self.implementation or implementation
        self.version = self.version or version

    def as_output(self) -> dict[str, Any]:
        """A plain dict for xdist's ``workeroutput`` (execnet serialises only builtins)."""
        return dataclasses.asdict(self)

    def merge(self, output: dict[str, Any]) -> None:
        """Fold in a worker's ``as_output()``."""
        for target in output.get("targets", []):
            self.note_target(
                str(target), str(output.get("implementation", "")), str(output.get("version", ""))
            )
        self.kept_logs.extend(str(folder) for folder in output.get("kept_logs", []))
        if output.get("infra_error") and not self.infra_error:
            self.infra_error = str(output["infra_error"])
            self.infra_detail = str(output.get("infra_detail", ""))


INFO_KEY: Final = pytest.StashKey[RunInfo]()
"""Where the run's ``RunInfo`` lives on ``config.stash``."""


@dataclasses.dataclass
class ScenarioResult:
    """One scenario's line in the report."""

    id: str
    area: str
    obligation: str
    outcome: str = "passed"
    duration_s: float = 0.0
    message: str = ""

    @property
    def broken(self) -> bool:
        """True when the scenario failed or errored."""
        return self.outcome in ("failed", "error")


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The run's verdict: ``conforming``, ``not-conforming`` or ``error``, with its one-line reason."""

    value: str
    reason: str

    @property
    def headline(self) -> str:
        """``CONFORMING``, ``NOT CONFORMING (...)`` or ``ERROR (...)``, as the terminal prints it."""
        if self.value == "conforming":
            return "CONFORMING" + (f" ({self.reason})" if self.reason else "")
        return ("NOT CONFORMING" if self.value == "not-conforming" else "ERROR") + f" ({self.reason})"


def _message(report: pytest.TestReport) -> str:
    """A short message for a report: the crash line of a failure, the reason of a skip."""
    longrepr: Any = report.longrepr
    if longrepr is None:
        return ""
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        text = str(longrepr[2]).removeprefix("Skipped: ")
    else:
        crash = getattr(longrepr, "reprcrash", None)
        text = str(getattr(crash, "message", "") or longrepr)
    if getattr(report, "wasxfail", None) is not None:
        text = f"xfail: {report.wasxfail}" if report.wasxfail else "xfail"
    text = " ".join(text.split())
    return text if len(text) <= _MESSAGE_CHARS else text[: _MESSAGE_CHARS - 3] + "..."


class Recorder:
    """Gathers scenario outcomes, and notices failures outside optional scenarios."""

    def __init__(self) -> None:
        self.results: dict[str, ScenarioResult] = {}
        self.other_failures = 0
        self.collection_errors: list[str] = []

    def add_collect(self, report: pytest.CollectReport) -> None:
        """Remember a module that could not be collected: its scenarios never ran."""
        if report.failed:
            self.collection_errors.append(report.nodeid or "(rootdir)")

    def add(self, report: pytest.TestReport) -> None:
        """Fold one phase report (setup, call or teardown) into its scenario's result."""
        props = dict(report.user_properties)
        scenario_id = props.get(PROP_SCENARIO)
        if scenario_id is None:
            if report.failed:
                self.other_failures += 1
            return
        result = self.results.get(report.nodeid)
        if result is None:
            result = ScenarioResult(
                id=str(scenario_id),
                area=str(props.get(PROP_AREA, "")),
                obligation=str(props.get(PROP_OBLIGATION)),
            )
            self.results[report.nodeid] = result
        result.duration_s += report.duration
        if result.broken:
            return  # the first failure is the one that matters
        if report.failed:
            result.outcome = "failed" if report.when == "call" else "error"
            result.message = _message(report)
        elif report.skipped and result.outcome == "passed":
            result.outcome = "skipped"
            result.message = _message(report)

    @property
    def scenarios(self) -> list[ScenarioResult]:
        """Results by area (in ``AREAS`` order), then in the order they ran."""
        order = {area: index for index, area in enumerate(AREAS)}
        return sorted(self.results.values(), key=lambda r: order.get(r.area, len(order)))

    def summary(self) -> dict[str, int]:
        """Counts of passed, failed, skipped and errored scenarios."""
        counts = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0}
        for result in self.results.values():
            counts["errors" if result.outcome == "error" else result.outcome] += 1
        return counts

    def only_optional_failed(self) -> bool:
        """True when something failed and every failure is an optional scenario's."""
        broken = [r for r in self.results.values() if r.broken]
        return bool(broken) and self.other_failures == 0 and all(r.obligation == "optional" for r in broken)

    def verdict(self, info: RunInfo, *, strict: bool, interrupted: bool) -> Verdict:
        """The verdict over the scenarios that ran."""
        if info.infra_error:
            return Verdict("error", info.infra_error)
        if self.collection_errors:
            n = len(self.collection_errors)
            names = ", ".join(self.collection_errors[:3]) + (", ..." if n > 3 else "")
            return Verdict("error", f"{n} module{_s(n)} could not be collected: {names}")
        if not self.results:
            return Verdict("error", "no conformance scenario ran")
        required_broken = sum(1 for r in self.results.values() if r.broken and r.obligation != "optional")
        optional_broken = sum(1 for r in self.results.values() if r.broken and r.obligation == "optional")
        if required_broken:
            return Verdict(
                "not-conforming", f"{required_broken} required scenario{_s(required_broken)} failed"
            )
        if strict and optional_broken:
            return Verdict(
                "not-conforming",
                f"{optional_broken} optional scenario{_s(optional_broken)} failed, strict run",
            )
        if interrupted:
            return Verdict("error", "the run was interrupted before every scenario ran")
        if optional_broken:
            return Verdict("conforming", f"{optional_broken} optional scenario{_s(optional_broken)} failed")
        return Verdict("conforming", "")


RECORDER_KEY: Final = pytest.StashKey[Recorder]()
"""Where the ``Recorder`` lives on ``config.stash`` (only on the process that prints the summary)."""


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def _target_text(info: RunInfo, fallback: str) -> str:
    return ", ".join(info.targets) if info.targets else fallback


def _implementation_text(info: RunInfo) -> str:
    if not info.implementation:
        return "unknown (GetServerInfo was not reached)"
    return f"{info.implementation} {info.version}".strip()


def as_json(
    recorder: Recorder, info: RunInfo, verdict: Verdict, *, target: str, strict: bool
) -> dict[str, Any]:
    """The JSON report document."""
    return {
        "target": _target_text(info, target),
        "implementation": info.implementation,
        "version": info.version,
        "strict": strict,
        "generated_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "summary": recorder.summary(),
        "scenarios": [
            {
                "id": r.id,
                "area": r.area,
                "obligation": r.obligation,
                "outcome": r.outcome,
                "duration_s": round(r.duration_s, 3),
                "message": r.message,
            }
            for r in recorder.scenarios
        ],
        "verdict": verdict.value,
        "verdict_reason": verdict.reason,
        "error_detail": info.infra_detail,
    }


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or " "


def render_markdown(document: dict[str, Any]) -> str:
    """The Markdown twin of the JSON report (for a CI job summary)."""
    headline = {
        "conforming": "CONFORMING",
        "not-conforming": "NOT CONFORMING",
        "error": "ERROR",
    }[document["verdict"]]
    reason = f" ({document['verdict_reason']})" if document["verdict_reason"] else ""
    implementation = f"{document['implementation']} {document['version']}".strip() or "unknown"
    summary = document["summary"]
    lines = [
        f"## taskqueue conformance: {headline}{reason}",
        "",
        f"Target `{document['target']}`, implementation `{implementation}`"
        + (", strict run" if document["strict"] else "")
        + ".",
        "",
        "| passed | failed | skipped | errors |",
        "|---:|---:|---:|---:|",
        f"| {summary['passed']} | {summary['failed']} | {summary['skipped']} | {summary['errors']} |",
        "",
    ]
    if document["scenarios"]:
        lines += [
            "| scenario | area | obligation | outcome | duration (s) | message |",
            "|---|---|---|---|---:|---|",
        ]
        lines += [
            f"| `{_md_cell(s['id'])}` | {_md_cell(s['area'])} | {s['obligation']} | {s['outcome']} "
            f"| {s['duration_s']:.2f} | {_md_cell(s['message'])} |"
            for s in document["scenarios"]
        ]
    return "\n".join(lines) + "\n"


def write_reports(path: pathlib.Path, document: dict[str, Any]) -> pathlib.Path:
    """Write the JSON report to ``path`` and the Markdown twin beside it; return the twin's path."""
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    twin = markdown_twin(path)
    twin.write_text(render_markdown(document), encoding="utf-8")
    return twin


def render_terminal(recorder: Recorder, info: RunInfo, verdict: Verdict, *, target: str) -> list[str]:
    """Lines of the terminal summary: the table, the target and implementation, then the verdict."""
    lines = [*_table(recorder), ""] if recorder.results else []
    lines.append(
        f"taskqueue target: {_target_text(info, target)}  implementation: {_implementation_text(info)}"
    )
    lines.append(f"taskqueue verdict: {verdict.headline}")
    return lines


def _table(recorder: Recorder) -> list[str]:
    """The scenario table, each column padded to its widest cell."""
    rows = [("scenario", "area", "obligation", "outcome")]
    rows += [(r.id, r.area or "-", r.obligation, r.outcome) for r in recorder.scenarios]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        "  ".join(cell.ljust(widths[i]) if i < 3 else cell for i, cell in enumerate(row)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in [*widths, len("outcome")]))
    return lines
