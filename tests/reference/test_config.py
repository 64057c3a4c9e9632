"""Unit tests of the reference server's configuration: flags, TASKQUEUE_* variables, validation, backoff."""

from __future__ import annotations

import pytest

from reference_server.config import Config, Mode, parse_args


def test_defaults_match_the_architecture_table() -> None:
    mode, config = parse_args(["serve"], env={})
    assert mode is Mode.SERVE and config == Config()
    assert (config.host, config.port, config.region) == ("127.0.0.1", 50051, "us-east-1")
    assert (config.table, config.queue, config.dead_letter_queue) == (
        "taskqueue",
        "taskqueue",
        "taskqueue-dlq",
    )
    assert (config.visibility_timeout, config.retry_backoff_ms, config.retry_backoff_max_ms) == (
        30,
        1000,
        30000,
    )
    assert config.concurrency == 16 and config.create_resources
    assert config.dynamodb_endpoint is None and config.sqs_endpoint is None  # none means AWS


def test_environment_fills_in_and_flags_win() -> None:
    env = {
        "TASKQUEUE_PORT": "7000",
        "TASKQUEUE_DYNAMODB_ENDPOINT": "http://127.0.0.1:1",
        "TASKQUEUE_RETRY_BACKOFF_MS": "50",
        "TASKQUEUE_CREATE_RESOURCES": "false",
        "TASKQUEUE_DEAD_LETTER_QUEUE": "dead",
    }
    mode, config = parse_args(["worker", "--port", "0"], env=env)
    assert mode is Mode.WORKER and mode.runs_worker and not mode.runs_api
    assert config.port == 0 and config.dynamodb_endpoint == "http://127.0.0.1:1"
    assert (
        config.retry_backoff_ms == 50 and not config.create_resources and config.dead_letter_queue == "dead"
    )
    _, config = parse_args(["all", "--create-resources"], env=env)
    assert config.create_resources


@pytest.mark.parametrize(
    ("argv", "env", "named"),
    [
        (["serve", "--visibility-timeout", "0"], {}, "--visibility-timeout"),
        (
            ["serve", "--retry-backoff-ms", "500", "--retry-backoff-max-ms", "100"],
            {},
            "--retry-backoff-max-ms",
        ),
        (["serve", "--concurrency", "0"], {}, "--concurrency"),
        (["serve"], {"TASKQUEUE_CREATE_RESOURCES": "maybe"}, "TASKQUEUE_CREATE_RESOURCES"),
        (["serve"], {"TASKQUEUE_PORT": "eighty"}, "--port"),
        (["nonsense"], {}, "mode"),
    ],
)
def test_bad_values_exit_naming_the_setting(
    argv: list[str], env: dict[str, str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(argv, env=env)
    assert exited.value.code == 2
    assert named in capsys.readouterr().err


def test_backoff_doubles_up_to_the_maximum() -> None:
    config = Config(retry_backoff_ms=50, retry_backoff_max_ms=200)
    assert [config.backoff_ms(n) for n in range(1, 6)] == [50, 100, 200, 200, 200]
    assert Config(retry_backoff_ms=0, retry_backoff_max_ms=0).backoff_ms(3) == 0
    assert Config().backoff_ms(1000) == 30000  # no overflow for huge attempt numbers
