"""Markers, the bundled suite, and which collected items are conformance scenarios.

A scenario is an item collected from the installed ``scenarios`` package, or any item carrying
an area marker (so an implementation's own extra scenarios are reported too). Its metadata
travels on ``item.user_properties``, which pytest copies into every report: that is how the
pytest-xdist controller, which never sees the items, learns each scenario's area and obligation
(and JUnit XML gets them as properties for free).
"""

from __future__ import annotations

import ast
import dataclasses
import fnmatch
import importlib.metadata
import pathlib
from collections.abc import Iterator
from typing import Final, NoReturn

import pytest

from pytest_taskqueue._options import TaskQueueConfig

__all__ = [
    "AREAS",
    "BUNDLED_KEY",
    "BUNDLED_MARKER",
    "HARNESS_ONLY_REASON",
    "OBLIGATIONS",
    "PROP_AREA",
    "PROP_NOT_RUN",
    "PROP_OBLIGATION",
    "PROP_SCENARIO",
    "PROP_SPEC",
    "SELECTION_KEY",
    "ScenarioMeta",
    "add_bundled_suite",
    "bundled_scenarios_dir",
    "collect_scenario_module",
    "configure",
    "note_selection",
    "register_markers",
    "skip_for_level",
    "snapshot_catalogue",
    "tag_scenarios",
]

AREAS: Final = ("lifecycle", "idempotency", "retry", "dlq", "errors", "watch", "faults", "recovery")
"""The area markers, in the order the report lists them."""

OBLIGATIONS: Final = ("required", "optional")

HARNESS_ONLY_REASON: Final = "needs harness-owned backends: the target's DLQ/worker is not reachable"

PROP_SCENARIO: Final = "taskqueue_scenario"
PROP_AREA: Final = "taskqueue_area"
PROP_OBLIGATION: Final = "taskqueue_obligation"
PROP_SPEC: Final = "taskqueue_spec"
"""The spec sections a scenario checks (its ``spec`` markers), space-separated."""
PROP_NOT_RUN: Final = "taskqueue_not_run"
"""Why a scenario did not run although it was collected: ``level`` (its checks need what this
run's level lacks: harness-owned backends) or ``opt-in`` (an ``opt_in`` scenario not asked for)."""

_MARKERS: Final = {
    "lifecycle": "scenario area: a task's statuses and event history (spec 2, 4)",
    "idempotency": "scenario area: idempotent submits (spec 3)",
    "retry": "scenario area: failed attempts and retries (spec 5)",
    "dlq": "scenario area: the dead-letter queue (spec 5.3, 10.2)",
    "errors": "scenario area: error codes for bad input (spec 9)",
    "watch": "scenario area: WatchTask streaming (spec 8.2)",
    "faults": "scenario area: behaviour under injected network faults (spec 7, 9.2)",
    "recovery": "scenario area: recovery after a worker dies (spec 7.2)",
    "required": "obligation: the scenario must pass for the implementation to conform",
    "optional": "obligation: reported, does not change the verdict unless --taskqueue-strict",
    "harness_only": "skipped against an external target: needs the harness-owned backends or worker",
    "spec(*sections)": "the docs/spec.md sections the scenario checks, e.g. spec('3.3', '2.3')",
    "opt_in": "runs only when its option asks for it; not running it does not count against the verdict",
    "capability(name)": "skipped unless GetServerInfo.capabilities lists name",
}


@dataclasses.dataclass(frozen=True)
class ScenarioMeta:
    """What the report says about one scenario besides its outcome."""

    id: str
    area: str
    obligation: str
    sections: tuple[str, ...] = ()
    opt_in: bool = False


BUNDLED_KEY: Final = pytest.StashKey[pathlib.Path | None]()
"""The bundled package's folder, looked up once per run by ``configure``."""


def configure(config: pytest.Config, options: TaskQueueConfig) -> None:
    """Register the markers, find the bundled package, and add it to a target-only run."""
    register_markers(config)
    config.stash[BUNDLED_KEY] = bundled_scenarios_dir()
    add_bundled_suite(config, options)


def register_markers(config: pytest.Config) -> None:
    """Declare the markers, so that ``--strict-markers`` runs accept them."""
    for name, description in _MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {description}")


BUNDLED_MARKER: Final = "__taskqueue_bundled__"
"""Set to True in the bundled ``scenarios/__init__.py``: what tells it from any other ``scenarios``."""

_DISTRIBUTION: Final = "pytest-taskqueue"


def bundled_scenarios_dir() -> pathlib.Path | None:
    """Folder of this installation's bundled ``scenarios`` package, found without importing it.

    It is looked for beside ``pytest_taskqueue`` (both are top-level packages of one distribution),
    then among the files the installed distribution lists. A folder counts only when its
    ``__init__.py`` sets ``__taskqueue_bundled__ = True``, so a user's own ``scenarios`` package,
    wherever it is on ``sys.path``, is never taken for the bundled suite.
    """
    for folder in _bundled_candidates():
        if _carries_marker(folder / "__init__.py"):
            return folder.resolve()
    return None


def _bundled_candidates() -> Iterator[pathlib.Path]:
    yield pathlib.Path(__file__).resolve().parent.parent / "scenarios"
    try:
        files = importlib.metadata.files(_DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        return
    for file in files:
        if file.parts == ("scenarios", "__init__.py"):
            yield pathlib.Path(str(file.locate())).parent


def _carries_marker(init: pathlib.Path) -> bool:
    """Whether ``init`` assigns ``__taskqueue_bundled__ = True`` at module level (read, not imported)."""
    try:
        tree = ast.parse(init.read_text(encoding="utf-8"), filename=str(init))
    except (OSError, SyntaxError, ValueError):
        return False
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Constant):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if node.value.value is True and any(
                isinstance(target, ast.Name) and target.id == BUNDLED_MARKER for target in targets
            ):
                return True
    return False


def add_bundled_suite(config: pytest.Config, options: TaskQueueConfig) -> None:
    """Add the bundled scenarios to what is collected, when the user named an implementation and no paths.

    ``pytest --taskqueue-target=HOST:PORT`` (or ``--taskqueue-target-cmd=...``) in any folder runs
    the whole suite. Only a run with neither positional arguments nor ``testpaths`` (pytest fell
    back to the current folder) is changed, and the current folder stays collected; a plain
    ``pytest`` naming no implementation is never touched.
    """
    named = options.target is not None or options.target_cmd is not None
    if not named or config.args_source is not pytest.Config.ArgsSource.INVOCATION_DIR:
        return
    folder = config.stash.get(BUNDLED_KEY, None)
    if folder is not None and str(folder) not in config.args:
        config.args.append(str(folder))


def collect_scenario_module(file_path: pathlib.Path, parent: pytest.Collector) -> pytest.Module | None:
    """A ``pytest.Module`` for a public module of the bundled package that pytest would not collect.

    Scenario modules are named by area (``lifecycle.py``), not ``test_*.py``, so that they read as
    a catalogue; this collects them wherever the package is installed. Private modules
    (``_checks.py``), ``conftest.py`` and files ``python_files`` already matches are left alone.
    """
    name = file_path.name
    if file_path.suffix != ".py" or name.startswith("_") or name == "conftest.py":
        return None
    bundled = parent.config.stash.get(BUNDLED_KEY, None)
    if bundled is None or not file_path.resolve().is_relative_to(bundled):
        return None
    if parent.session.isinitpath(file_path):
        return None  # named on the command line: pytest's own python plugin collects it already
    patterns = parent.config.getini("python_files")
    if any(fnmatch.fnmatch(name, pattern) for pattern in patterns):
        return None
    return pytest.Module.from_parent(parent, path=file_path)


def _scenario_id(item: pytest.Item, bundled: pathlib.Path | None) -> str:
    """``scenarios/<file>::<name>`` for bundled scenarios (the same wherever installed), else the nodeid."""
    if bundled is not None:
        try:
            relative = item.path.resolve().relative_to(bundled.parent)
        except ValueError:
            return item.nodeid
        _, _, rest = item.nodeid.partition("::")
        return f"{relative.as_posix()}::{rest}" if rest else relative.as_posix()
    return item.nodeid


def scenario_meta(item: pytest.Item, bundled: pathlib.Path | None) -> ScenarioMeta | None:
    """The item's scenario metadata, or None when it is not a scenario.

    The area is the first area marker found from the item outwards. The obligation is
    ``optional`` only when marked so and not also ``required``: a scenario that forgot its
    obligation counts as required, the safe side for a verdict.
    """
    marker_names = [mark.name for mark in item.iter_markers()]
    area = next((name for name in marker_names if name in AREAS), None)
    in_bundle = bundled is not None and item.path.resolve().is_relative_to(bundled)
    if area is None and not in_bundle:
        return None
    obligation = "optional" if "optional" in marker_names and "required" not in marker_names else "required"
    sections = tuple(
        dict.fromkeys(str(section) for mark in item.iter_markers("spec") for section in mark.args)
    )
    return ScenarioMeta(
        id=_scenario_id(item, bundled),
        area=area or "",
        obligation=obligation,
        sections=sections,
        opt_in="opt_in" in marker_names,
    )


def tag_scenarios(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Record each scenario's metadata on ``item.user_properties`` (carried by every report)."""
    bundled = config.stash.get(BUNDLED_KEY, None)
    for item in items:
        meta = scenario_meta(item, bundled)
        if meta is None:
            continue
        item.user_properties.extend(
            [(PROP_SCENARIO, meta.id), (PROP_AREA, meta.area), (PROP_OBLIGATION, meta.obligation)]
        )
        if meta.sections:
            item.user_properties.append((PROP_SPEC, " ".join(meta.sections)))
        if meta.opt_in:
            item.user_properties.append((PROP_NOT_RUN, "opt-in"))


def skip_for_level(item: pytest.Item | None, reason: str) -> NoReturn:
    """Skip the running scenario because this run's level cannot reach what it checks.

    The report then lists it among the required scenarios this level did not run, instead of
    counting the skip against the verdict (see ``_report.Recorder.verdict``).
    """
    if item is not None:
        item.user_properties.append((PROP_NOT_RUN, "level"))
    pytest.skip(reason)


# -- the catalogue: which required bundled scenarios a narrowed run left out ---------------------


@dataclasses.dataclass
class _Collected:
    """The bundled scenarios collected before ``-m``/``-k`` deselection."""

    required: dict[str, str] = dataclasses.field(default_factory=dict)
    """Required scenario id -> nodeid."""
    modules: set[str] = dataclasses.field(default_factory=set)
    """``scenarios/<module>.py`` of every module with a collected scenario."""


SELECTION_KEY: Final = pytest.StashKey[_Collected]()


def snapshot_catalogue(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Remember the bundled scenarios collected, before anything deselects some of them."""
    bundled = config.stash.get(BUNDLED_KEY, None)
    collected = _Collected()
    for item in items:
        meta = scenario_meta(item, bundled)
        if meta is None or bundled is None or not item.path.resolve().is_relative_to(bundled):
            continue
        collected.modules.add(meta.id.partition("::")[0])
        if meta.obligation == "required" and not meta.opt_in:
            collected.required[meta.id] = item.nodeid
    config.stash[SELECTION_KEY] = collected


def _bundled_modules(bundled: pathlib.Path) -> list[str]:
    """``scenarios/<module>.py`` of every public scenario module of the bundled package."""
    return sorted(
        f"{bundled.name}/{path.name}"
        for path in bundled.glob("*.py")
        if not path.name.startswith("_") and path.name != "conftest.py"
    )


def note_selection(session: pytest.Session) -> list[tuple[str, str]]:
    """The required scenarios of the bundled catalogue this run left out, as (id, why).

    Three ways to leave some out: ``-m``/``-k`` (or another plugin) deselected them; the run named
    paths that do not include a whole scenario module ("not collected"); or it named single
    scenarios of a module (``file.py::test_x``), so the rest of that module was never collected.
    """
    config = session.config
    bundled = config.stash.get(BUNDLED_KEY, None)
    if bundled is None:
        return []
    collected = config.stash.get(SELECTION_KEY, _Collected())
    kept = {item.nodeid for item in session.items}
    left: list[tuple[str, str]] = [
        (scenario, "deselected (-m/-k)")
        for scenario, nodeid in collected.required.items()
        if nodeid not in kept
    ]
    for module in _bundled_modules(bundled):
        if module in collected.modules:
            continue
        left.append((module, "not collected: the run named other paths (every required scenario in it)"))
    named = {arg.partition("::")[0] for arg in config.args if "::" in arg}
    for path in sorted(named):
        resolved = pathlib.Path(config.invocation_params.dir, path).resolve()
        if resolved.is_relative_to(bundled):
            left.append(
                (f"{bundled.name}/{resolved.name}", "narrowed to the scenarios named on the command line")
            )
    return left
