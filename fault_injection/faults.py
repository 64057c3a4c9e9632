"""Named network faults as context managers over Toxiproxy proxies.

Each fault adds its toxic(s) on entry and removes them on exit, also when the body raises, so a
failed scenario never leaves a link poisoned for the next one. ``down`` and ``partition`` disable
proxies instead and re-enable them on exit.

``stream`` picks the direction: ``"downstream"`` (server -> client, Toxiproxy's default),
``"upstream"`` (client -> server) or ``"both"`` (one toxic per direction). Toxic names are
unique per call, so faults on one proxy can nest or overlap.

``down``/``partition`` are not reference-counted: nesting two of them on the same proxy re-enables
it when the inner one exits.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from fault_injection._toxiproxy import Proxy, Stream, Toxic, ToxiproxyError

__all__ = [
    "ActiveFault",
    "Direction",
    "bandwidth",
    "down",
    "latency",
    "limit_data",
    "partition",
    "reset_peer",
    "slicer",
    "timeout",
    "toxic",
]

Direction = Literal["upstream", "downstream", "both"]
"""Where a fault applies: one Toxiproxy stream, or both."""

_counter = itertools.count(1)
_RUN_TAG = uuid.uuid4().hex[:6]


@dataclass(frozen=True)
class ActiveFault:
    """What a fault context yields: the proxies it acts on and the toxics it added (if any)."""

    kind: str
    proxies: tuple[Proxy, ...]
    toxics: tuple[Toxic, ...] = ()


def _streams(stream: Direction) -> tuple[Stream, ...]:
    if stream == "both":
        return ("upstream", "downstream")
    if stream in ("upstream", "downstream"):
        return (stream,)
    raise ValueError(f"stream must be 'upstream', 'downstream' or 'both', not {stream!r}")


def _unique_name(kind: str, stream: Stream) -> str:
    return f"{kind}_{stream}_{_RUN_TAG}_{os.getpid()}_{next(_counter)}"


def _cleanup(actions: list[tuple[str, Callable[[], None]]], body_error: BaseException | None) -> None:
    """Run every undo action; raise the first failure unless the body already raised.

    A failure to undo while the body's exception propagates is attached to it as a note, so the
    original error stays the one reported.
    """
    failures: list[str] = []
    first: BaseException | None = None
    for what, undo in reversed(actions):
        try:
            undo()
        except ToxiproxyError as exc:
            if exc.status == 404:
                continue  # already gone (a reset, or the proxy was deleted): nothing to undo
            failures.append(f"{what}: {exc}")
            first = first or exc
    if first is None:
        return
    if body_error is not None:
        for line in failures:
            body_error.add_note(f"fault cleanup failed too: {line}")
        return
    raise first


@contextmanager
def toxic(
    proxy: Proxy,
    type: str,
    attributes: Mapping[str, Any],
    *,
    stream: Direction = "downstream",
    toxicity: float = 1.0,
) -> Iterator[ActiveFault]:
    """Any Toxiproxy toxic for the duration of the block (the named faults build on this)."""
    added: list[Toxic] = []
    undo: list[tuple[str, Callable[[], None]]] = []
    body_error: BaseException | None = None
    try:
        for one in _streams(stream):
            made = proxy.add_toxic(
                type,
                name=_unique_name(type, one),
                stream=one,
                toxicity=toxicity,
                attributes=attributes,
            )
            added.append(made)
            undo.append((f"remove toxic {made.name} from {proxy.name}", _bind_remove(proxy, made.name)))
        yield ActiveFault(kind=type, proxies=(proxy,), toxics=tuple(added))
    except BaseException as exc:
        body_error = exc
        raise
    finally:
        _cleanup(undo, body_error)


def _bind_remove(proxy: Proxy, name: str) -> Callable[[], None]:
    return lambda: proxy.remove_toxic(name)


def latency(
    proxy: Proxy, ms: int, jitter_ms: int = 0, *, stream: Direction = "downstream"
) -> AbstractContextManager[ActiveFault]:
    """Delay data by ``ms`` milliseconds, plus or minus up to ``jitter_ms``."""
    return toxic(proxy, "latency", {"latency": ms, "jitter": jitter_ms}, stream=stream)


def bandwidth(
    proxy: Proxy, kbps: int, *, stream: Direction = "downstream"
) -> AbstractContextManager[ActiveFault]:
    """Limit throughput to ``kbps`` kilobytes per second (Toxiproxy's ``rate``; 0 stalls)."""
    return toxic(proxy, "bandwidth", {"rate": kbps}, stream=stream)


def timeout(
    proxy: Proxy, ms: int = 0, *, stream: Direction = "downstream"
) -> AbstractContextManager[ActiveFault]:
    """A black hole: data is swallowed; after ``ms`` (if not 0) the connection is closed."""
    return toxic(proxy, "timeout", {"timeout": ms}, stream=stream)


def reset_peer(
    proxy: Proxy, after_ms: int = 0, *, stream: Direction = "downstream"
) -> AbstractContextManager[ActiveFault]:
    """Reset connections (TCP RST) ``after_ms`` milliseconds after data arrives."""
    return toxic(proxy, "reset_peer", {"timeout": after_ms}, stream=stream)


def slicer(
    proxy: Proxy,
    avg_size: int,
    size_variation: int = 0,
    delay_us: int = 0,
    *,
    stream: Direction = "downstream",
) -> AbstractContextManager[ActiveFault]:
    """Cut data into pieces of about ``avg_size`` bytes, ``delay_us`` microseconds apart."""
    return toxic(
        proxy,
        "slicer",
        {"average_size": avg_size, "size_variation": size_variation, "delay": delay_us},
        stream=stream,
    )


def limit_data(
    proxy: Proxy, bytes: int, *, stream: Direction = "downstream"
) -> AbstractContextManager[ActiveFault]:
    """Close each connection once ``bytes`` bytes have passed in that direction."""
    return toxic(proxy, "limit_data", {"bytes": bytes}, stream=stream)


@contextmanager
def partition(*proxies: Proxy) -> Iterator[ActiveFault]:
    """Disable every given proxy (no listener, open connections closed); re-enable all on exit."""
    undo: list[tuple[str, Callable[[], None]]] = []
    body_error: BaseException | None = None
    try:
        for proxy in proxies:
            proxy.disable()
            undo.append((f"enable {proxy.name}", proxy.enable))
        yield ActiveFault(kind="partition", proxies=tuple(proxies))
    except BaseException as exc:
        body_error = exc
        raise
    finally:
        _cleanup(undo, body_error)


def down(proxy: Proxy) -> AbstractContextManager[ActiveFault]:
    """Take one link down (a partition of a single proxy) for the duration of the block."""
    return partition(proxy)
