"""The rule coverage matrix (tests/spec_coverage.py, published as docs/coverage.md): every section of
docs/spec.md with a MUST has a required scenario marked for it and a break the suite is shown to
fail there; every bundled scenario declares the sections it checks; the published matrix is current.
"""

from __future__ import annotations

import re

import pytest

from tests import spec_coverage

_MUSTS = spec_coverage.must_sections(spec_coverage.SPEC.read_text(encoding="utf-8"))
_SECTIONS = re.compile(r"^(\d+)(\.\d+)?$")

NOT_YET_COVERED: dict[str, str] = {
}
"""MUST sections not covered both ways yet: their test is a strict xfail, so covering one makes it
XPASS and fails until its line here goes. Never add a line to make the test pass."""


@pytest.fixture(scope="module")
def matrix() -> tuple[list[spec_coverage.Coverage], list[spec_coverage.Scenario], str]:
    return spec_coverage.build()


def test_every_bundled_scenario_declares_the_sections_it_checks(
    matrix: tuple[list[spec_coverage.Coverage], list[spec_coverage.Scenario], str],
) -> None:
    _, scenarios, _ = matrix
    assert scenarios, "no bundled scenario was collected"
    unmarked = [s.id for s in scenarios if not s.sections]
    assert not unmarked, f"scenarios without a spec('X.Y', ...) marker: {unmarked}"
    known = set(_MUSTS) | {h for h in re.findall(r"^(\d+\.\d+)\. ", spec_coverage.SPEC.read_text(), re.M)}
    known |= set(re.findall(r"^## (\d+)\. ", spec_coverage.SPEC.read_text(), re.M))
    unknown = {s.id: [x for x in s.sections if x not in known] for s in scenarios}
    unknown = {scenario: sections for scenario, sections in unknown.items() if sections}
    assert not unknown, f"spec markers naming sections docs/spec.md does not have: {unknown}"


def test_every_break_names_the_rule_it_breaks() -> None:
    rows = spec_coverage.break_rows()
    unnamed = [row.name for row in rows if not row.sections]
    assert not unnamed, f"breaks whose BREAKS text names no '(spec X.Y)': {unnamed}"
    bad = {row.name: row.sections for row in rows if not all(_SECTIONS.match(s) for s in row.sections)}
    assert not bad, bad


def _param(section: str) -> object:
    if section in NOT_YET_COVERED:
        reason = f"spec {section}: {NOT_YET_COVERED[section]}"
        return pytest.param(section, marks=pytest.mark.xfail(strict=True, reason=reason))
    return section


@pytest.mark.parametrize("section", [_param(section) for section in _MUSTS])
def test_every_must_has_a_required_scenario_and_a_break_the_suite_catches(
    matrix: tuple[list[spec_coverage.Coverage], list[spec_coverage.Scenario], str], section: str
) -> None:
    rows, _, _ = matrix
    row = next(row for row in rows if row.section == section)
    assert not row.gap, f"spec {section} ({row.must}): {row.gap}"


def test_not_yet_covered_names_only_must_sections() -> None:
    assert set(NOT_YET_COVERED) <= set(_MUSTS), set(NOT_YET_COVERED) - set(_MUSTS)


def test_published_matrix_is_current(
    matrix: tuple[list[spec_coverage.Coverage], list[spec_coverage.Scenario], str],
) -> None:
    _, _, text = matrix
    current = spec_coverage.MATRIX.read_text(encoding="utf-8")
    assert current == text, "docs/coverage.md is not current: run python -m tests.spec_coverage"
