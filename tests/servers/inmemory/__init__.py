"""An independent in-memory taskqueue.v1 server (grpc.aio, asyncio worker in process).

It conforms to docs/spec.md so that the bundled suite can be shown to pass, and each named break
(``BREAKS``) violates exactly one rule so that the suite can be shown to fail; ``CHAOS_BREAKS``
are those only a chaos run's history shows.
"""

from ._breaks import BREAKS, CHAOS_BREAKS, QUIRKS

__all__ = ["BREAKS", "CHAOS_BREAKS", "QUIRKS"]
