"""``taskqueue-harness`` itself: --version, --help, usage errors, and the command-module pattern."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_taskqueue import cli
from pytest_taskqueue.cli import _common


def test_version_names_the_installed_distribution(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert (
        capsys.readouterr().out.strip()
        == f"taskqueue-harness {importlib.metadata.version('pytest-taskqueue')}"
    )


def test_version_falls_back_to_pyproject(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    assert cli.version() == "0.1.0"


def test_help_lists_every_command_and_ends_with_the_docs(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("up", "install", "chaos", "check"):
        assert f"    {command} " in out
    words = " ".join(out.split())
    assert words.endswith("docs/faults.md for chaos and check, docs/docker.md for --backend docker.")
    assert "Documentation: README.md and docs/ of the pytest-taskqueue source" in words


def test_module_entry_point_runs_main() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest_taskqueue.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout.startswith("taskqueue-harness "), done.stderr


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["bogus"], "invalid choice: 'bogus'"),
        (["up", "--port", "70000"], "argument --port: must be in 0..65535"),
        (["up", "--start-timeout", "0"], "argument --start-timeout: must be > 0, got 0.0"),
        (["chaos", "--seed", "-1"], "argument --seed: must be >= 0, got -1"),
        (["chaos", "--duration", "x"], "argument --duration: not a number: 'x'"),
        (
            ["chaos", "--min-ack-fraction", "1.5"],
            "argument --min-ack-fraction: must be between 0 and 1, got 1.5",
        ),
        (["load", "--rate", "inf"], "argument --rate: must be a finite number, got inf"),
        (["load", "--warmup", "-1"], "argument --warmup: must be >= 0, got -1.0"),
        (["load", "--connections", "0"], "argument --connections: must be >= 1, got 0"),
        (["load", "--processes", "1.5"], "argument --processes: not an integer: '1.5'"),
    ],
)
def test_usage_errors_exit_2_naming_the_argument(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == _common.EXIT_USAGE
    assert expected in capsys.readouterr().err


def test_every_command_module_follows_the_pattern() -> None:
    for module in cli.COMMANDS:
        assert callable(module.add_parser) and callable(module.run), module.__name__
    parser = cli.build_parser()
    args = parser.parse_args(["install", "--no-warm"])
    assert args.run is cli.install.run
    assert parser.parse_args(["check", "h.json"]).run is cli.chaos.run_check


def test_a_signal_exit_status_is_128_plus_its_number() -> None:
    import signal

    assert _common.exit_status_of_signal(signal.SIGINT) == 130
    assert _common.Interrupted(signal.SIGTERM).exit_status == 143


def test_a_failed_start_is_described_on_one_line(tmp_path: Path) -> None:
    from pytest_taskqueue._docker import DockerUnavailableError
    from pytest_taskqueue._errors import UserMessageError
    from pytest_taskqueue._procs import BackendStartError

    started = BackendStartError("moto", "exited with code 1", log_path=tmp_path / "moto.log", log_tail="boom")
    assert (
        _common.describe_failure(started, tmp_path) == f"moto: exited with code 1 | log: {tmp_path}/moto.log"
    )
    # Written for the user already (a type, not a "taskqueue: " prefix, says so): shown as it is.
    no_daemon = DockerUnavailableError("unix:///nowhere: refused")
    assert isinstance(no_daemon, UserMessageError)
    assert _common.describe_failure(no_daemon, tmp_path).startswith(
        "docker backend selected but no Docker daemon"
    )
    looks_like_one = RuntimeError("taskqueue: but not a UserMessageError\nsecond line")
    assert (
        _common.describe_failure(looks_like_one, tmp_path)
        == f"RuntimeError: taskqueue: but not a UserMessageError (logs: {tmp_path})"
    )
