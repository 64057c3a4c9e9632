"""The import rules of docs/architecture.md, checked on the source of every module.

Walks the AST of every module of the project's packages and collects each import, at module level
and inside functions alike (a lazy import is still a dependency), then checks:

- no cycle among the modules (imports under ``if TYPE_CHECKING:`` are left out here: they never
  run, and annotations may name a type from anywhere);
- imports go one way: scenarios -> pytest_taskqueue -> fault_injection -> the leaves
  (taskqueue_contract -> taskqueue_proto); reference_server imports only the leaves;
- scenarios use only the public ``pytest_taskqueue`` API, never a ``pytest_taskqueue._private`` module.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

LEAVES = ("taskqueue_proto", "taskqueue_contract")
RANK = {
    "taskqueue_proto": 0,
    "taskqueue_contract": 1,
    "fault_injection": 2,
    "pytest_taskqueue": 3,
    "scenarios": 4,
}
"""A package may import packages of lower rank (and itself); reference_server stands apart."""
PACKAGES = (*RANK, "reference_server")


@dataclass(frozen=True)
class Import:
    """One import statement's target inside the project."""

    source: str
    target: str
    line: int
    type_checking: bool

    def where(self) -> str:
        return f"{self.source}:{self.line} imports {self.target}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        folder = ROOT / package
        if not (folder / "__init__.py").is_file():
            continue  # taskqueue_contract is optional
        for path in sorted(folder.rglob("*.py")):
            found[_module_name(path)] = path
    return found


MODULES = _modules()


def _known(name: str) -> str | None:
    """The project module ``name`` is, or the nearest package of it that is; None outside the project."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, type_checking: bool = False) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import under ``node``, with whether it sits in an ``if TYPE_CHECKING:`` block."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, type_checking
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for statement in child.body:
                yield from _walk(ast.Module(body=[statement], type_ignores=[]), True)
            for statement in child.orelse:
                yield from _walk(ast.Module(body=[statement], type_ignores=[]), type_checking)
        else:
            yield from _walk(child, type_checking)


def _imports_of(module: str, path: Path) -> Iterator[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node, type_checking in _walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from a import b``: the module a.b when there is one, else a itself.
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names
            ]
        for name in names:
            target = _known(name)
            if target is not None and target != module:
                yield Import(module, target, node.lineno, type_checking)


IMPORTS = [found for module, path in MODULES.items() for found in _imports_of(module, path)]


def _top(module: str) -> str:
    return module.partition(".")[0]


def _cycles() -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for found in IMPORTS:
        if not found.type_checking:
            graph[found.source].add(found.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _allowed(source: str, target: str) -> bool:
    a, b = _top(source), _top(target)
    if a == b:
        return True
    if a == "reference_server":
        return b in LEAVES
    if b == "reference_server":
        return False
    return RANK[a] > RANK[b]


def test_the_walk_sees_the_project() -> None:
    expected = {"pytest_taskqueue.plugin", "fault_injection.chaos", "scenarios.faults", "reference_server"}
    assert expected <= set(MODULES)
    assert any(i.source == "pytest_taskqueue.cli" and i.target == "pytest_taskqueue.cli.up" for i in IMPORTS)


def test_no_import_cycle() -> None:
    cycles = _cycles()
    details = [
        " <-> ".join(component)
        + ": "
        + "; ".join(
            i.where()
            for i in IMPORTS
            if i.source in component and i.target in component and not i.type_checking
        )
        for component in cycles
    ]
    assert not cycles, "import cycles:\n" + "\n".join(details)


def test_imports_go_one_way() -> None:
    wrong = [i.where() for i in IMPORTS if not _allowed(i.source, i.target)]
    assert not wrong, (
        "imports against scenarios -> pytest_taskqueue -> fault_injection -> leaves "
        "(reference_server: leaves only):\n" + "\n".join(wrong)
    )


def test_scenarios_use_only_the_public_plugin_api() -> None:
    private = [
        i.where()
        for i in IMPORTS
        if _top(i.source) == "scenarios"
        and _top(i.target) == "pytest_taskqueue"
        and any(part.startswith("_") for part in i.target.split(".")[1:])
    ]
    assert not private, "scenarios import private pytest_taskqueue modules:\n" + "\n".join(private)


@pytest.mark.parametrize(
    ("source", "target", "allowed"),
    [
        ("scenarios.faults", "pytest_taskqueue", True),
        ("pytest_taskqueue._stack", "fault_injection", True),
        ("fault_injection.chaos", "taskqueue_proto.taskqueue_pb2", True),
        ("taskqueue_contract", "taskqueue_proto", True),
        ("reference_server.app", "taskqueue_proto", True),
        ("fault_injection.chaos", "pytest_taskqueue.cli", False),
        ("pytest_taskqueue.plugin", "scenarios", False),
        ("taskqueue_proto", "fault_injection", False),
        ("reference_server.app", "pytest_taskqueue", False),
        ("pytest_taskqueue._stack", "reference_server", False),
    ],
)
def test_the_rule_itself(source: str, target: str, allowed: bool) -> None:
    assert _allowed(source, target) is allowed
