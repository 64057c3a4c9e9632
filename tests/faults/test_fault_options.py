"""--taskqueue-target-cmd, --taskqueue-worker-cmd and the chaos options: templates and usage errors.

Nothing here starts a stack: bad values stop pytest in ``pytest_configure``, and the templates are
checked and filled in without running them.
"""

from __future__ import annotations

import pytest

from pytest_taskqueue._implementation import CommandTemplate, ImplementationCommands, TemplateError

_TARGET = "--taskqueue-target-cmd=./server --port {port}"


@pytest.mark.parametrize(
    ("args", "option", "detail"),
    [
        (
            ["--taskqueue-target-cmd=./srv --port {port} --db {dynamo}"],
            "--taskqueue-target-cmd",
            "*{dynamo}*",
        ),
        (
            ["--taskqueue-target-cmd=./srv --dynamodb {dynamodb}"],
            "--taskqueue-target-cmd",
            "*must contain {port}*",
        ),
        (["--taskqueue-target-cmd=./srv --port {port:d}"], "--taskqueue-target-cmd", "*without a format*"),
        (["--taskqueue-target-cmd=./srv --port {port"], "--taskqueue-target-cmd", "*bad placeholder*"),
        (["--taskqueue-target-cmd=./srv 'open --port {port}"], "--taskqueue-target-cmd", "*cannot split*"),
        (["--taskqueue-target-cmd= "], "--taskqueue-target-cmd", "*empty*"),
        (["--taskqueue-worker-cmd=./worker"], "--taskqueue-worker-cmd", "*needs --taskqueue-target-cmd*"),
        ([_TARGET, "--taskqueue-worker-cmd=./w --port {port}"], "--taskqueue-worker-cmd", "*{port}*"),
        ([_TARGET, "--taskqueue-worker-cmd=./w --x {region} {nope}"], "--taskqueue-worker-cmd", "*{nope}*"),
        ([_TARGET, "--taskqueue-target=127.0.0.1:5"], "--taskqueue-target-cmd", "*not both*"),
        ([_TARGET, "--taskqueue-backend=docker"], "--taskqueue-target-cmd", "*local only*"),
        (["--taskqueue-chaos-seconds=0"], "--taskqueue-chaos-seconds", "*not a positive number*"),
        (["--taskqueue-chaos-seconds=soon"], "--taskqueue-chaos-seconds", "*not a positive number*"),
        (["--taskqueue-chaos-seed=-1"], "--taskqueue-chaos-seed", "*non-negative integer*"),
        (["--taskqueue-chaos-seed=x"], "--taskqueue-chaos-seed", "*non-negative integer*"),
    ],
)
def test_bad_value_is_a_usage_error_naming_the_option(
    inner: pytest.Pytester, args: list[str], option: str, detail: str
) -> None:
    inner.makepyfile("def test_a(): pass")
    result = inner.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {option}: {detail}"])


def test_bad_template_from_the_environment_names_the_variable(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKQUEUE_TARGET_CMD", "./server --port {port} --queue {queues}")
    inner.makepyfile("def test_a(): pass")
    result = inner.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: environment variable TASKQUEUE_TARGET_CMD: unknown placeholder {queues}*"]
    )


def test_values_reach_the_config_without_starting_anything(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        test_show="""
        def test_show(taskqueue_config):
            c = taskqueue_config
            print("CONFIG", repr(c.target_cmd), repr(c.worker_cmd), c.chaos_seconds, c.chaos_seed)
        """
    )
    result = inner.runpytest(
        "test_show.py",  # without a path, the target command would run the bundled suite too
        "-s",
        _TARGET,
        "--taskqueue-worker-cmd=./worker --sqs {sqs}",
        "--taskqueue-chaos-seconds=2.5",
        "--taskqueue-chaos-seed=7",
    )
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*CONFIG './server --port {port}' './worker --sqs {sqs}' 2.5 7"])


def test_chaos_is_off_by_default(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
        def test_show(taskqueue_config):
            assert taskqueue_config.chaos_seconds is None and taskqueue_config.chaos_seed == 0
            assert taskqueue_config.target_cmd is None and taskqueue_config.worker_cmd is None
        """
    )
    assert inner.runpytest().ret == 0


def test_template_fills_each_word_on_its_own() -> None:
    template = CommandTemplate.parse(
        "srv --port={port} --db '{dynamodb}' --name 'tq {table}' {{literal}}",
        "--taskqueue-target-cmd",
        ("port", "dynamodb", "table"),
    )
    assert template.fields == {"port", "dynamodb", "table"}
    argv = template.render({"port": 50051, "dynamodb": "http://127.0.0.1:1 x", "table": "t"})
    assert argv == ["srv", "--port=50051", "--db", "http://127.0.0.1:1 x", "--name", "tq t", "{literal}"]


def test_worker_template_gets_every_placeholder_but_port() -> None:
    commands = ImplementationCommands.parse(
        "srv {port}", "wrk {dynamodb} {sqs} {region} {table} {queue} {dlq}"
    )
    assert commands.worker is not None and commands.worker.fields == {
        "dynamodb",
        "sqs",
        "region",
        "table",
        "queue",
        "dlq",
    }
    with pytest.raises(TemplateError, match=r"^--taskqueue-worker-cmd: \{port\}"):
        ImplementationCommands.parse("srv {port}", "wrk --port {port}")
