"""Fault injection through Toxiproxy, and the history checker.

Imports nothing of this project except ``taskqueue_proto``; ``pytest_taskqueue`` builds on it.
"""

from fault_injection._install import TOXIPROXY_VERSION, ToxiproxyInstallError, ensure_toxiproxy

__all__ = ["TOXIPROXY_VERSION", "ToxiproxyInstallError", "ensure_toxiproxy"]
