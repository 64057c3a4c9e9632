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

from pytest_taskqueue._collect import (
    AREAS,
    PROP_AREA,
    PROP_NOT_RUN,
    PROP_OBLIGATION,
    PROP_SCENARIO,
    PROP_SPEC,
)
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
_LISTED: Final = 12
"""How many scenarios of one group the terminal lists (the JSON and Markdown reports list all)."""


@dataclasses.dataclass
class RunInfo:
    """What the processes running tests learned: target, implementation, an infrastructure error,
    which required scenarios of the catalogue the run left out, and the closing sweep's findings."""

    targets: list[str] = dataclasses.field(default_factory=list)
    implementation: str = ""
    version: str = ""
    infra_error: str | None = None
    infra_detail: str = ""
    kept_logs: list[str] = dataclasses.field(default_factory=list)
    left_out: list[list[str]] = dataclasses.field(default_factory=list)
    """``[scenario id, why]`` for each required bundled scenario (or module) the selection left out."""
    sweep_ran: bool = False
    sweep_tasks: int = 0
    sweep_violations: list[dict[str, str]] = dataclasses.field(default_factory=list)
    """``{"scenario", "task_id", "rule", "detail"}`` for each rule the closing sweep found broken."""
    sweep_note: str = ""

    def note_target(self, target: str, implementation: str, version: str) -> None:
        """Remember the target a session connected to and what it said it is."""
        if target not in self.targets:
            self.targets.append(target)
        self.implementation = self.implementation or implementation
        self.version = self.version or version

    def note_left_out(self, entries: list[tuple[str, str]]) -> None:
        """Add required scenarios the selection left out (each once)."""
        known = {entry[0] for entry in self.left_out}
        for scenario, why in entries:
            if scenario not in known:
                known.add(scenario)
                self.left_out.append([scenario, why])

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
        self.note_left_out([(str(entry[0]), str(entry[1])) for entry in output.get("left_out", [])])
        self.sweep_ran = self.sweep_ran or bool(output.get("sweep_ran"))
        self.sweep_tasks += int(output.get("sweep_tasks", 0))
        self.sweep_violations.extend(
            {str(k): str(v) for k, v in violation.items()} for violation in output.get("sweep_violations", [])
        )
        if output.get("sweep_note"):
            self.sweep_note = "; ".join(filter(None, [self.sweep_note, str(output["sweep_note"])]))


INFO_KEY: Final = pytest.StashKey[RunInfo]()
"""Where the run's ``RunInfo`` lives on ``config.stash``."""


@dataclasses.dataclass
class ScenarioResult:
    """One scenario's line in the report."""

    id: str
    area: str
    obligation: str
    sections: tuple[str, ...] = ()
    outcome: str = "passed"
    duration_s: float = 0.0
    message: str = ""
    not_run: str = ""
    """Why it may not run without counting against the verdict: ``level``, ``opt-in`` or ``""``."""

    @property
    def broken(self) -> bool:
        """True when the scenario failed or errored."""
        return self.outcome in ("failed", "error")

    @property
    def required(self) -> bool:
        return self.obligation != "optional"

    @property
    def skipped_for_level(self) -> bool:
        """A required scenario this run's level could not reach (no harness-owned backends)."""
        return self.required and self.outcome == "skipped" and self.not_run == "level"

    @property
    def not_requested(self) -> bool:
        """A required opt-in scenario (the chaos run) that was not asked for."""
        return self.required and self.outcome == "skipped" and self.not_run == "opt-in"

    @property
    def skipped_otherwise(self) -> bool:
        """A required scenario skipped for a reason other than the level: that is not conformance."""
        return (
            self.required and self.outcome == "skipped" and not (self.skipped_for_level or self.not_requested)
        )


LEVELS: Final = {
    "full": "full level: harness-owned backends, worker and fault proxies",
    "api": "API level: a running server reached through --taskqueue-target only",
}
"""What each level of a run can check."""

HEADLINES: Final = {
    "conforming": "CONFORMING",
    "conforming-at-api-level": "CONFORMING AT API LEVEL",
    "partial": "PARTIAL",
    "not-conforming": "NOT CONFORMING",
    "error": "ERROR",
}
"""The JSON verdict values and how the terminal, Markdown and JUnit state them."""

PARTIAL_EXIT_CODE: Final = 6
"""Exit status of a PARTIAL run (pytest's own codes are 0 to 5)."""

EXIT_CODES: Final = {
    "conforming": 0,
    "conforming-at-api-level": 0,
    "not-conforming": 1,
    "partial": PARTIAL_EXIT_CODE,
}
"""Exit status each verdict sets (``error`` keeps pytest's, or 3 for an infrastructure error)."""

_API_LEVEL_HINT: Final = "let the harness run the implementation with --taskqueue-target-cmd to check them"


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The run's verdict (a key of ``HEADLINES``), with its one-line reason."""

    value: str
    reason: str

    @property
    def headline(self) -> str:
        """E.g. ``CONFORMING``, ``CONFORMING AT API LEVEL (...)``, ``NOT CONFORMING (...)``."""
        return HEADLINES[self.value] + (f" ({self.reason})" if self.reason else "")

    @property
    def good(self) -> bool:
        """True for the verdicts that exit 0."""
        return self.value in ("conforming", "conforming-at-api-level")


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


@dataclasses.dataclass(frozen=True)
class NotRun:
    """A required scenario (or module) that did not run, and why."""

    id: str
    why: str
    """``level``, ``opt-in``, ``skipped``, or how the selection left it out."""
    reason: str


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
                sections=tuple(str(props.get(PROP_SPEC, "")).split()),
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
            result.not_run = str(props.get(PROP_NOT_RUN, ""))

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

    def not_run(self, info: RunInfo) -> list[NotRun]:
        """Every required scenario that did not run: skipped (for the level, not requested, or
        otherwise), then what the selection left out."""
        entries = [
            NotRun(
                r.id,
                "level" if r.skipped_for_level else "opt-in" if r.not_requested else "skipped",
                r.message,
            )
            for r in self.scenarios
            if r.required and r.outcome == "skipped"
        ]
        return entries + [NotRun(scenario, "left out", why) for scenario, why in info.left_out]

    def verdict(self, info: RunInfo, *, strict: bool, interrupted: bool, level: str = "full") -> Verdict:
        """The verdict (see docs/plugin.md): CONFORMING only when every required scenario of the
        catalogue ran and passed at the full level."""
        if info.infra_error:
            return Verdict("error", info.infra_error)
        if self.collection_errors:
            n = len(self.collection_errors)
            names = ", ".join(self.collection_errors[:3]) + (", ..." if n > 3 else "")
            return Verdict("error", f"{n} module{_s(n)} could not be collected: {names}")
        if not self.results:
            return Verdict("error", "no conformance scenario ran")
        results = list(self.results.values())
        required_broken = sum(1 for r in results if r.broken and r.required)
        optional_broken = sum(1 for r in results if r.broken and not r.required)
        skipped_otherwise = sum(1 for r in results if r.skipped_otherwise)
        violations = len(info.sweep_violations)
        problems = []
        if required_broken:
            problems.append(f"{required_broken} required scenario{_s(required_broken)} failed")
        if skipped_otherwise:
            problems.append(
                f"{skipped_otherwise} required scenario{_s(skipped_otherwise)} skipped "
                "for a reason other than the run's level"
            )
        if violations:
            problems.append(f"the closing sweep found {violations} violation{_s(violations)}")
        if strict and optional_broken:
            problems.append(f"{optional_broken} optional scenario{_s(optional_broken)} failed, strict run")
        if problems:
            return Verdict("not-conforming", "; ".join(problems))
        if interrupted:
            return Verdict("error", "the run was interrupted before every scenario ran")
        notes = (
            [f"{optional_broken} optional scenario{_s(optional_broken)} failed"] if optional_broken else []
        )
        unreached = sum(1 for r in results if r.skipped_for_level)
        if info.left_out:
            n = len(info.left_out)
            reason = (
                f"{n} required scenario{_s(n)} or module{_s(n)} of the catalogue left out by the selection"
            )
            if unreached:
                reason += f"; {unreached} more need harness-owned backends"
            return Verdict("partial", "; ".join([reason, *notes]))
        if unreached or level != "full":
            reason = (
                f"{unreached} required scenario{_s(unreached)} need{'' if unreached != 1 else 's'} "
                f"harness-owned backends and did not run; {_API_LEVEL_HINT}"
                if unreached
                else "the harness did not start the target, so it owned none of its backends"
            )
            return Verdict("conforming-at-api-level", "; ".join([reason, *notes]))
        return Verdict("conforming", "; ".join(notes))

    def coverage(self) -> list[dict[str, Any]]:
        """Per spec section: how many required scenarios checked it in this run, and how they ended."""
        sections: dict[str, dict[str, Any]] = {}
        for result in self.results.values():
            if not result.required or result.not_requested:
                continue  # an opt-in scenario not asked for is no part of this run's coverage
            for section in result.sections:
                row = sections.setdefault(
                    section, {"section": section, "scenarios": 0, "passed": 0, "failed": 0, "not_run": 0}
                )
                row["scenarios"] += 1
                key = "failed" if result.broken else "not_run" if result.outcome == "skipped" else "passed"
                row[key] += 1
        for row in sections.values():
            row["status"] = (
                "violated"
                if row["failed"]
                else "not checked"
                if not row["passed"]
                else "partly checked"
                if row["not_run"]
                else "held"
            )
        return sorted(sections.values(), key=lambda row: section_key(row["section"]))


def section_key(section: str) -> tuple[int, ...]:
    """Sort key of a spec section number: ``"3.10"`` after ``"3.9"``."""
    return tuple(int(part) if part.isdigit() else 0 for part in section.split("."))


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
    recorder: Recorder,
    info: RunInfo,
    verdict: Verdict,
    *,
    target: str,
    strict: bool,
    level: str = "full",
) -> dict[str, Any]:
    """The JSON report document."""
    return {
        "target": _target_text(info, target),
        "implementation": info.implementation,
        "version": info.version,
        "strict": strict,
        "level": level,
        "generated_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "summary": recorder.summary(),
        "scenarios": [
            {
                "id": r.id,
                "area": r.area,
                "obligation": r.obligation,
                "spec": list(r.sections),
                "outcome": r.outcome,
                "duration_s": round(r.duration_s, 3),
                "message": r.message,
            }
            for r in recorder.scenarios
        ],
        "not_run": [dataclasses.asdict(entry) for entry in recorder.not_run(info)],
        "sweep": {
            "ran": info.sweep_ran,
            "tasks": info.sweep_tasks,
            "violations": info.sweep_violations,
            "note": info.sweep_note,
        },
        "coverage": recorder.coverage(),
        "verdict": verdict.value,
        "verdict_reason": verdict.reason,
        "verdict_headline": verdict.headline,
        "error_detail": info.infra_detail,
    }


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or " "


def _md_table(title: str, columns: str, rows: list[list[str]]) -> list[str]:
    """A ``### title`` section with a table; ``columns`` like ``"scenario|why|n:"`` (``:``: right-aligned)."""
    names = columns.split("|")
    lines = [f"### {title}", ""] if title else []
    lines.append("| " + " | ".join(name.rstrip(":") for name in names) + " |")
    lines.append("|" + "|".join("---:" if name.endswith(":") else "---" for name in names) + "|")
    lines += ["| " + " | ".join(_md_cell(cell) for cell in row) + " |" for row in rows]
    return [*lines, ""]


def render_markdown(document: dict[str, Any]) -> str:
    """The Markdown twin of the JSON report (for a CI job summary)."""
    implementation = f"{document['implementation']} {document['version']}".strip() or "unknown"
    summary = document["summary"]
    lines = [
        f"## taskqueue conformance: {document['verdict_headline']}",
        "",
        f"Target `{document['target']}`, implementation `{implementation}`, "
        + LEVELS.get(document["level"], document["level"])
        + (", strict run" if document["strict"] else "")
        + ".",
        "",
        *_md_table(
            "",
            "passed:|failed:|skipped:|errors:",
            [[str(summary[key]) for key in ("passed", "failed", "skipped", "errors")]],
        ),
    ]
    if document["not_run"]:
        rows = [[f"`{e['id']}`", e["why"], e["reason"]] for e in document["not_run"]]
        lines += _md_table("Required scenarios that did not run", "scenario|why|reason", rows)
    sweep = document["sweep"]
    if sweep["ran"] or sweep["violations"] or sweep["note"]:
        found = len(sweep["violations"])
        lines += [
            "### Closing sweep",
            "",
            f"Re-read {sweep['tasks']} task{_s(sweep['tasks'])}: "
            + (f"{found} violation{_s(found)}." if found else "no violation.")
            + (f" {sweep['note']}" if sweep["note"] else ""),
            "",
        ]
        if found:
            rows = [
                [f"`{v['scenario']}`", f"`{v['task_id']}`", v["rule"], v["detail"]]
                for v in sweep["violations"]
            ]
            lines += _md_table("", "created by|task|rule|detail", rows)
    if document["coverage"]:
        keys = ("section", "scenarios", "passed", "failed", "not_run", "status")
        rows = [[str(row[key]) for key in keys] for row in document["coverage"]]
        title = "Spec sections checked by required scenarios"
        lines += _md_table(title, "section|scenarios:|passed:|failed:|not run:|status", rows)
    if document["scenarios"]:
        rows = [
            [f"`{s['id']}`", s["area"], s["obligation"], s["outcome"], f"{s['duration_s']:.2f}", s["message"]]
            for s in document["scenarios"]
        ]
        lines += _md_table("Scenarios", "scenario|area|obligation|outcome|duration (s):|message", rows)
    return "\n".join(lines)


def write_reports(path: pathlib.Path, document: dict[str, Any]) -> pathlib.Path:
    """Write the JSON report to ``path`` and the Markdown twin beside it; return the twin's path."""
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    twin = markdown_twin(path)
    twin.write_text(render_markdown(document), encoding="utf-8")
    return twin


def render_terminal(
    recorder: Recorder, info: RunInfo, verdict: Verdict, *, target: str, level: str = "full"
) -> list[str]:
    """Lines of the terminal summary: the table, the target and level, the required scenarios that
    did not run (grouped by why), the closing sweep's violations, then the verdict."""
    lines = [*_table(recorder), ""] if recorder.results else []
    lines.append(
        f"taskqueue target: {_target_text(info, target)}  implementation: {_implementation_text(info)}"
    )
    lines.append(f"taskqueue level: {LEVELS.get(level, level)}")
    groups: dict[tuple[str, str], list[str]] = {}
    for entry in recorder.not_run(info):
        groups.setdefault((entry.why, entry.reason), []).append(entry.id)
    for (why, reason), ids in groups.items():
        head = {
            "level": "not run at this level",
            "opt-in": "not requested",
            "skipped": "skipped (counts against the verdict)",
            "left out": "left out",
        }.get(why, why)
        lines.append(f"taskqueue: {len(ids)} required scenario{_s(len(ids))} {head}: {reason}")
        lines.extend(f"  {scenario}" for scenario in ids[:_LISTED])
        if len(ids) > _LISTED:
            lines.append(f"  ... and {len(ids) - _LISTED} more (every one is in the JSON report)")
    if info.sweep_ran or info.sweep_violations:
        found = len(info.sweep_violations)
        lines.append(
            f"taskqueue sweep: re-read {info.sweep_tasks} task{_s(info.sweep_tasks)}, "
            + (f"{found} violation{_s(found)}" if found else "no violation")
            + (f" ({info.sweep_note})" if info.sweep_note else "")
        )
        lines.extend(
            f"  {v['rule']}: task {v['task_id']} created by {v['scenario']}: {v['detail']}"
            for v in info.sweep_violations[:_LISTED]
        )
        if found > _LISTED:
            lines.append(f"  ... and {found - _LISTED} more (every one is in the JSON report)")
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
