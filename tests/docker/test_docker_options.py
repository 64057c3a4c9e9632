"""The docker backend's plugin options: values, sources, errors, and the no-daemon stop.

Inner pytest runs (pytester) load the installed plugin as a user's run would. None needs Docker.
"""

from __future__ import annotations

import pathlib

import pytest

_SHOW_CONFIG = """
def test_show(taskqueue_config):
    c = taskqueue_config
    print("CONFIG", c.backend, c.dynamodb_image, c.elasticmq_image, c.toxiproxy_image)
"""


def test_local_is_the_default(inner: pytest.Pytester) -> None:
    inner.makepyfile(_SHOW_CONFIG)
    result = inner.runpytest("-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*CONFIG local None None None*"])


def test_options_from_the_command_line(inner: pytest.Pytester) -> None:
    inner.makepyfile(_SHOW_CONFIG)
    result = inner.runpytest(
        "-s",
        "--taskqueue-backend=docker",
        "--taskqueue-dynamodb-image=amazon/dynamodb-local:2.5.2",
        "--taskqueue-elasticmq-image=e:1",
        "--taskqueue-toxiproxy-image=t:2",
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*CONFIG docker amazon/dynamodb-local:2.5.2 e:1 t:2*"])


def test_environment_beats_ini_and_the_command_line_beats_both(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    inner.makeini(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
        "taskqueue_backend = docker\n"
        "taskqueue_dynamodb_image = from-ini:1\n"
        "taskqueue_toxiproxy_image = ini-t:1\n"
    )
    monkeypatch.setenv("TASKQUEUE_DYNAMODB_IMAGE", "from-env:1")
    inner.makepyfile(_SHOW_CONFIG)
    result = inner.runpytest("-s", "--taskqueue-toxiproxy-image=cli-t:1")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*CONFIG docker from-env:1 None cli-t:1*"])


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--taskqueue-backend=podman"], "ERROR: --taskqueue-backend: 'podman' is not one of: local, docker"),
        (
            ["--taskqueue-dynamodb-image= "],
            "ERROR: --taskqueue-dynamodb-image: ' ' is not an image reference",
        ),
        (
            ["--taskqueue-toxiproxy-image=a b"],
            "ERROR: --taskqueue-toxiproxy-image: 'a b' is not an image reference",
        ),
    ],
)
def test_bad_values_are_usage_errors(inner: pytest.Pytester, args: list[str], line: str) -> None:
    inner.makepyfile("def test_a(): pass")
    result = inner.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([line])


def test_no_daemon_stops_the_run_with_one_line(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    """The harness-owned stack on the docker backend without a daemon: exit 3, the line, no trace."""
    socket_url = f"unix://{tmp_path / 'absent.sock'}"
    monkeypatch.setenv("DOCKER_HOST", socket_url)
    inner.makepyfile("def test_uses_the_stack(taskqueue_target):\n    pass\n")
    result = inner.runpytest_subprocess("--taskqueue-backend=docker")
    assert result.ret == 3
    expected = (
        f"taskqueue: docker backend selected but no Docker daemon answers ({socket_url}: "
        "No such file or directory); use --taskqueue-backend=local"
    )
    output = result.stdout.str() + result.stderr.str()
    assert expected in output
    assert "Traceback" not in output and "docker.errors" not in output
