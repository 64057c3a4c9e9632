"""The workload definition shared by the generator and the Locust user (unit tests)."""

from __future__ import annotations

import json

import pytest

from pytest_taskqueue.load.workload import Workload, parse_mix, parse_size


def test_default_mix_is_noop_and_keys_follow_the_index() -> None:
    workload = Workload.from_options(key_prefix="run1")
    request = workload.request(7)
    assert (request.task_type, request.payload, request.max_attempts) == ("noop", b"", 0)
    assert request.idempotency_key == "run1-7"
    assert workload.describe() == "noop:1:0"


def test_mix_weights_params_and_payloads() -> None:
    workload = Workload.from_options("noop:1,echo:1:1KiB,sleep:1:25,fail_times:1:2,fail_always:1:3", seed=3)
    kinds = {workload.request(i).task_type: workload.request(i) for i in range(400)}
    assert set(kinds) == {"noop", "echo", "sleep", "fail_times", "fail_always"}
    assert len(kinds["echo"].payload) == 1024
    assert json.loads(kinds["sleep"].payload) == {"ms": 25}
    assert json.loads(kinds["fail_times"].payload) == {"times": 2}
    assert kinds["fail_always"].max_attempts == 3


def test_the_request_of_an_index_depends_only_on_seed_and_index() -> None:
    one = Workload.from_options("noop:3,echo:1:16", seed=9, key_prefix="a", duplicates=0.3)
    two = Workload.from_options("noop:3,echo:1:16", seed=9, key_prefix="a", duplicates=0.3)
    assert [one.request(i) for i in range(50)] == [two.request(i) for i in range(50)]
    assert [one.copies(i) for i in range(200)] == [two.copies(i) for i in range(200)]
    assert 20 < sum(one.copies(i) == 2 for i in range(400)) < 220


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bogus:1", "unknown task type 'bogus'"),
        ("noop:x", "weight 'x' is not a number"),
        ("noop:0", "weight must be > 0"),
        ("echo:1:lots", "not a valid parameter"),
        ("sleep:1:-5", "must be >= 0"),
        ("noop:1:2:3", "expected TYPE:WEIGHT[:PARAM]"),
        ("", "name at least one task type"),
    ],
)
def test_bad_mixes_name_the_entry(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_mix(text)


def test_sizes() -> None:
    assert parse_size("512") == 512
    assert parse_size("4KiB") == 4096
    assert parse_size("1MB") == 1_000_000
    with pytest.raises(ValueError):
        parse_size("4 parsecs")
