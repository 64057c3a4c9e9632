"""``taskqueue-harness``: the toolkit's command line (also ``python -m pytest_taskqueue.cli``).

Commands, one module each:

- ``up`` (``cli/up.py``): start the reference stack, print its endpoints, run until Ctrl-C.
- ``install`` (``cli/install.py``): fetch and build the local backends into the cache.
- ``chaos`` and ``check`` (``cli/chaos.py``): a seeded chaos run and its history check, and the
  check of a saved history (docs/faults.md).
- ``load`` (``cli/load.py``): an open-loop load run or ``--find-max``, checked for correctness,
  with JSON and HTML reports (docs/load.md; exit 4 an SLO broken, 5 the generator fell behind).

Exit status: 0 success, 1 failure (a stack that failed or crashed; anomalies for ``chaos`` and
``check``), 2 usage error, 3 the chaos run could not be carried out, 128 + signal number when a
signal (SIGINT: 130, SIGTERM: 143) stopped a command while it started things; everything started
is stopped first. The constants are in ``cli/_common.py``, with the helpers every command shares.

Adding a command: write ``cli/<name>.py`` with two functions and add the module to ``COMMANDS``:

- ``add_parser(subparsers) -> None``: add the command's parser to ``subparsers`` and end with
  ``parser.set_defaults(run=run)``; a module may add a companion command the same way
  (``chaos`` adds ``check`` with ``run=run_check``);
- ``run(args) -> int``: carry the command out and return its exit status; report errors through
  ``_common.error`` (one line ``taskqueue-harness: error: ...``).

Commands import what they drive (stacks, backends, the chaos engine) inside ``run``, so building
the parser stays cheap.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

from pytest_taskqueue.cli import _common, chaos, install, load, up

__all__ = ["COMMANDS", "build_parser", "main", "version"]

COMMANDS: tuple[ModuleType, ...] = (up, install, chaos, load)
"""The command modules, in the order ``--help`` lists their commands."""

_DISTRIBUTION = "pytest-taskqueue"


def version() -> str:
    """The installed distribution's version, else the source tree's pyproject.toml, else ``unknown``."""
    try:
        return importlib.metadata.version(_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        pass
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    try:
        project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
        return str(project["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


def _docs_epilog() -> str:
    source = Path(__file__).resolve().parents[2]
    where = f" ({source})" if (source / "docs").is_dir() else ""
    return (
        f"Documentation: README.md and docs/ of the {_DISTRIBUTION} source{where}; "
        "docs/faults.md for chaos and check, docs/docker.md for --backend docker."
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``taskqueue-harness`` parser with every command of ``COMMANDS``."""
    parser = argparse.ArgumentParser(
        prog=_common.PROG,
        description="pytest-taskqueue's harness: run the reference stack and related tools.",
        epilog=_docs_epilog(),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``taskqueue-harness``; returns the exit status (2 for a usage error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, or a usage error already printed by argparse
        code = exit_.code
        return code if isinstance(code, int) else (_common.EXIT_OK if code is None else _common.EXIT_USAGE)
    run: Callable[[argparse.Namespace], int] = args.run
    return run(args)
