"""The rule coverage matrix: each MUST section of docs/spec.md, the required scenarios that check it,
and the broken servers the suite is shown to catch for it.

    python -m tests.spec_coverage            # rewrite docs/coverage.md
    python -m tests.spec_coverage --check    # exit 1 when docs/coverage.md is not current

Everything comes from the code: the sections come from docs/spec.md (a numbered paragraph, or a
section's text before its first numbered paragraph, "has a MUST" when it says MUST or MUST NOT);
the scenarios from pytest's own collection of the bundled package (their ``spec`` markers,
obligation and ``opt_in``); the breaks from ``BREAKS`` of tests/servers (each names the rules it
breaks as ``(spec X.Y, ...)``) and their ``BROKEN`` rows in tests/suite/test_suite_verdict.py (the
scenarios that must fail against them, or the rules the closing sweep must report). A break covers
a section when it names the section and one of the scenarios that must fail against it is marked
for that section (or the sweep must report a rule of that section).
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import json
import pathlib
import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from typing import Final

ROOT: Final = pathlib.Path(__file__).resolve().parent.parent
SPEC: Final = ROOT / "docs" / "spec.md"
MATRIX: Final = ROOT / "docs" / "coverage.md"

_SECTION = re.compile(r"^## (\d+)\. ")
_PARAGRAPH = re.compile(r"^(\d+\.\d+)\. ")
_MUST = re.compile(r"\bMUST\b")
_SPEC_REF = re.compile(r"\(spec ([0-9][0-9., ]*)\)")
_RULE_SECTION = re.compile(r"^spec ([0-9.]+)")


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One collected bundled scenario, as the report names it."""

    id: str
    obligation: str
    sections: tuple[str, ...]
    opt_in: bool

    @property
    def counts(self) -> bool:
        """Required and run by default: it can keep an implementation from conforming."""
        return self.obligation == "required" and not self.opt_in


@dataclasses.dataclass(frozen=True)
class BreakRow:
    """One break: the sections it names, and what the suite must report against it."""

    name: str
    sections: tuple[str, ...]
    must_fail: tuple[str, ...]
    sweep_rules: tuple[str, ...]


def must_sections(text: str) -> dict[str, str]:
    """Section number -> its first MUST sentence, for every section of the spec that has a MUST."""
    paragraphs: dict[str, list[str]] = {}
    current: str | None = None
    for line in text.splitlines():
        if (heading := _SECTION.match(line)) is not None:
            current = heading.group(1)
        elif (numbered := _PARAGRAPH.match(line)) is not None:
            current = numbered.group(1)
        elif line.startswith("#"):
            continue
        if current is not None:
            paragraphs.setdefault(current, []).append(line)
    musts: dict[str, str] = {}
    for section, lines in paragraphs.items():
        prose = " ".join(" ".join(line for line in lines if not line.lstrip().startswith("|")).split())
        if _MUST.search(prose):
            sentence = next(s for s in re.split(r"(?<=\.)\s+", prose) if _MUST.search(s))
        elif any(_MUST.search(line) for line in lines):
            sentence = f"(the table of {section} says MUST)"
        else:
            continue
        musts[section] = sentence if len(sentence) <= 160 else sentence[:157] + "..."
    return musts


_COLLECT = """
import json, sys
import pytest
from pytest_taskqueue._collect import BUNDLED_KEY, scenario_meta

class Catalogue:
    def __init__(self):
        self.rows = []

    def pytest_collection_modifyitems(self, config, items):
        bundled = config.stash.get(BUNDLED_KEY, None)
        for item in items:
            meta = scenario_meta(item, bundled)
            if meta is not None:
                self.rows.append([meta.id, meta.obligation, list(meta.sections), meta.opt_in])

catalogue = Catalogue()
code = pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "--pyargs", "scenarios"],
                   plugins=[catalogue])
print("CATALOGUE " + json.dumps(catalogue.rows))
sys.exit(int(code))
"""


def scenario_catalogue() -> list[Scenario]:
    """Every bundled scenario, collected by pytest in a child process (markers read as the plugin does)."""
    done = subprocess.run(
        [sys.executable, "-c", _COLLECT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=None,
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("CATALOGUE ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(
            f"collecting the bundled scenarios failed:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}"
        )
    return [
        Scenario(i, o, tuple(s), bool(opt)) for i, o, s, opt in json.loads(line.removeprefix("CATALOGUE "))
    ]


def break_rows() -> list[BreakRow]:
    """Every break of tests/servers with its BROKEN row (a break without one has no expectations)."""
    if str(ROOT) not in sys.path:  # run as a script rather than `python -m tests.spec_coverage`
        sys.path.insert(0, str(ROOT))
    from tests.faults.test_reference_breaks import BROKEN_REFERENCE
    from tests.servers import BREAKS
    from tests.servers.reference_breaks import BREAKS as REFERENCE_BREAKS
    from tests.suite.test_suite_verdict import BROKEN

    # The reference's breaks (rules that need real backends) are named "reference:<break>".
    rows: dict[str, object] = {case.name: case for case in BROKEN}
    rows.update({f"reference:{case.name}": case for case in BROKEN_REFERENCE})
    every = {**BREAKS, **{f"reference:{name}": text for name, text in REFERENCE_BREAKS.items()}}
    result = []
    for name, text in sorted(every.items()):
        sections = tuple(
            part.strip() for ref in _SPEC_REF.findall(text) for part in ref.split(",") if part.strip()
        )
        case = rows.get(name)
        result.append(
            BreakRow(
                name,
                sections,
                _must_fail(case),
                tuple(getattr(case, "sweep_rules", ())) if case else (),
            )
        )
    return result


def _must_fail(case: object) -> tuple[str, ...]:
    """The scenario ids (fnmatch) a BROKEN row expects to fail: one or several."""
    must_fail = getattr(case, "must_fail", ())
    return (must_fail,) if isinstance(must_fail, str) else tuple(must_fail)


def catches(row: BreakRow, section: str, scenarios: Sequence[Scenario]) -> bool:
    """The break names ``section`` and the suite is shown to fail it there: a scenario marked for
    the section must fail against it, or the closing sweep must report a rule of the section."""
    if section not in row.sections:
        return False
    marked = [s.id for s in scenarios if section in s.sections]
    if any(fnmatch.filter(marked, pattern) for pattern in row.must_fail):
        return True
    return any(
        (m := _RULE_SECTION.match(rule)) is not None and m.group(1) == section for rule in row.sweep_rules
    )


@dataclasses.dataclass(frozen=True)
class Coverage:
    """One MUST section of the spec and what checks it."""

    section: str
    must: str
    scenarios: tuple[str, ...]
    breaks: tuple[str, ...]

    @property
    def gap(self) -> str:
        """What is missing: ``""``, ``no required scenario``, ``no break`` or both."""
        missing = [
            *(["no required scenario"] if not self.scenarios else []),
            *(["no break the suite catches"] if not self.breaks else []),
        ]
        return ", ".join(missing)


def _functions(ids: Iterable[str]) -> tuple[str, ...]:
    """Scenario ids without their parameters, each once: ``scenarios/x.py::test_y``."""
    return tuple(dict.fromkeys(i.split("[", 1)[0] for i in ids))


def coverage(
    musts: dict[str, str], scenarios: Sequence[Scenario], breaks: Sequence[BreakRow]
) -> list[Coverage]:
    """One row per MUST section, in spec order."""
    rows = []
    for section, sentence in musts.items():
        marked = _functions(s.id for s in scenarios if s.counts and section in s.sections)
        caught = tuple(row.name for row in breaks if catches(row, section, scenarios))
        rows.append(Coverage(section, sentence, marked, caught))
    return rows


def render(rows: Sequence[Coverage], scenarios: Sequence[Scenario]) -> str:
    """docs/coverage.md."""
    unmarked = [s.id for s in scenarios if not s.sections]
    gaps = [row for row in rows if row.gap]
    lines = [
        "# Rule coverage",
        "",
        "Generated by `python -m tests.spec_coverage` from docs/spec.md, the bundled scenarios' `spec`",
        "markers and the broken servers of tests/servers with their rows in",
        "tests/suite/test_suite_verdict.py; tests/test_spec_coverage.py fails when it is not current.",
        "For every section of docs/spec.md that says MUST: the required scenarios that check it, and the",
        "breaks the suite is shown to fail there (a scenario marked for the section fails against the",
        "break, or the closing sweep reports a rule of the section). Parametrized scenarios are listed once.",
        "",
        f"{len(rows)} MUST sections, {len(rows) - len(gaps)} covered both ways"
        + (f"; not yet: {', '.join(row.section for row in gaps)}." if gaps else "."),
        "",
        "| section | MUST | required scenarios | breaks caught | gap |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        names = "<br>".join(f"`{s.split('::', 1)[-1]}`" for s in row.scenarios) or " "
        lines.append(
            f"| {row.section} | {row.must.replace('|', '/')} | {names} | "
            f"{', '.join(f'`{b}`' for b in row.breaks) or ' '} | {row.gap or ' '} |"
        )
    if unmarked:
        lines += ["", "Scenarios without a `spec` marker: " + ", ".join(f"`{u}`" for u in unmarked)]
    return "\n".join(lines) + "\n"


def build() -> tuple[list[Coverage], list[Scenario], str]:
    """The rows, the catalogue, and the Markdown, from the code as it is now."""
    scenarios = scenario_catalogue()
    rows = coverage(must_sections(SPEC.read_text(encoding="utf-8")), scenarios, break_rows())
    return rows, scenarios, render(rows, scenarios)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.spec_coverage", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/coverage.md is not current")
    args = parser.parse_args(argv)
    _, _, text = build()
    if args.check:
        current = MATRIX.read_text(encoding="utf-8") if MATRIX.exists() else ""
        if current != text:
            print("docs/coverage.md is not current: run python -m tests.spec_coverage", file=sys.stderr)
            return 1
        return 0
    MATRIX.write_text(text, encoding="utf-8")
    print(f"wrote {MATRIX.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
