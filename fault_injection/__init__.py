"""Fault injection through Toxiproxy, and the history checker.

- ``ensure_toxiproxy``: the Toxiproxy server binary, built with ``go install`` into a cache on first use
  (the caller's ``BuildRunner`` runs the build).
- ``Toxiproxy`` / ``Proxy``: a typed client of its HTTP API, with no global state.
- ``fault_injection.faults``: named faults as context managers that always undo themselves.
- ``fault_injection.history``: the operation recorder and the contract checker (``check``).
- ``Backoff``: the growing pause between the tries of a probe, poll or retry, within a deadline
  (every such loop of the toolkit uses it).

Imports nothing of this project except the leaf packages ``taskqueue_proto`` and ``taskqueue_contract``;
``pytest_taskqueue`` builds on it. ``faults`` and ``history`` (which load gRPC and the stubs) are
imported on first use, so ``Backoff`` and the Toxiproxy client cost only the standard library.
"""

from types import ModuleType
from typing import TYPE_CHECKING

from fault_injection._backoff import Backoff
from fault_injection._install import TOXIPROXY_VERSION, BuildRunner, ToxiproxyInstallError, ensure_toxiproxy
from fault_injection._toxiproxy import Proxy, Stream, Toxic, Toxiproxy, ToxiproxyError

if TYPE_CHECKING:
    from fault_injection import faults, history

__all__ = [
    "TOXIPROXY_VERSION",
    "Backoff",
    "BuildRunner",
    "Proxy",
    "Stream",
    "Toxic",
    "Toxiproxy",
    "ToxiproxyError",
    "ToxiproxyInstallError",
    "ensure_toxiproxy",
    "faults",
    "history",
]


def __getattr__(name: str) -> ModuleType:
    """``fault_injection.faults`` and ``fault_injection.history``, imported on first use."""
    if name in ("faults", "history"):
        import importlib

        return importlib.import_module(f"fault_injection.{name}")
    raise AttributeError(f"module 'fault_injection' has no attribute {name!r}")
