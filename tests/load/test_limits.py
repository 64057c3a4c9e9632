"""SLO objectives and the --find-max search, on made-up figures (unit tests)."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_taskqueue.load.limits import Step, broken_lines, find_max, judge, parse_slo, unsustainable


def test_slo_parses_units_and_judges_each_figure() -> None:
    objectives = parse_slo("submit_p99<50ms,e2e_p99<2s,errors<0.1%,achieved_rate>=95%")
    figures: dict[str, float | None] = {
        "submit_p99": 63.2,
        "e2e_p99": 1500.0,
        "errors": 0.0005,
        "achieved_rate": 99.0,
        "offered_rate": 100.0,
    }
    results = judge(objectives, figures)
    assert [r["ok"] for r in results] == [False, True, True, True]
    assert broken_lines(results) == ["SLO broken: submit_p99 = 63.200 ms (objective submit_p99<50ms)"]


def test_missing_figure_breaks_its_objective() -> None:
    results = judge(parse_slo("e2e_p50<1s"), {"e2e_p50": None})
    assert results[0]["ok"] is False and results[0]["shown"] == "no value"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("submit_p99<50", "give the time with a unit"),
        ("latency<5ms", "unknown figure 'latency'"),
        ("errors<5ms", "errors take % or a fraction"),
        ("submit_p99 about 5ms", "is not FIGURE<LIMIT"),
        (",", "name at least one objective"),
    ],
)
def test_bad_objectives_are_named(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_slo(text)


def _summary(rate: float, achieved: float, *, valid: bool = True) -> dict[str, Any]:
    return {
        "offered_rate": rate,
        "achieved_rate": achieved,
        "generator": {"valid": valid, "reason": "" if valid else "fell behind"},
        "submits": {"error_fraction": 0.0},
        "tasks": {"undrained": 0},
        "backlog": {"at_end": 0},
        "latency_ms": {"submit": {"p99": 1.0}, "e2e": {"p99": 2.0}},
    }


def _fake_target(capacity: float) -> Any:
    def step(rate: float, number: int) -> Step:
        achieved = min(rate, capacity)
        summary = _summary(rate, achieved)
        return Step(rate, unsustainable(summary, {}, (), growing=rate > capacity), summary)

    return step


def test_find_max_doubles_then_bisects_to_the_precision() -> None:
    result = find_max(_fake_target(300.0), 50.0, 5000.0, precision=0.1, progress=lambda line: None)
    rates = [step.rate for step in result.steps]
    assert rates[:4] == [50.0, 100.0, 200.0, 400.0]
    assert result.best is not None and 270 <= result.best.rate <= 300
    assert "backlog growing" in result.limited_by


def test_find_max_stops_at_max_rate_and_when_the_generator_falls_behind() -> None:
    capped = find_max(_fake_target(1e9), 100.0, 400.0, progress=lambda line: None)
    assert capped.best is not None and capped.best.rate == 400.0 and "--max-rate" in capped.limited_by

    def behind(rate: float, number: int) -> Step:
        summary = _summary(rate, rate, valid=rate < 150)
        return Step(rate, unsustainable(summary, {}, (), growing=False), summary)

    result = find_max(behind, 100.0, 1000.0, progress=lambda line: None)
    assert result.best is not None and result.best.rate == 100.0
    assert "generator could not offer 200" in result.limited_by

    def both_behind(rate: float, number: int) -> Step:  # the target falls behind too: a normal bisection
        summary = _summary(rate, min(rate, 300.0), valid=rate < 350)
        return Step(rate, unsustainable(summary, {}, (), growing=rate > 300), summary)

    bisected = find_max(both_behind, 100.0, 1000.0, progress=lambda line: None)
    assert bisected.best is not None and 270 <= bisected.best.rate <= 300


def test_find_max_stops_on_anomalies_and_steps_down_when_the_first_rate_fails() -> None:
    def broken(rate: float, number: int) -> Step:
        return Step(rate, [], _summary(rate, rate), anomalies=2)

    assert "anomalies" in find_max(broken, 100.0, 1000.0, progress=lambda line: None).limited_by
    lower = find_max(_fake_target(60.0), 200.0, 1000.0, progress=lambda line: None)
    assert lower.best is not None and 50 <= lower.best.rate <= 60
