"""``harness.faults``: the harness-owned stack's Toxiproxy links and the named faults on them.

``HarnessFaults`` gives the named proxies of the stack (``api``, ``server_dynamodb``,
``server_sqs``, ``worker_dynamodb``, ``worker_sqs``) as ``fault_injection.Proxy`` objects, and the
named faults of ``fault_injection.faults`` by link name. The first use in a test resets Toxiproxy
(every link up, no toxic); the harness resets it again after that test, so a fault never leaks
into the next one.

A plain external target (``--taskqueue-target``) is not proxied: nothing of its links is under the
harness's control, so scenarios that need ``harness.faults`` skip with ``NO_PROXIES_REASON``.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Final

from fault_injection import Proxy, Toxiproxy, faults
from fault_injection.faults import ActiveFault, Direction
from pytest_taskqueue._stack import PROXY_NAMES

__all__ = ["NO_PROXIES_REASON", "HarnessFaults"]

NO_PROXIES_REASON: Final = (
    "needs the harness's fault proxies: a plain --taskqueue-target is not proxied; "
    "let the harness run the implementation with --taskqueue-target-cmd"
)
"""Why a scenario that injects faults is skipped against an external target."""

Link = str | Proxy
"""A link by proxy name (``"api"``) or as the ``Proxy`` itself."""


class HarnessFaults:
    """The named Toxiproxy proxies of the harness-owned stack, and faults on them (``harness.faults``).

    ``faults["api"]`` (or ``harness.proxies["api"]``) is a ``fault_injection.Proxy``; the methods
    open the named faults of ``fault_injection.faults`` on a link given by name, e.g.
    ``with harness.faults.partition("server_dynamodb", "worker_dynamodb"): ...``. Every fault
    context undoes itself on exit; ``reset()`` heals everything at once.
    """

    def __init__(self, toxiproxy_url: str, names: Sequence[str] = PROXY_NAMES) -> None:
        self.toxiproxy = Toxiproxy(toxiproxy_url)
        self.names = tuple(names)
        self.used = False
        self._proxies: dict[str, Proxy] | None = None

    def __repr__(self) -> str:
        return f"<HarnessFaults {self.toxiproxy.api_url} links={','.join(self.names)}>"

    @property
    def proxies(self) -> dict[str, Proxy]:
        """The stack's proxies by name; the first use resets Toxiproxy (every link up, no toxic)."""
        if self._proxies is None:
            self.used = True
            self.toxiproxy.reset()
            found = self.toxiproxy.proxies()
            missing = [name for name in self.names if name not in found]
            if missing:
                raise LookupError(
                    f"Toxiproxy at {self.toxiproxy.api_url} has no proxy {', '.join(missing)} "
                    f"(it has: {', '.join(sorted(found)) or 'none'})"
                )
            self._proxies = {name: found[name] for name in self.names}
        return dict(self._proxies)

    def __getitem__(self, name: str) -> Proxy:
        proxies = self.proxies
        if name not in proxies:
            raise KeyError(f"no link {name!r}; the links are {', '.join(proxies)}")
        return proxies[name]

    def _proxy(self, link: Link) -> Proxy:
        return link if isinstance(link, Proxy) else self[link]

    def reset(self) -> None:
        """Heal every link now: enable every proxy and remove every toxic."""
        self.toxiproxy.reset()

    def reset_if_used(self) -> None:
        """``reset()`` if this test touched the proxies (the harness calls it after each test)."""
        if self.used:
            self.reset()

    def latency(
        self, link: Link, ms: int, jitter_ms: int = 0, *, stream: Direction = "downstream"
    ) -> AbstractContextManager[ActiveFault]:
        """Delay data on ``link`` by ``ms`` (plus or minus ``jitter_ms``)."""
        return faults.latency(self._proxy(link), ms, jitter_ms, stream=stream)

    def bandwidth(
        self, link: Link, kbps: int, *, stream: Direction = "downstream"
    ) -> AbstractContextManager[ActiveFault]:
        """Limit ``link`` to ``kbps`` kilobytes per second."""
        return faults.bandwidth(self._proxy(link), kbps, stream=stream)

    def timeout(
        self, link: Link, ms: int = 0, *, stream: Direction = "downstream"
    ) -> AbstractContextManager[ActiveFault]:
        """Swallow data on ``link``; close its connections after ``ms`` (0: never)."""
        return faults.timeout(self._proxy(link), ms, stream=stream)

    def reset_peer(
        self, link: Link, after_ms: int = 0, *, stream: Direction = "downstream"
    ) -> AbstractContextManager[ActiveFault]:
        """Reset (TCP RST) the connections of ``link`` ``after_ms`` after data arrives."""
        return faults.reset_peer(self._proxy(link), after_ms, stream=stream)

    def slicer(
        self,
        link: Link,
        avg_size: int,
        size_variation: int = 0,
        delay_us: int = 0,
        *,
        stream: Direction = "downstream",
    ) -> AbstractContextManager[ActiveFault]:
        """Cut the data on ``link`` into small pieces."""
        return faults.slicer(self._proxy(link), avg_size, size_variation, delay_us, stream=stream)

    def limit_data(
        self, link: Link, bytes: int, *, stream: Direction = "downstream"
    ) -> AbstractContextManager[ActiveFault]:
        """Close each connection of ``link`` after ``bytes`` bytes."""
        return faults.limit_data(self._proxy(link), bytes, stream=stream)

    def down(self, link: Link) -> AbstractContextManager[ActiveFault]:
        """Take ``link`` down (no listener, connections closed) for the block."""
        return faults.down(self._proxy(link))

    def partition(self, *links: Link) -> AbstractContextManager[ActiveFault]:
        """Take every given link down for the block."""
        return faults.partition(*(self._proxy(link) for link in links))
