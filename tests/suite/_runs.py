"""What one inner run of the bundled suite produced: pytest's result and the JSON conformance report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest


@dataclass
class SuiteRun:
    """One inner run of the bundled suite: pytest's result and the conformance report it wrote."""

    result: pytest.RunResult
    report: dict[str, Any]

    def outcomes(self, outcome: str) -> dict[str, str]:
        """Scenario id -> message, for the scenarios with this outcome."""
        return {s["id"]: s.get("message") or "" for s in self.report["scenarios"] if s["outcome"] == outcome}

    def explain(self) -> str:
        """What a failing assertion about this run should show: verdict, failures, output tail."""
        failed = "\n".join(f"  {sid}: {message[:300]}" for sid, message in self.outcomes("failed").items())
        tail = "\n".join(self.result.outlines[-30:])
        return (
            f"verdict {self.report.get('verdict')!r}, exit {self.result.ret}, "
            f"summary {self.report.get('summary')}"
            f"\nfailed:\n{failed or '  none'}\noutput tail:\n{tail}\nstderr:\n"
            + "\n".join(self.result.errlines[-20:])
        )


SuiteRunner = Callable[..., SuiteRun]
"""``run_suite(*breaks, args=(...))``, the fixture of tests/suite/conftest.py."""
