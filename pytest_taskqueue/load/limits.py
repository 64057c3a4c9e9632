"""Service-level objectives (``--slo``) and the search for the highest sustainable rate (``--find-max``).

An SLO is a comma-separated list of ``FIGURE<LIMIT`` (or ``<=``, ``>``, ``>=``) objectives, e.g.
``submit_p99<50ms,e2e_p99<2s,errors<0.1%``. Figures: ``submit_`` and ``e2e_`` followed by
``p50``, ``p90``, ``p99``, ``p99.9``, ``max`` or ``mean`` (a time: ``us``, ``ms`` or ``s``);
``errors`` (the share of submits answered with an error: ``%`` or a fraction); ``achieved_rate``
(tasks/s, or ``%`` of the offered rate).

``find_max`` offers a rising rate, doubling from the start rate until a step is not sustainable,
then bisects between the highest sustainable and the lowest unsustainable rate. A step is
sustainable when the generator kept its schedule, the target acknowledged at least 95% of the
offered rate with at most 1% errors (unless the SLO sets ``errors``), every task became terminal,
the backlog did not grow over the window, and every objective held.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["FIGURES", "FindMaxResult", "Objective", "Step", "find_max", "judge", "parse_slo", "unsustainable"]

_LATENCY_STATS: Final = ("p50", "p90", "p99", "p99.9", "max", "mean")
FIGURES: Final = (
    *(f"{kind}_{stat}" for kind in ("submit", "e2e") for stat in _LATENCY_STATS),
    "errors",
    "achieved_rate",
)
"""Every figure an objective can name."""
_OBJECTIVE_RE: Final = re.compile(
    r"^\s*([a-z0-9_.]+)\s*(<=|>=|<|>)\s*([0-9]*\.?[0-9]+)\s*([a-z%]*)\s*$", re.IGNORECASE
)
_TIME_UNITS: Final = {"us": 0.001, "ms": 1.0, "s": 1000.0}
MIN_ACHIEVED_SHARE: Final = 0.95
DEFAULT_MAX_ERRORS: Final = 0.01


@dataclass(frozen=True)
class Objective:
    """One objective: ``figure op limit`` in the figure's own unit (ms, a fraction, tasks/s)."""

    figure: str
    op: str
    limit: float
    text: str
    relative: bool = False
    """``achieved_rate`` given in % of the offered rate."""

    def value_of(self, figures: dict[str, float | None]) -> float | None:
        """The figure this objective judges, in its unit."""
        value = figures.get(self.figure)
        if value is not None and self.relative:
            offered = figures.get("offered_rate") or 0.0
            return value / offered if offered else None
        return value

    def holds(self, value: float | None) -> bool:
        """Whether ``value`` keeps the objective (no value never does)."""
        if value is None:
            return False
        return {
            "<": value < self.limit,
            "<=": value <= self.limit,
            ">": value > self.limit,
            ">=": value >= self.limit,
        }[self.op]

    def show(self, value: float | None) -> str:
        """The value in the objective's unit, for messages."""
        if value is None:
            return "no value"
        if self.figure == "errors" or self.relative:
            return f"{100 * value:.3g}%"
        if self.figure == "achieved_rate":
            return f"{value:.1f} tasks/s"
        return f"{value:.3f} ms"


def parse_slo(text: str) -> tuple[Objective, ...]:
    """Parse ``--slo``; ValueError names the objective at fault."""
    objectives = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        match = _OBJECTIVE_RE.match(part)
        if match is None:
            raise ValueError(f"{part!r} is not FIGURE<LIMIT (e.g. submit_p99<50ms, errors<0.1%)")
        figure, op, number, unit = (
            match.group(1).lower(),
            match.group(2),
            float(match.group(3)),
            match.group(4).lower(),
        )
        if figure not in FIGURES:
            raise ValueError(f"{part!r}: unknown figure {figure!r} (one of {', '.join(FIGURES)})")
        relative = False
        if figure == "errors":
            if unit not in ("", "%"):
                raise ValueError(f"{part!r}: errors take % or a fraction, not {unit!r}")
            limit = number / 100 if unit == "%" else number
        elif figure == "achieved_rate":
            if unit not in ("", "%", "/s"):
                raise ValueError(f"{part!r}: achieved_rate takes tasks/s or % of the offered rate")
            relative = unit == "%"
            limit = number / 100 if relative else number
        else:
            if unit not in _TIME_UNITS:
                raise ValueError(f"{part!r}: give the time with a unit (us, ms or s), got {unit or 'none'}")
            limit = number * _TIME_UNITS[unit]
        objectives.append(Objective(figure, op, limit, part, relative))
    if not objectives:
        raise ValueError("name at least one objective, e.g. submit_p99<50ms")
    return tuple(objectives)


def judge(objectives: Sequence[Objective], figures: dict[str, float | None]) -> list[dict[str, Any]]:
    """Each objective with the measured value and whether it held (the report's ``slo.results``)."""
    results = []
    for objective in objectives:
        value = objective.value_of(figures)
        results.append(
            {
                "objective": objective.text,
                "figure": objective.figure,
                "value": value,
                "shown": objective.show(value),
                "ok": objective.holds(value),
            }
        )
    return results


def broken_lines(results: list[dict[str, Any]]) -> list[str]:
    """``SLO broken: submit_p99 = 63.1 ms (objective submit_p99<50ms)`` for each broken objective."""
    return [
        f"SLO broken: {r['figure']} = {r['shown']} (objective {r['objective']})"
        for r in results
        if not r["ok"]
    ]


def unsustainable(
    summary: dict[str, Any], figures: dict[str, float | None], objectives: Sequence[Objective], growing: bool
) -> list[str]:
    """Why a step is not sustainable (empty when it is)."""
    reasons = []
    generator = summary["generator"]
    if not generator["valid"]:
        reasons.append(f"generator: {generator['reason']}")
    offered = summary["offered_rate"]
    if summary["achieved_rate"] < MIN_ACHIEVED_SHARE * offered:
        reasons.append(f"achieved {summary['achieved_rate']:.1f} of {offered:g} tasks/s offered")
    if not any(o.figure == "errors" for o in objectives):
        errors = summary["submits"]["error_fraction"]
        if errors > DEFAULT_MAX_ERRORS:
            reasons.append(f"errors {100 * errors:.2f}% of submits (over {100 * DEFAULT_MAX_ERRORS:g}%)")
    if summary["submits"].get("unresolved"):
        reasons.append(f"{summary['submits']['unresolved']} submits left with an unknown outcome")
    if summary["tasks"]["undrained"]:
        reasons.append(f"{summary['tasks']['undrained']} tasks not terminal after the drain timeout")
    if growing:
        reasons.append(f"backlog growing (at the end of the window: {summary['backlog']['at_end']} tasks)")
    reasons.extend(broken_lines(judge(objectives, figures)))
    return reasons


@dataclass
class Step:
    """One rate tried by ``find_max``."""

    rate: float
    reasons: list[str]
    summary: dict[str, Any]
    anomalies: int = 0
    rules: dict[str, int] = field(default_factory=dict)
    """Anomalies by rule."""

    @property
    def sustainable(self) -> bool:
        """No reason against it and no anomaly."""
        return not self.reasons and not self.anomalies

    def to_json(self) -> dict[str, Any]:
        """A row of the report's ``find_max.steps``."""
        latency = self.summary["latency_ms"]
        return {
            "rate": self.rate,
            "sustainable": self.sustainable,
            "reasons": self.reasons,
            "anomalies": self.anomalies,
            "anomalies_by_rule": self.rules,
            "achieved_rate": self.summary["achieved_rate"],
            "error_fraction": self.summary["submits"]["error_fraction"],
            "submit_p99_ms": latency["submit"]["p99"],
            "e2e_p99_ms": latency["e2e"]["p99"],
            "backlog_at_end": self.summary["backlog"]["at_end"],
            "generator_valid": self.summary["generator"]["valid"],
        }


@dataclass
class FindMaxResult:
    """The steps tried and the highest sustainable one (None when even the lowest rate failed)."""

    steps: list[Step] = field(default_factory=list)
    best: Step | None = None
    limited_by: str = ""

    def to_json(self) -> dict[str, Any]:
        """The report's ``find_max`` object (``at``: the best step's full run summary)."""
        return {
            "highest_sustainable_rate": self.best.rate if self.best is not None else None,
            "limited_by": self.limited_by,
            "steps": [step.to_json() for step in self.steps],
            "at": self.best.summary if self.best is not None else None,
        }


def find_max(
    run_step: Callable[[float, int], Step],
    start_rate: float,
    max_rate: float,
    *,
    precision: float = 0.1,
    max_steps: int = 12,
    progress: Callable[[str], None] = print,
) -> FindMaxResult:
    """Double from ``start_rate`` until a step fails (or ``max_rate``), then bisect to ``precision``.

    ``run_step(rate, step_number)`` runs one step. The search stops early on an anomaly (a
    correctness failure is not a capacity limit) or when the generator itself falls behind while the
    target kept up (its limit is then above what this generator offers); a step where the target
    also fell behind is an ordinary unsustainable step.
    """
    result = FindMaxResult()
    good: Step | None = None
    bad: Step | None = None
    rate = min(start_rate, max_rate)

    def attempt(value: float) -> Step:
        step = run_step(value, len(result.steps))
        result.steps.append(step)
        verdict = (
            "sustainable"
            if step.sustainable
            else "NOT sustainable: " + "; ".join(step.reasons or ["anomalies"])
        )
        progress(f"find-max: step {len(result.steps)} at {value:g} tasks/s: {verdict}")
        return step

    while len(result.steps) < max_steps:
        step = attempt(rate)
        if step.anomalies:
            result.limited_by = f"anomalies at {rate:g} tasks/s (a correctness failure, not a capacity limit)"
            break
        if not step.summary["generator"]["valid"] and len(step.reasons) == 1:  # nothing else went wrong
            result.limited_by = (
                f"the generator could not offer {rate:g} tasks/s: {step.summary['generator']['reason']}"
            )
            break
        if step.sustainable:
            good = step
            if bad is None:
                if rate >= max_rate:
                    result.limited_by = f"--max-rate {max_rate:g} reached: the limit is higher"
                    break
                rate = min(rate * 2, max_rate)
                continue
        else:
            bad = step
            if good is None:
                if rate <= start_rate / 8:
                    result.limited_by = "even the lowest rate tried was not sustainable: " + "; ".join(
                        step.reasons
                    )
                    break
                rate = rate / 2
                continue
        assert good is not None and bad is not None
        if (bad.rate - good.rate) / good.rate <= precision:
            result.limited_by = "; ".join(bad.reasons) or f"{bad.rate:g} tasks/s not sustainable"
            break
        rate = round((good.rate + bad.rate) / 2, 1)
    else:
        result.limited_by = result.limited_by or f"stopped after {max_steps} steps"
    result.best = good
    return result
