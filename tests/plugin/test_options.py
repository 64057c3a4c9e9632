"""Options: each bad value is a usage error naming its option; sources and precedence; no side effects."""

from __future__ import annotations

import pathlib

import pytest

_SHOW_CONFIG = """
def test_show(taskqueue_config):
    c = taskqueue_config
    print("CONFIG", c.target, c.timeout, c.connect_timeout, c.strict, c.token, c.worker_id)
"""


@pytest.mark.parametrize(
    ("args", "option", "detail"),
    [
        (["--taskqueue-target=localhost"], "--taskqueue-target", "is not HOST:PORT"),
        (["--taskqueue-target=localhost:99999"], "--taskqueue-target", "port 99999 * is out of range*"),
        (["--taskqueue-target=localhost:0"], "--taskqueue-target", "port 0 * is out of range*"),
        (["--taskqueue-target=:50051"], "--taskqueue-target", "is not HOST:PORT"),
        (["--taskqueue-target=http://x:1"], "--taskqueue-target", "is not HOST:PORT"),
        (["--taskqueue-timeout=0"], "--taskqueue-timeout", "is not a positive number"),
        (["--taskqueue-timeout=-3"], "--taskqueue-timeout", "is not a positive number"),
        (["--taskqueue-timeout=soon"], "--taskqueue-timeout", "is not a positive number"),
        (["--taskqueue-timeout=inf"], "--taskqueue-timeout", "is not a positive number"),
        (["--taskqueue-connect-timeout=0"], "--taskqueue-connect-timeout", "is not a positive number"),
        (["--taskqueue-tls-ca=missing-ca.pem"], "--taskqueue-tls-ca", "is not a file"),
        (["--taskqueue-report=report.md"], "--taskqueue-report", "Markdown twin"),
        (["--taskqueue-token= "], "--taskqueue-token", "non-empty"),
    ],
)
def test_bad_value_is_a_usage_error_naming_the_option(
    inner: pytest.Pytester, args: list[str], option: str, detail: str
) -> None:
    inner.makepyfile("def test_a(): pass")
    result = inner.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {option}: *{detail}*"])


def test_report_folder_that_cannot_be_created_is_a_usage_error(inner: pytest.Pytester) -> None:
    inner.makepyfile("def test_a(): pass")
    blocker = inner.path / "not-a-folder"
    blocker.write_text("a file where the report folder should be")
    result = inner.runpytest(f"--taskqueue-report={blocker / 'report.json'}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --taskqueue-report: cannot create folder*"])


def test_ca_file_without_a_certificate_is_a_usage_error(inner: pytest.Pytester) -> None:
    inner.makepyfile("def test_a(): pass")
    (inner.path / "ca.pem").write_text("not a certificate")
    result = inner.runpytest("--taskqueue-tls-ca=ca.pem")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --taskqueue-tls-ca: *holds no PEM certificate*"])


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "TASKQUEUE_TARGET",
            "no-port-here",
            "environment variable TASKQUEUE_TARGET: 'no-port-here' is not HOST:PORT*",
        ),
        ("TASKQUEUE_TARGET", "garbage", "environment variable TASKQUEUE_TARGET: 'garbage' is not HOST:PORT*"),
        ("TASKQUEUE_TIMEOUT", "soon", "environment variable TASKQUEUE_TIMEOUT: 'soon' is not a positive*"),
        ("TASKQUEUE_BACKEND", "cloud", "environment variable TASKQUEUE_BACKEND: 'cloud' is not one of*"),
        (
            "TASKQUEUE_WORKER_CMD",
            "./w",
            "environment variable TASKQUEUE_WORKER_CMD: needs --taskqueue-target-cmd*",
        ),
    ],
)
def test_bad_value_from_the_environment_names_the_variable(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    inner.makepyfile("def test_a(): pass")
    monkeypatch.setenv(variable, value)
    result = inner.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])


def test_bad_value_from_the_ini_file_names_the_key(inner: pytest.Pytester) -> None:
    inner.makeini(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\ntaskqueue_target = localhost:70000\n"
    )
    inner.makepyfile("def test_a(): pass")
    result = inner.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: taskqueue_target (in tox.ini): port 70000 * is out of range (1-65535)"]
    )


def test_target_cmd_from_the_environment_beside_a_target_names_both(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    inner.makepyfile("def test_a(): pass")
    monkeypatch.setenv("TASKQUEUE_TARGET_CMD", "./my-server --port {port}")
    result = inner.runpytest("--taskqueue-target=127.0.0.1:50051")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: environment variable TASKQUEUE_TARGET_CMD: give either it * or --taskqueue-target *"]
    )
    monkeypatch.setenv("TASKQUEUE_TARGET_CMD", "./my-server")
    result = inner.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: environment variable TASKQUEUE_TARGET_CMD: *{port}*"])


def test_defaults(inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TASKQUEUE_TARGET", "TASKQUEUE_TIMEOUT", "TASKQUEUE_TOKEN", "TASKQUEUE_STRICT"):
        monkeypatch.delenv(name, raising=False)
    inner.makepyfile(_SHOW_CONFIG)
    result = inner.runpytest("-s")
    result.stdout.fnmatch_lines(["*CONFIG None 60.0 15.0 False None main"])


def test_command_line_beats_environment_beats_ini(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    inner.makeini(
        """
        [pytest]
        asyncio_default_fixture_loop_scope = function
        taskqueue_target = ini-host:1
        taskqueue_timeout = 7
        taskqueue_strict = true
        """
    )
    inner.makepyfile(show=_SHOW_CONFIG)
    monkeypatch.delenv("TASKQUEUE_TARGET", raising=False)
    monkeypatch.setenv("TASKQUEUE_TIMEOUT", "9")
    monkeypatch.setenv("TASKQUEUE_TOKEN", "from-env")
    inner.runpytest("-s", "show.py").stdout.fnmatch_lines(["*CONFIG ini-host:1 9.0 15.0 True from-env main"])
    monkeypatch.setenv("TASKQUEUE_TARGET", "env-host:2")
    inner.runpytest("-s", "show.py").stdout.fnmatch_lines(["*CONFIG env-host:2 9.0 15.0 True from-env main"])
    result = inner.runpytest(
        "-s", "show.py", "--taskqueue-target=[::1]:3", "--taskqueue-timeout=0.5", "--taskqueue-token=cli"
    )
    assert "CONFIG [::1]:3 0.5 15.0 True cli main" in result.stdout.str()  # [ ] would be a glob class


def test_options_are_in_one_help_group(inner: pytest.Pytester) -> None:
    result = inner.runpytest("--help")
    result.stdout.fnmatch_lines(
        [
            "conformance testing of taskqueue.v1 services (pytest-taskqueue):",
            "  --taskqueue-target=HOST:PORT",
            "*",
            "  --taskqueue-timeout=SECONDS",
        ]
    )
    for option in (
        "--taskqueue-report=PATH",
        "--taskqueue-tls-ca=PATH",
        "--taskqueue-token=TOKEN",
        "--taskqueue-strict",
    ):
        assert option in result.stdout.str()


def test_plain_runs_are_left_alone(inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without taskqueue options nothing is added: no header line, no summary section, no report."""
    monkeypatch.delenv("TASKQUEUE_TARGET", raising=False)
    inner.makepyfile("def test_a(): pass\ndef test_b(): assert False")
    result = inner.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    assert "taskqueue:" not in result.stdout.str()
    assert "taskqueue conformance" not in result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_report_folder_is_created(inner: pytest.Pytester) -> None:
    inner.makepyfile("import pytest\n@pytest.mark.lifecycle\ndef test_a(): pass")
    result = inner.runpytest("--taskqueue-report=out/deeper/report.json")
    assert result.ret == 6  # PARTIAL: this one scenario is not the bundled catalogue
    assert pathlib.Path(inner.path, "out/deeper/report.json").is_file()
    assert pathlib.Path(inner.path, "out/deeper/report.md").is_file()
