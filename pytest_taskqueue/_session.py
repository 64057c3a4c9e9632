"""``ConformanceSession``: the per-run plugin object that turns test reports into a verdict.

Registered by ``plugin.pytest_configure`` on the process that prints the summary (the only one
without xdist, the controller with it). It gathers scenario outcomes from every phase report,
folds in what xdist workers learned, writes the report files, sets the exit status the verdict
implies, and ends the terminal summary with the conformance table and the verdict line.
"""

from __future__ import annotations

import pathlib
from collections.abc import Generator

import pytest

from pytest_taskqueue._infra import INFRA_EXIT_CODE
from pytest_taskqueue._options import CONFIG_KEY, TaskQueueConfig
from pytest_taskqueue._report import (
    EXIT_CODES,
    INFO_KEY,
    WORKER_OUTPUT_KEY,
    Recorder,
    RunInfo,
    Verdict,
    as_json,
    render_terminal,
    write_reports,
)

__all__ = ["ConformanceSession"]

_OWNED_TARGET = "harness-owned reference stack"


class ConformanceSession:
    """Collects outcomes and settles the verdict for one run (see the module doc)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.options: TaskQueueConfig = config.stash[CONFIG_KEY]
        self.info: RunInfo = config.stash[INFO_KEY]
        self.recorder = Recorder()
        self.verdict: Verdict | None = None
        self.written: list[pathlib.Path] = []
        """The report files this run wrote, named at the end of the summary."""

    @property
    def _target(self) -> str:
        """The target as the user named it, when no session reached it to note its address."""
        if self.options.target_cmd is not None:
            return f"{self.options.target_cmd} (started by the harness)"
        return self.options.target or _OWNED_TARGET

    @property
    def level(self) -> str:
        """``full`` when the harness owned the stack (reference or target command), else ``api``.

        A run without ``--taskqueue-target`` whose fixtures were overridden to own nothing (docs/plugin.md,
        "Overriding fixtures") is at the API level too: its level-bound scenarios skipped.
        """
        if self.options.target is not None:
            return "api"
        return "api" if any(r.skipped_for_level for r in self.recorder.results.values()) else "full"

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Fold each phase report into its scenario's outcome."""
        self.recorder.add(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        """Note modules that failed to collect (under xdist, workers forward these)."""
        self.recorder.add_collect(report)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: object, error: object) -> None:
        """xdist: fold in what a worker learned (its target, GetServerInfo, an infrastructure error)."""
        output = getattr(node, "workeroutput", None)
        if isinstance(output, dict) and isinstance(output.get(WORKER_OUTPUT_KEY), dict):
            self.info.merge(output[WORKER_OUTPUT_KEY])

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Settle the verdict, write the report, and set the exit status the verdict implies.

        Runs before pytest's JUnit plugin writes its file, so the verdict is among its properties.
        Exit status (docs/plugin.md): 3 after an infrastructure error; 1 when not conforming (also
        when every test passed but the closing sweep found a violation); 6 for a PARTIAL run; 0 for
        CONFORMING and CONFORMING AT API LEVEL, even when optional scenarios failed (unless
        strict), but never over a failing test that is not a scenario.
        """
        conformance_run = self.recorder.results or self.recorder.collection_errors or self.info.infra_error
        if not conformance_run and self.options.report is None:
            return  # not a conformance run
        interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
        self.verdict = self.recorder.verdict(
            self.info, strict=self.options.strict, interrupted=interrupted, level=self.level
        )
        self._junit_properties(self.verdict)
        if self.options.report is not None:
            document = as_json(
                self.recorder,
                self.info,
                self.verdict,
                target=self._target,
                strict=self.options.strict,
                level=self.level,
            )
            twin = write_reports(self.options.report, document)
            self.written = [self.options.report, twin]
        if self.info.infra_error:
            session.exitstatus = INFRA_EXIT_CODE
            return
        wanted = EXIT_CODES.get(self.verdict.value)
        if wanted is None:
            return  # an error verdict keeps pytest's status
        only_scenarios_decide = exitstatus == pytest.ExitCode.OK or (
            exitstatus == pytest.ExitCode.TESTS_FAILED and self.recorder.other_failures == 0
        )
        if wanted == pytest.ExitCode.TESTS_FAILED or only_scenarios_decide:
            session.exitstatus = wanted

    def _junit_properties(self, verdict: Verdict) -> None:
        """State the verdict as global properties of ``--junitxml``'s test suite."""
        from _pytest.junitxml import xml_key

        xml = self.config.stash.get(xml_key, None)
        if xml is None:
            return
        xml.add_global_property("taskqueue_verdict", verdict.value)
        xml.add_global_property("taskqueue_verdict_headline", verdict.headline)
        xml.add_global_property("taskqueue_level", self.level)
        not_run = self.recorder.not_run(self.info)
        xml.add_global_property("taskqueue_required_not_run", str(len(not_run)))
        xml.add_global_property("taskqueue_sweep_violations", str(len(self.info.sweep_violations)))

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> Generator[None]:
        """End the summary with the conformance table and the verdict, after pytest's own sections."""
        yield
        for folder in self.info.kept_logs:
            terminalreporter.write_line(f"taskqueue: reference stack logs kept in {folder}")
        if self.verdict is None:
            return
        terminalreporter.write_sep("=", "taskqueue conformance")
        if self.info.infra_error:
            if self.info.infra_detail:
                terminalreporter.write_line(self.info.infra_detail)
            # The error itself is the run's last line (pytest prints why the run stopped).
            line = "taskqueue verdict: ERROR (infrastructure error, the run stopped)"
            terminalreporter.write_line(line, red=True)
        else:
            lines = render_terminal(
                self.recorder, self.info, self.verdict, target=self._target, level=self.level
            )
            for line in lines[:-1]:
                terminalreporter.write_line(line)
            good = self.verdict.good
            terminalreporter.write_line(lines[-1], green=good, red=not good, bold=True)
        if self.written:
            terminalreporter.write_line("taskqueue report: " + ", ".join(map(str, self.written)))
