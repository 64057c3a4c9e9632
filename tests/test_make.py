"""The Makefile's wiring and tools/make_venv.py, the install path of the README's quick start.

The whole quick start (``make conformance`` and ``make test`` from a fresh clone on Debian's
system python3) takes minutes and is run by hand (README, "Quick start"); these tests keep its
parts true: the unit-test list names real files, a failing pytest (exit 5 included) fails make,
and a Debian python without ``ensurepip`` (no ``python3-venv`` package) still gets a venv with pip.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
MAKE_VENV = ROOT / "tools" / "make_venv.py"
DEBIAN_STDLIB = pathlib.Path("/usr/lib/python3.11")
DEBIAN_PYTHON = pathlib.Path("/usr/bin/python3.11")


def _make_variable(name: str) -> list[str]:
    """The words of a ``NAME := ...`` assignment in the Makefile (continuation lines joined)."""
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    match = re.search(rf"^{name} :?= (.*)$", text, re.M)
    assert match, f"no {name} in the Makefile"
    return match[1].split()


def test_unit_test_paths_exist() -> None:
    paths = _make_variable("UNIT_TESTS")
    assert paths
    missing = [path for path in paths if not (ROOT / path).exists()]
    assert not missing, f"make unit names paths that do not exist: {missing}"


@pytest.mark.skipif(shutil.which("make") is None, reason="no make on PATH")
@pytest.mark.parametrize(("pytest_args", "fails"), [("-k no_such_test_anywhere", True), ("", False)])
def test_make_unit_fails_when_pytest_does(tmp_path: pathlib.Path, pytest_args: str, fails: bool) -> None:
    """``make unit`` with an installed venv stand-in: pytest's exit 5 (no test ran) fails make.

    The inner run collects one test of this file by node id, never this one (no recursion).
    """
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".installed").touch()  # newer than pyproject.toml: nothing to install
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [
            *("make", "-C", str(ROOT), "unit", f"VENV={venv}", f"PY={sys.executable}"),
            "UNIT_TESTS=tests/test_make.py::test_unit_test_paths_exist",
            f"PYTEST_ARGS={pytest_args}",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=600,
    )
    output = done.stdout + done.stderr
    if fails:
        assert done.returncode != 0, output
        assert "Error 5" in output, output  # make names the exit status it stopped on
    else:
        assert done.returncode == 0, output
        assert "1 passed" in output, output


def _debian_python_without_ensurepip(folder: pathlib.Path) -> pathlib.Path:
    """Debian's own python3.11 as a machine without ``python3-venv`` has it: no ``ensurepip``.

    The interpreter is copied and its standard library linked, all but ``ensurepip``; Python finds
    its library beside its binary, and Debian's ``venv`` then refuses as it does without the package.
    """
    (folder / "bin").mkdir(parents=True)
    library = folder / "lib" / "python3.11"
    library.mkdir(parents=True)
    python = folder / "bin" / "python3"
    shutil.copy2(DEBIAN_PYTHON, python)
    for entry in DEBIAN_STDLIB.iterdir():
        if entry.name != "ensurepip":
            (library / entry.name).symlink_to(entry)
    return python


@pytest.mark.skipif(
    not (DEBIAN_PYTHON.exists() and (DEBIAN_STDLIB / "EXTERNALLY-MANAGED").exists()),
    reason="needs Debian's system python3.11 (marked externally managed)",
)
def test_debian_python_without_ensurepip_gets_a_venv_with_pip(tmp_path: pathlib.Path) -> None:
    """Real Debian python, real PyPI: the venv is made --without-pip and pip comes from its wheel."""
    python = _debian_python_without_ensurepip(tmp_path / "debian")
    refused = subprocess.run([python, "-m", "venv", tmp_path / "plain"], capture_output=True, text=True)
    assert refused.returncode != 0 and "ensurepip is not" in refused.stdout + refused.stderr
    venv = tmp_path / "venv"
    done = subprocess.run([python, MAKE_VENV, venv], capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "installing pip from PyPI" in done.stdout
    pip = subprocess.run([venv / "bin" / "python", "-m", "pip", "--version"], capture_output=True, text=True)
    assert pip.returncode == 0 and str(venv) in pip.stdout, pip.stdout + pip.stderr
    again = subprocess.run([python, MAKE_VENV, venv], capture_output=True, text=True, check=True)
    assert again.stdout == ""  # a venv with pip is left as it is


def test_too_old_python_is_refused_by_name(tmp_path: pathlib.Path) -> None:
    """The version check names the interpreter and what to run instead."""
    script = (
        "import sys, runpy; sys.version_info = (3, 9, 0, 'final', 0); "
        f"sys.argv = ['make_venv.py', {str(tmp_path / 'venv')!r}]; "
        f"runpy.run_path({str(MAKE_VENV)!r}, run_name='__main__')"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode != 0
    assert "is Python 3.9.0; pytest-taskqueue needs 3.11 or newer" in done.stderr, done.stderr
    assert not (tmp_path / "venv").exists()
