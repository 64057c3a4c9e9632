"""A user's install: the wheel built from this repository, in a fresh venv, run from an empty folder.

This is the README's "Testing your own implementation" path end to end: ``python -m build``
builds the wheel from the repository's files, a new virtual environment installs it (its
dependencies from PyPI, as a user's would), and ``pytest --taskqueue-target`` in an empty folder
runs the bundled suite against the conforming in-memory server. The run must pass and print no
warning, and leave nothing in the folder but pytest's own cache.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
from collections.abc import Callable

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
_INSTALL_TIMEOUT_S = 1800.0  # a cold pip cache downloads grpcio, moto and friends


def _run(args: list[str | pathlib.Path], cwd: pathlib.Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=_INSTALL_TIMEOUT_S
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{output[-4000:]}"
    return output


def _source_copy(folder: pathlib.Path) -> pathlib.Path:
    """The repository's tracked files (as in the work tree), so the build leaves no trace in it."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, folder / name)
    return folder


@pytest.fixture(scope="module")
def installed_venv(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A fresh venv with only the built wheel (and its dependencies) installed."""
    if shutil.which("git") is None:
        pytest.skip("needs git to list the repository's files")
    work = tmp_path_factory.mktemp("wheel")
    env = {name: value for name, value in os.environ.items() if not name.startswith(("PYTHON", "TASKQUEUE_"))}
    source = _source_copy(work / "source")
    _run([sys.executable, "-m", "build", "--wheel", "--outdir", work / "dist", source], work, env)
    wheels = sorted((work / "dist").glob("pytest_taskqueue-*.whl"))
    assert len(wheels) == 1, wheels
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", venv], work, env)
    _run(
        [venv / "bin" / "python", "-m", "pip", "install", "--disable-pip-version-check", wheels[0]], work, env
    )
    return venv


def test_wheel_in_a_fresh_venv_passes_against_a_target_from_an_empty_folder(
    installed_venv: pathlib.Path, inmemory_server: Callable[..., str], tmp_path: pathlib.Path
) -> None:
    target = inmemory_server()
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {name: value for name, value in os.environ.items() if not name.startswith(("PYTHON", "TASKQUEUE_"))}
    env["PATH"] = f"{installed_venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(
        ["pytest", f"--taskqueue-target={target}", "--taskqueue-report=report.json"],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=_INSTALL_TIMEOUT_S,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert f"rootdir: {empty}" in output, output[:2000]
    assert "taskqueue verdict: CONFORMING" in output, output[-3000:]
    assert "taskqueue report: " in output and str(empty / "report.json") in output
    warnings = [line for line in output.splitlines() if "Warning" in line or "warnings summary" in line]
    assert not warnings, warnings
    assert "benchmark" not in output  # no pytest-benchmark header: not a dependency
    assert sorted(path.name for path in empty.iterdir()) == [".pytest_cache", "report.json", "report.md"]


def test_the_wheel_carries_the_bundled_suite_and_the_plugin(installed_venv: pathlib.Path) -> None:
    """The entry point and the scenarios come from the wheel, not from this checkout."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("PYTHON", "TASKQUEUE_"))}
    probe = (
        "import importlib.metadata as m, scenarios, pytest_taskqueue; "
        "print([e.value for e in m.entry_points(group='pytest11') if e.name == 'taskqueue']); "
        "print(scenarios.__file__); print(pytest_taskqueue.__file__)"
    )
    output = _run([installed_venv / "bin" / "python", "-c", probe], installed_venv, env)
    lines = output.splitlines()
    assert lines[0] == "['pytest_taskqueue.plugin']", output
    assert all(str(installed_venv) in line for line in lines[1:]), output
