"""Tests of ``ensure_toxiproxy`` with a stand-in ``go`` (fast), run by the toolkit's build runner.

The stand-in is a shell script that counts its calls and writes an executable ``server`` into
``$GOBIN``; it lets the tests check the lock and the error paths without compiling anything, and
that a build whose harness is SIGKILLed does not go on orphaned.
"""

from __future__ import annotations

import functools
import os
import pathlib
import signal
import stat
import subprocess
import sys
import threading

import pytest

import pytest_taskqueue._backends as backends
from fault_injection import TOXIPROXY_VERSION, Backoff, ToxiproxyInstallError
from fault_injection import ensure_toxiproxy as ensure_with
from pytest_taskqueue._procs import read_process
from tests.process_tools import poll_until, still_running

ensure_toxiproxy = functools.partial(ensure_with, run=backends.run_go_build)
"""As the toolkit calls it: the build is a supervised process (``pytest_taskqueue._backends``)."""

_FAKE_GO = """#!/bin/sh
echo call >> "{calls}"
{body}
"""
_BUILD_OK = 'printf "#!/bin/sh\\necho fake\\n" > "$GOBIN/server" && chmod +x "$GOBIN/server"'


def _install_fake_go(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, body: str) -> pathlib.Path:
    """Put a fake ``go`` first on PATH; return the file that records each call."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    go = bin_dir / "go"
    go.write_text(_FAKE_GO.format(calls=calls, body=body))
    go.chmod(go.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


def test_builds_once_and_reuses_the_binary(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = _install_fake_go(tmp_path, monkeypatch, _BUILD_OK)
    cache = tmp_path / "cache"

    first = ensure_toxiproxy(cache)
    second = ensure_toxiproxy(cache)

    assert first == second == cache / f"toxiproxy-{TOXIPROXY_VERSION}" / "toxiproxy-server"
    assert os.access(first, os.X_OK)
    assert calls.read_text().count("call") == 1
    err = capsys.readouterr().err
    assert err.count("building Toxiproxy v2.12.0 with go install (first run only)...") == 1


def test_a_long_build_prints_progress(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each package ``go install -v`` names counts; a line goes out every interval (here: every poll)."""
    monkeypatch.setattr(backends, "_PROGRESS_EVERY_S", 0.0)
    release = tmp_path / "release"
    body = (
        'case "$*" in *" -v "*) ;; *) exit 9 ;; esac; echo pkg/a >&2; echo pkg/b >&2; '
        f'while [ ! -e "{release}" ]; do sleep 0.05; done; ' + _BUILD_OK
    )
    _install_fake_go(tmp_path, monkeypatch, body)
    building = threading.Thread(target=ensure_toxiproxy, args=(tmp_path / "cache",))
    building.start()
    seen = ""
    backoff = Backoff(60, first=0.05, cap=0.5)
    while "still building Toxiproxy: 2 packages so far" not in seen and backoff.sleep():
        seen += capsys.readouterr().err
    release.touch()
    building.join(60)
    assert "still building Toxiproxy: 2 packages so far" in seen, seen


def test_a_binary_built_without_the_version_is_rebuilt_once(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _install_fake_go(tmp_path, monkeypatch, _BUILD_OK)
    cache = tmp_path / "cache"
    old = cache / f"toxiproxy-{TOXIPROXY_VERSION}" / "toxiproxy-server"
    old.parent.mkdir(parents=True)
    old.write_text("#!/bin/sh\necho old\n")  # an older toolkit's build: no stamp
    old.chmod(0o755)

    assert ensure_toxiproxy(cache) == old
    assert ensure_toxiproxy(cache) == old
    assert calls.read_text().count("call") == 1
    assert "fake" in old.read_text()


def test_concurrent_callers_build_once(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _install_fake_go(tmp_path, monkeypatch, _BUILD_OK)
    cache = tmp_path / "cache"
    results: list[pathlib.Path] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def call() -> None:
        start.wait()
        try:
            results.append(ensure_toxiproxy(cache))
        except BaseException as exc:  # collected and asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors
    assert len(set(results)) == 1 and len(results) == 4
    assert calls.read_text().count("call") == 1


def test_missing_go_says_what_to_install(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))

    with pytest.raises(ToxiproxyInstallError, match="install Go") as info:
        ensure_toxiproxy(tmp_path / "cache")

    assert "\n" not in str(info.value)


def test_failed_build_reports_command_and_output(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install_fake_go(tmp_path, monkeypatch, 'echo "module lookup disabled" >&2; exit 1')
    cache = tmp_path / "cache"

    with pytest.raises(ToxiproxyInstallError, match="module lookup disabled") as info:
        ensure_toxiproxy(cache)

    assert "go install '-ldflags=-X github.com/Shopify/toxiproxy/v2.Version=2.12.0' " in str(info.value)
    assert "github.com/Shopify/toxiproxy/v2/cmd/server@v2.12.0" in str(info.value)
    assert not (cache / f"toxiproxy-{TOXIPROXY_VERSION}" / "toxiproxy-server").exists()


_ORPHAN_PROBE = """
import sys
from pathlib import Path
from pytest_taskqueue._backends import ensure_toxiproxy_binary
ensure_toxiproxy_binary(Path(sys.argv[1]))
"""


def test_a_build_dies_with_its_harness(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGKILL the process that runs the build: the build (parent-death signal) goes too."""
    pid_file = tmp_path / "go.pid"
    body = f'echo $$ > "{pid_file}.tmp"; mv "{pid_file}.tmp" "{pid_file}"; exec sleep 300'
    _install_fake_go(tmp_path, monkeypatch, body)
    harness = subprocess.Popen(
        [sys.executable, "-c", _ORPHAN_PROBE, str(tmp_path / "cache")],
        cwd=pathlib.Path(__file__).resolve().parents[2],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        poll_until(lambda: pid_file.exists() or harness.poll() is not None, 60, "the stand-in go started")
        assert pid_file.exists(), f"the stand-in go never started (harness exit {harness.poll()})"
        build = read_process(int(pid_file.read_text()))
        assert build is not None and still_running(build)
        harness.send_signal(signal.SIGKILL)
        harness.wait(30)
        try:
            poll_until(lambda: not still_running(build), 30, f"go install (pid {build.pid}) gone")
        finally:
            if still_running(build):  # the failure's orphan: not left behind by the test
                os.kill(build.pid, signal.SIGKILL)
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait()
