"""The typed Toxiproxy client against a real Toxiproxy 2.12 server."""

from __future__ import annotations

import socket
import uuid

import pytest

from fault_injection import TOXIPROXY_VERSION, Proxy, Toxic, Toxiproxy, ToxiproxyError
from tests.fault_injection.fault_injection_testutil import echo_once, free_port


def test_version_answers_the_release_not_git(toxiproxy: Toxiproxy) -> None:
    """The cached ``go install`` build has its version set at build time, like the release binaries."""
    assert toxiproxy.version() == TOXIPROXY_VERSION.removeprefix("v") == "2.12.0"


def test_created_proxy_is_listed_and_forwards(toxiproxy: Toxiproxy, proxy: Proxy, echo_server: str) -> None:
    assert proxy.port > 0 and proxy.enabled and proxy.upstream == echo_server
    assert toxiproxy.get_proxy(proxy.name) == proxy
    assert proxy.name in toxiproxy.proxies()
    assert echo_once(proxy, b"hello") == b"hello"


def test_duplicate_proxy_is_409_with_body(toxiproxy: Toxiproxy, proxy: Proxy) -> None:
    with pytest.raises(ToxiproxyError) as info:
        toxiproxy.create_proxy(proxy.name, "127.0.0.1:0", proxy.upstream)
    assert info.value.status == 409
    assert "exists" in info.value.body


def test_missing_proxy_is_404(toxiproxy: Toxiproxy) -> None:
    with pytest.raises(ToxiproxyError) as info:
        toxiproxy.get_proxy(f"missing-{uuid.uuid4().hex}")
    assert info.value.status == 404


def test_proxy_created_disabled_does_not_listen(toxiproxy: Toxiproxy, echo_server: str) -> None:
    made = toxiproxy.create_proxy(
        f"off-{uuid.uuid4().hex[:8]}", f"127.0.0.1:{free_port()}", echo_server, False
    )
    try:
        assert not toxiproxy.get_proxy(made.name).enabled
        with pytest.raises(OSError):
            echo_once(made)
        made.enable()
        assert echo_once(made) == b"ping"
    finally:
        made.delete()
    assert made.name not in toxiproxy.proxies()


def test_toxic_add_list_update_remove_per_stream(proxy: Proxy) -> None:
    added = proxy.add_toxic("latency", name="slow-up", stream="upstream", attributes={"latency": 20})
    assert added == Toxic("slow-up", "latency", "upstream", 1.0, {"latency": 20, "jitter": 0})
    down = proxy.add_toxic("bandwidth", stream="downstream", attributes={"rate": 1000})
    assert down.name == "bandwidth_downstream"
    assert {(t.name, t.stream) for t in proxy.toxics()} == {
        ("slow-up", "upstream"),
        ("bandwidth_downstream", "downstream"),
    }
    updated = proxy.update_toxic("slow-up", {"latency": 30})
    assert updated.attributes["latency"] == 30
    assert echo_once(proxy) == b"ping"

    proxy.remove_toxic("slow-up")
    proxy.remove_toxic("bandwidth_downstream")
    assert proxy.toxics() == []


def test_toxic_errors_carry_status(proxy: Proxy) -> None:
    with pytest.raises(ToxiproxyError) as unknown_type:
        proxy.add_toxic("no_such_toxic", attributes={})
    assert unknown_type.value.status == 400
    with pytest.raises(ToxiproxyError) as missing:
        proxy.remove_toxic("never-added")
    assert missing.value.status == 404
    assert "not found" in missing.value.body


def test_disable_refuses_connections_and_enable_heals(toxiproxy: Toxiproxy, proxy: Proxy) -> None:
    proxy.disable()
    assert not proxy.enabled and not toxiproxy.get_proxy(proxy.name).enabled
    with pytest.raises(OSError):
        echo_once(proxy)
    proxy.enable()
    assert proxy.refresh().enabled
    assert echo_once(proxy) == b"ping"


def test_reset_enables_everything_and_removes_toxics(toxiproxy: Toxiproxy, proxy: Proxy) -> None:
    proxy.add_toxic("latency", stream="upstream", attributes={"latency": 10})
    proxy.add_toxic("timeout", stream="downstream", attributes={"timeout": 0})
    proxy.disable()

    toxiproxy.reset()

    assert proxy.refresh().enabled
    assert proxy.toxics() == []
    assert echo_once(proxy) == b"ping"


def test_unreachable_api_has_no_status() -> None:
    client = Toxiproxy(f"http://127.0.0.1:{free_port()}", timeout_s=2.0)
    with pytest.raises(ToxiproxyError) as info:
        client.version()
    assert info.value.status is None
    assert "refused" in info.value.body.lower()


def test_wait_ready_gives_up_at_the_deadline() -> None:
    client = Toxiproxy(f"http://127.0.0.1:{free_port()}", timeout_s=1.0)
    with pytest.raises(ToxiproxyError):
        client.wait_ready(0.2)


def test_stuck_api_times_out() -> None:
    """A server that accepts but never answers: the call fails at the client's timeout."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = Toxiproxy(f"http://127.0.0.1:{port}", timeout_s=0.3)
        with pytest.raises(ToxiproxyError) as info:
            client.proxies()
    assert info.value.status is None
