"""What a load run submits: the task mix, payloads, keys and duplicate submits.

One ``Workload`` drives both the built-in open-loop generator and the Locust user, so a run with
either sends the same requests for the same seed. ``--mix`` is a comma-separated list of
``TYPE:WEIGHT[:PARAM]`` entries, the conformance task types of docs/spec.md section 6:

- ``noop:W[:SIZE]`` and ``echo:W[:SIZE]``: a payload of SIZE bytes (``512``, ``4KiB``; default 0);
- ``sleep:W[:MS]``: ``{"ms": MS}`` (default 10);
- ``fail_times:W[:TIMES]``: ``{"times": TIMES}`` (default 1);
- ``fail_always:W[:MAX_ATTEMPTS]``: that max_attempts (default 2; 0 means the server's default).

The default mix is ``noop:1``. The request of arrival ``i`` is a pure function of the seed and
``i``: its type is drawn by weight, its key is ``<prefix>-<i>``. A fraction of arrivals
(``duplicates``) sends the same request twice at once, as a client retrying would: the target
must answer both with one task (spec 3.3).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from typing import Final

from taskqueue_proto import taskqueue_pb2

__all__ = ["DEFAULT_MIX", "MixEntry", "Workload", "parse_mix", "parse_size"]

DEFAULT_MIX: Final = "noop:1"
TASK_TYPES: Final = ("noop", "echo", "sleep", "fail_times", "fail_always")
_DEFAULT_PARAM: Final = {"noop": 0, "echo": 0, "sleep": 10, "fail_times": 1, "fail_always": 2}
_SIZE_RE: Final = re.compile(r"^(\d+)\s*(B|KB|KIB|K|MB|MIB|M)?$", re.IGNORECASE)
_UNITS: Final = {
    None: 1,
    "B": 1,
    "K": 1024,
    "KB": 1000,
    "KIB": 1024,
    "M": 1 << 20,
    "MB": 10**6,
    "MIB": 1 << 20,
}
MAX_PAYLOAD_BYTES: Final = 4 * 1024 * 1024


def parse_size(text: str) -> int:
    """``512``, ``4KiB``, ``1MB`` -> bytes; ValueError for anything else."""
    match = _SIZE_RE.match(text.strip())
    if match is None:
        raise ValueError(f"not a size: {text!r} (bytes, or with a unit: 4KiB, 1MB)")
    unit = match.group(2).upper() if match.group(2) else None
    return int(match.group(1)) * _UNITS[unit]


@dataclass(frozen=True)
class MixEntry:
    """One task type of the mix: its weight and the payload it sends."""

    task_type: str
    weight: float
    param: int
    payload: bytes = field(repr=False)
    max_attempts: int = 0

    def describe(self) -> str:
        """``TYPE:WEIGHT:PARAM`` as ``--mix`` takes it."""
        return f"{self.task_type}:{self.weight:g}:{self.param}"


def _entry(task_type: str, weight: float, param: int, seed: int) -> MixEntry:
    if task_type in ("noop", "echo"):
        payload = random.Random(f"payload:{seed}:{task_type}:{param}").randbytes(param)
        return MixEntry(task_type, weight, param, payload)
    if task_type == "sleep":
        return MixEntry(task_type, weight, param, json.dumps({"ms": param}).encode())
    if task_type == "fail_times":
        return MixEntry(task_type, weight, param, json.dumps({"times": param}).encode())
    return MixEntry(task_type, weight, param, b"", max_attempts=param)


def parse_mix(text: str, seed: int = 0) -> tuple[MixEntry, ...]:
    """Parse ``--mix``; ValueError names the entry at fault."""
    entries: list[MixEntry] = []
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            continue
        fields = [f.strip() for f in part.split(":")]
        task_type = fields[0]
        if task_type not in TASK_TYPES:
            raise ValueError(f"{part!r}: unknown task type {task_type!r} (one of {', '.join(TASK_TYPES)})")
        if len(fields) > 3:
            raise ValueError(f"{part!r}: expected TYPE:WEIGHT[:PARAM]")
        try:
            weight = float(fields[1]) if len(fields) > 1 and fields[1] else 1.0
        except ValueError:
            raise ValueError(f"{part!r}: weight {fields[1]!r} is not a number") from None
        if not weight > 0:
            raise ValueError(f"{part!r}: weight must be > 0")
        param = _DEFAULT_PARAM[task_type]
        if len(fields) == 3:
            try:
                param = parse_size(fields[2]) if task_type in ("noop", "echo") else int(fields[2])
            except ValueError:
                raise ValueError(
                    f"{part!r}: {fields[2]!r} is not a valid parameter for {task_type}"
                ) from None
            if param < 0:
                raise ValueError(f"{part!r}: the parameter must be >= 0")
            if task_type in ("noop", "echo") and param > MAX_PAYLOAD_BYTES:
                raise ValueError(f"{part!r}: payload over {MAX_PAYLOAD_BYTES} bytes")
            if task_type == "fail_always" and param > 100:
                raise ValueError(f"{part!r}: max_attempts must be in 0..100")
        entries.append(_entry(task_type, weight, param, seed))
    if not entries:
        raise ValueError("name at least one task type, e.g. noop:1")
    return tuple(entries)


@dataclass(frozen=True)
class Workload:
    """The requests of a load run; ``request(i)`` is a pure function of (seed, mix, prefix, i)."""

    mix: tuple[MixEntry, ...]
    seed: int = 0
    key_prefix: str = "load"
    duplicates: float = 0.0

    @classmethod
    def from_options(
        cls, mix: str = DEFAULT_MIX, seed: int = 0, key_prefix: str = "load", duplicates: float = 0.0
    ) -> Workload:
        """Build from the command-line text; ValueError names what is wrong."""
        if not 0.0 <= duplicates <= 1.0:
            raise ValueError(f"duplicates must be a fraction in 0..1, got {duplicates}")
        return cls(parse_mix(mix, seed), seed, key_prefix, duplicates)

    def describe(self) -> str:
        """The mix as ``--mix`` takes it."""
        return ",".join(entry.describe() for entry in self.mix)

    def entry(self, index: int) -> MixEntry:
        """The mix entry of arrival ``index``."""
        if len(self.mix) == 1:
            return self.mix[0]
        rng = random.Random(self.seed * 1_000_003 + index)
        return rng.choices(self.mix, weights=[e.weight for e in self.mix])[0]

    def copies(self, index: int) -> int:
        """How many identical submits arrival ``index`` sends at once (1, or 2 for a duplicate)."""
        if not self.duplicates:
            return 1
        return 2 if random.Random(self.seed * 7_000_003 + index).random() < self.duplicates else 1

    def watched(self, index: int, share: float) -> bool:
        """Whether arrival ``index`` is among the ``share`` of tasks followed to their end."""
        if share >= 1.0:
            return True
        return share > 0 and random.Random(self.seed * 9_000_011 + index).random() < share

    def request(self, index: int) -> taskqueue_pb2.SubmitTaskRequest:
        """The SubmitTask request of arrival ``index``."""
        entry = self.entry(index)
        return taskqueue_pb2.SubmitTaskRequest(
            idempotency_key=f"{self.key_prefix}-{index}",
            task_type=entry.task_type,
            payload=entry.payload,
            max_attempts=entry.max_attempts,
        )
