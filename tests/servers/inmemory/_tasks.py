"""The five conformance task types of spec 6: payload checks at submit, behaviour at run time."""

from __future__ import annotations

import asyncio
import json

TASK_TYPES: tuple[str, ...] = ("noop", "echo", "sleep", "fail_always", "fail_times")

_COUNT_MEMBER: dict[str, str] = {"sleep": "ms", "fail_times": "times"}
"""Task types whose payload is a JSON object with one non-negative integer member."""

_LARGEST: dict[str, int] = {"ms": 86_400_000, "times": 2**53 - 1}
"""The largest value of each member (spec 6.1: one day of sleep, 2^53 - 1)."""


class AttemptFailed(Exception):
    """The attempt failed; the message becomes the FAILED event's detail and last_error."""


def _count(payload: bytes, member: str) -> int | None:
    """The non-negative integer ``member`` of a JSON object payload, or None when malformed."""
    try:
        decoded = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(decoded, dict):
        return None
    value = decoded.get(member)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _LARGEST[member]:
        return None
    return value


def payload_error(task_type: str, payload: bytes, only_member: bool = False) -> str | None:
    """Why the payload is unacceptable for this task type (spec 6 SHOULD), or None.

    ``only_member`` (a break): also refuse a JSON object with members besides the documented one.
    """
    member = _COUNT_MEMBER.get(task_type)
    if member is not None and _count(payload, member) is None:
        return f'payload: {task_type} needs a JSON object {{"{member}": N}} with N a non-negative integer'
    if member is not None and only_member and len(json.loads(payload)) > 1:
        return f"payload: {task_type} takes only the member {member!r}"
    return None


async def execute(task_type: str, payload: bytes, attempt: int, *, sleep: bool = True) -> bytes:
    """Run one attempt and return its result, or raise AttemptFailed (``sleep=False``: a break)."""
    if task_type == "echo":
        return payload
    if task_type == "sleep":
        if sleep:
            await asyncio.sleep((_count(payload, "ms") or 0) / 1000)
        return b""
    if task_type == "fail_always":
        raise AttemptFailed(f"fail_always: attempt {attempt} failed as designed")
    if task_type == "fail_times":
        times = _count(payload, "times") or 0
        if attempt <= times:
            raise AttemptFailed(f"fail_times: attempt {attempt} of the first {times} failed as designed")
    return b""
