"""The task types the reference server runs: the five conformance types of the contract.

Each type validates its payload at submit time (so a bad payload is INVALID_ARGUMENT, never a task that
can only fail) and runs one attempt in the worker. An attempt fails by raising ``AttemptFailed``; its
message becomes the FAILED event's detail and the task's ``last_error``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

#: Largest ``ms`` a ``sleep`` task accepts (one day): keeps a worker slot from being held forever.
MAX_SLEEP_MS = 86_400_000
#: Largest integer a ``{"times": N}`` payload may carry (docs/spec.md 6.1: 2^53 - 1).
MAX_JSON_INTEGER = 2**53 - 1


class AttemptFailed(Exception):
    """One attempt of a task failed; ``str(exc)`` is the error recorded in history."""


class InvalidPayload(ValueError):
    """A payload is not what its task type documents; ``str(exc)`` says why."""


@dataclass(frozen=True, slots=True)
class TaskType:
    """A task type: a payload check run at submit and the coroutine that runs one attempt."""

    name: str
    validate: Callable[[bytes], None]
    run: Callable[[bytes, int], Awaitable[bytes]]


def _json_object_with_int(payload: bytes, task_type: str, field: str, maximum: int | None = None) -> int:
    """Parse ``{"<field>": N}`` with N a non-negative integer, or raise InvalidPayload saying why."""
    example = f'{{"{field}": N}}'
    try:
        document = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidPayload(f"payload of a {task_type} task must be JSON {example}: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidPayload(f"payload of a {task_type} task must be a JSON object {example}")
    if field not in document:
        raise InvalidPayload(f'payload of a {task_type} task must have the field "{field}"')
    value = document[field]
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidPayload(
            f'payload field "{field}" of a {task_type} task must be an integer, got {value!r}'
        )
    if value < 0:
        raise InvalidPayload(f'payload field "{field}" of a {task_type} task must be >= 0, got {value}')
    if maximum is not None and value > maximum:
        raise InvalidPayload(
            f'payload field "{field}" of a {task_type} task must be <= {maximum}, got {value}'
        )
    return value


def _accept_any(payload: bytes) -> None:
    """Payload check of types whose payload is opaque."""


async def _run_noop(payload: bytes, attempt: int) -> bytes:
    return b""


async def _run_echo(payload: bytes, attempt: int) -> bytes:
    return payload


def _validate_sleep(payload: bytes) -> None:
    _json_object_with_int(payload, "sleep", "ms", MAX_SLEEP_MS)


async def _run_sleep(payload: bytes, attempt: int) -> bytes:
    try:
        ms = _json_object_with_int(payload, "sleep", "ms", MAX_SLEEP_MS)
    except InvalidPayload as exc:
        raise AttemptFailed(str(exc)) from None
    await asyncio.sleep(ms / 1000)  # the task's own work, not a synchronisation wait
    return b""


async def _run_fail_always(payload: bytes, attempt: int) -> bytes:
    raise AttemptFailed(f"fail_always: attempt {attempt} failed")


def _validate_fail_times(payload: bytes) -> None:
    _json_object_with_int(payload, "fail_times", "times", MAX_JSON_INTEGER)


async def _run_fail_times(payload: bytes, attempt: int) -> bytes:
    try:
        times = _json_object_with_int(payload, "fail_times", "times", MAX_JSON_INTEGER)
    except InvalidPayload as exc:
        raise AttemptFailed(str(exc)) from None
    if attempt <= times:
        raise AttemptFailed(f"fail_times: attempt {attempt} failed ({times} failures requested)")
    return b""


TASK_TYPES: dict[str, TaskType] = {
    t.name: t
    for t in (
        TaskType("noop", _accept_any, _run_noop),
        TaskType("echo", _accept_any, _run_echo),
        TaskType("sleep", _validate_sleep, _run_sleep),
        TaskType("fail_always", _accept_any, _run_fail_always),
        TaskType("fail_times", _validate_fail_times, _run_fail_times),
    )
}


async def run_attempt(task_type: str, payload: bytes, attempt: int) -> bytes:
    """Run attempt number ``attempt`` (from 1) of a task; returns its result or raises AttemptFailed."""
    kind = TASK_TYPES.get(task_type)
    if kind is None:
        raise AttemptFailed(f"unknown task_type {task_type!r}: this worker runs {sorted(TASK_TYPES)}")
    return await kind.run(payload, attempt)
