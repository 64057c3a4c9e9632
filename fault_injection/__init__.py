"""Fault injection through Toxiproxy, and the history checker.

- ``ensure_toxiproxy``: the Toxiproxy server binary, built with ``go install`` into a cache on first use.
- ``running_toxiproxy``: that server on a free port for a ``with`` block.
- ``Toxiproxy`` / ``Proxy``: a typed client of its HTTP API, with no global state.
- ``fault_injection.faults``: named faults as context managers that always undo themselves.
- ``fault_injection.history``: the operation recorder and the contract checker (``check``).

Imports nothing of this project except ``taskqueue_proto``; ``pytest_taskqueue`` builds on it.
"""

from fault_injection import faults, history
from fault_injection._install import TOXIPROXY_VERSION, ToxiproxyInstallError, ensure_toxiproxy
from fault_injection._server import ToxiproxyStartError, running_toxiproxy
from fault_injection._toxiproxy import Proxy, Stream, Toxic, Toxiproxy, ToxiproxyError

__all__ = [
    "TOXIPROXY_VERSION",
    "Proxy",
    "Stream",
    "Toxic",
    "Toxiproxy",
    "ToxiproxyError",
    "ToxiproxyInstallError",
    "ToxiproxyStartError",
    "ensure_toxiproxy",
    "faults",
    "history",
    "running_toxiproxy",
]
