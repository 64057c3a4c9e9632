"""What toxiproxy-python 0.1.1 (named by the product brief) does against Toxiproxy 2.12.

The toolkit does not use it (fault_injection._toxiproxy speaks the HTTP API itself); these tests
keep the evidence for that decision reproducible. The basic calls work; what makes it unfit is
the process-global server address, requests sent without any timeout, and errors without their
HTTP status (a duplicate *toxic* is reported as ``ProxyExists``).
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest

from fault_injection import Proxy, Toxiproxy
from tests.fault_injection.fault_injection_testutil import echo_once

txp = pytest.importorskip("toxiproxy")
txp_api = pytest.importorskip("toxiproxy.api")
txp_exceptions = pytest.importorskip("toxiproxy.exceptions")


@pytest.fixture
def library(toxiproxy: Toxiproxy, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A toxiproxy-python client aimed at the test server; the class globals are restored after."""
    address = urlsplit(toxiproxy.api_url)
    monkeypatch.setattr(txp_api.APIConsumer, "host", address.hostname)
    monkeypatch.setattr(txp_api.APIConsumer, "port", address.port)
    return txp.Toxiproxy()


def test_basic_calls_work_against_2_12(library: Any, toxiproxy: Toxiproxy, echo_server: str) -> None:
    name = f"lib-{uuid.uuid4().hex[:8]}"
    made = library.create(upstream=echo_server, name=name, listen="127.0.0.1:0")
    try:
        ours = toxiproxy.get_proxy(name)
        assert echo_once(ours) == b"ping"

        made.add_toxic(type="latency", stream="upstream", attributes={"latency": 5})
        assert [(t.type, t.stream) for t in ours.toxics()] == [("latency", "upstream")]
        made.destroy_toxic("latency_upstream")
        assert ours.toxics() == []

        made.disable()
        assert not ours.refresh().enabled
        made.enable()
        assert ours.refresh().enabled

        made.add_toxic(type="timeout", attributes={"timeout": 0})
        made.disable()
        library.reset()
        assert ours.refresh().enabled and ours.toxics() == []
    finally:
        toxiproxy.delete_proxy(name)


def test_server_address_is_process_global(library: Any) -> None:
    other = txp.Toxiproxy()
    other.update_api_consumer("127.0.0.1", 1)
    assert (txp_api.APIConsumer.host, txp_api.APIConsumer.port) == ("127.0.0.1", 1)
    # `library` was aimed elsewhere, but now talks to port 1 as well: there is one address per process.
    assert not library.running()


def test_errors_lose_the_status_and_misname_toxic_conflicts(library: Any, proxy: Proxy) -> None:
    lib_proxy = library.get_proxy(proxy.name)
    lib_proxy.add_toxic(type="latency", attributes={"latency": 1})
    with pytest.raises(txp_exceptions.ProxyExists) as info:
        lib_proxy.add_toxic(type="latency", attributes={"latency": 1})
    assert "toxic already exists" in str(info.value)
    assert not hasattr(info.value, "status")
