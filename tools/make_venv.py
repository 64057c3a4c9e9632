"""Make the project-local virtual environment the Makefile runs in (``python3 tools/make_venv.py .venv``).

Standard library only: it runs on whatever ``python3`` the machine has, before anything is installed.

- A venv that already has pip is left as it is.
- The interpreter must be Python 3.11 or newer (pyproject.toml's ``requires-python``).
- ``python3 -m venv`` makes it. A Debian or Ubuntu system Python is fine (PEP 668's
  "externally managed" mark concerns its own site-packages, not a venv), but without Debian's
  ``python3-venv`` package it has no ``ensurepip``; then the venv is made ``--without-pip`` and pip
  is installed into it from its wheel on PyPI (the wheel runs itself: ``python pip.whl/pip``),
  checked against the SHA-256 that PyPI lists. Nothing is installed into the system Python.

Each step prints a line, so a first run is never silent.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request

MIN_PYTHON = (3, 11)
PIP_JSON_URL = "https://pypi.org/pypi/pip/json"


def say(text: str) -> None:
    print(f"make_venv: {text}", flush=True)


def has_pip(python: pathlib.Path) -> bool:
    """True when ``python -m pip`` runs."""
    if not python.exists():
        return False
    done = subprocess.run([python, "-m", "pip", "--version"], capture_output=True, check=False)
    return done.returncode == 0


def fetch_pip_wheel(folder: pathlib.Path) -> pathlib.Path:
    """Download the newest pip wheel from PyPI into ``folder``, its SHA-256 checked."""
    with urllib.request.urlopen(PIP_JSON_URL, timeout=60) as answer:
        release = json.load(answer)
    wheels = [item for item in release["urls"] if item["packagetype"] == "bdist_wheel"]
    if not wheels:
        raise SystemExit(f"make_venv: PyPI lists no pip wheel for pip {release['info']['version']}")
    wheel = wheels[0]
    target = folder / wheel["filename"]
    say(f"downloading {wheel['filename']} from PyPI ({wheel['size'] // 1024} KiB)...")
    url = urllib.parse.urljoin(PIP_JSON_URL, wheel["url"])  # a mirror may answer with relative links
    with urllib.request.urlopen(url, timeout=120) as answer:
        data = answer.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != wheel["digests"]["sha256"]:
        raise SystemExit(f"make_venv: {wheel['filename']}: SHA-256 {digest} is not PyPI's")
    target.write_bytes(data)
    return target


def make(venv: pathlib.Path) -> None:
    """Make ``venv`` with pip in it (see the module doc)."""
    python = venv / "bin" / "python"
    if has_pip(python):
        return
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info[:2] < MIN_PYTHON:
        raise SystemExit(
            f"make_venv: {sys.executable} is Python {version}; pytest-taskqueue needs "
            f"{'.'.join(map(str, MIN_PYTHON))} or newer (run make with PYTHON=python3.11 or newer)"
        )
    say(f"creating the virtual environment {venv} with {sys.executable} (Python {version})...")
    shutil.rmtree(venv, ignore_errors=True)
    made = subprocess.run([sys.executable, "-m", "venv", venv], capture_output=True, text=True, check=False)
    if made.returncode == 0 and has_pip(python):
        return
    said = " ".join((made.stdout + made.stderr).split())
    first = [said.partition(".")[0]] if said else []
    say(
        f"python -m venv could not install pip ({first[0] if first else 'no ensurepip'}); "
        "making the venv without pip and installing pip from PyPI instead"
    )
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    with tempfile.TemporaryDirectory() as scratch:
        wheel = fetch_pip_wheel(pathlib.Path(scratch))
        subprocess.run(
            [
                python,
                f"{wheel}/pip",
                "install",
                "--no-index",
                "--disable-pip-version-check",
                "--quiet",
                wheel,
            ],
            check=True,
        )
    if not has_pip(python):
        raise SystemExit(f"make_venv: pip does not run in {venv} after installing it")
    say(f"pip installed into {venv}")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python3 tools/make_venv.py VENV", file=sys.stderr)
        return 2
    make(pathlib.Path(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
