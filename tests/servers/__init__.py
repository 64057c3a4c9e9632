"""Test servers for the conformance suite: a conforming in-memory server and its broken variants.

``running_server(*breaks)`` starts ``python -m tests.servers.inmemory`` in a subprocess and yields
its ``host:port``; ``BREAKS`` names every break with the rule it violates.
"""

from ._launch import ServerStartError, running_command, running_server
from .inmemory import BREAKS, CHAOS_BREAKS, QUIRKS

__all__ = ["BREAKS", "CHAOS_BREAKS", "QUIRKS", "ServerStartError", "running_command", "running_server"]
