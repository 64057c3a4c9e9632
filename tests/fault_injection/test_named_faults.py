"""Every named fault against a real Toxiproxy in front of a TCP echo server.

No timing is asserted: a fault is checked by its toxic being listed inside the block and gone
after it, and by what the connection does (data flows, is refused, reset, swallowed or cut).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest

from fault_injection import Proxy, Toxic, Toxiproxy, ToxiproxyError, faults
from fault_injection.faults import ActiveFault
from tests.fault_injection.fault_injection_testutil import echo_once


def _toxic_summary(proxy: Proxy) -> set[tuple[str, str]]:
    return {(t.type, t.stream) for t in proxy.toxics()}


def test_latency_is_listed_inside_data_still_flows_and_gone_after(proxy: Proxy) -> None:
    with faults.latency(proxy, 50, jitter_ms=10) as fault:
        (listed,) = proxy.toxics()
        assert listed == fault.toxics[0]
        assert listed.type == "latency" and listed.stream == "downstream"
        assert dict(listed.attributes) == {"latency": 50, "jitter": 10}
        assert echo_once(proxy, b"slow") == b"slow"
    assert proxy.toxics() == []
    assert echo_once(proxy) == b"ping"


def test_both_directions_add_one_toxic_per_stream(proxy: Proxy) -> None:
    with faults.latency(proxy, 5, stream="both") as fault:
        assert _toxic_summary(proxy) == {("latency", "upstream"), ("latency", "downstream")}
        assert len({t.name for t in fault.toxics}) == 2
    assert proxy.toxics() == []


def test_same_fault_twice_gets_unique_names(proxy: Proxy) -> None:
    with faults.latency(proxy, 5) as outer, faults.latency(proxy, 5) as inner:
        assert outer.toxics[0].name != inner.toxics[0].name
        assert len(proxy.toxics()) == 2
    assert proxy.toxics() == []


@pytest.mark.parametrize(
    ("make", "toxic_type", "attributes"),
    [
        (lambda p: faults.bandwidth(p, 100), "bandwidth", {"rate": 100}),
        (
            lambda p: faults.slicer(p, 2, 1, 100),
            "slicer",
            {"average_size": 2, "size_variation": 1, "delay": 100},
        ),
    ],
    ids=["bandwidth", "slicer"],
)
def test_throttling_faults_keep_data_flowing(
    proxy: Proxy,
    make: Callable[[Proxy], AbstractContextManager[ActiveFault]],
    toxic_type: str,
    attributes: dict[str, int],
) -> None:
    with make(proxy):
        (listed,) = proxy.toxics()
        assert listed.type == toxic_type and dict(listed.attributes) == attributes
        assert echo_once(proxy, b"x" * 64) == b"x" * 64
    assert proxy.toxics() == []


def test_upstream_stream_is_honoured(proxy: Proxy) -> None:
    with faults.slicer(proxy, 4, stream="upstream"):
        assert _toxic_summary(proxy) == {("slicer", "upstream")}
    assert proxy.toxics() == []


def test_down_refuses_connections_and_heals_on_exit(toxiproxy: Toxiproxy, proxy: Proxy) -> None:
    with faults.down(proxy):
        assert not toxiproxy.get_proxy(proxy.name).enabled
        with pytest.raises(OSError):
            echo_once(proxy)
    assert toxiproxy.get_proxy(proxy.name).enabled
    assert echo_once(proxy) == b"ping"


def test_down_closes_open_connections(proxy: Proxy) -> None:
    with socket.create_connection((proxy.host, proxy.port), timeout=10) as sock:
        sock.sendall(b"a")
        assert sock.recv(1) == b"a"
        with faults.down(proxy):
            try:
                sock.sendall(b"b")
                assert sock.recv(1) == b""
            except OSError:
                pass  # a reset is as good as a close here


def test_partition_disables_several_and_restores_all(toxiproxy: Toxiproxy, echo_server: str) -> None:
    made = [toxiproxy.create_proxy(f"part-{i}-{id(toxiproxy)}", "127.0.0.1:0", echo_server) for i in range(2)]
    try:
        with faults.partition(*made) as fault:
            assert fault.proxies == tuple(made)
            assert not any(toxiproxy.get_proxy(p.name).enabled for p in made)
        assert all(toxiproxy.get_proxy(p.name).enabled for p in made)
    finally:
        for p in made:
            p.delete()


def test_reset_peer_resets_the_connection(proxy: Proxy) -> None:
    with faults.reset_peer(proxy), socket.create_connection((proxy.host, proxy.port), timeout=10) as sock:
        sock.sendall(b"boom")
        with pytest.raises(ConnectionResetError):
            while sock.recv(65536):
                pass
    assert proxy.toxics() == []
    assert echo_once(proxy) == b"ping"


def test_timeout_swallows_data(proxy: Proxy) -> None:
    with faults.timeout(proxy), socket.create_connection((proxy.host, proxy.port), timeout=10) as sock:
        sock.sendall(b"into the void")
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(65536)
    assert proxy.toxics() == []
    assert echo_once(proxy) == b"ping"


def test_timeout_with_ms_closes_the_connection(proxy: Proxy) -> None:
    with faults.timeout(proxy, ms=50), socket.create_connection((proxy.host, proxy.port), timeout=10) as sock:
        sock.sendall(b"x")
        try:
            assert sock.recv(65536) == b""
        except ConnectionResetError:
            pass


def test_limit_data_cuts_the_connection(proxy: Proxy) -> None:
    with faults.limit_data(proxy, 10), socket.create_connection((proxy.host, proxy.port), timeout=10) as sock:
        sock.sendall(b"y" * 100)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
        assert received == b"y" * 10
    assert echo_once(proxy) == b"ping"


@pytest.mark.parametrize(
    "make",
    [
        lambda p: faults.latency(p, 5, stream="both"),
        lambda p: faults.bandwidth(p, 10),
        lambda p: faults.timeout(p),
        lambda p: faults.reset_peer(p, 10),
        lambda p: faults.slicer(p, 8, 2, 10),
        lambda p: faults.limit_data(p, 1),
        lambda p: faults.down(p),
    ],
    ids=["latency", "bandwidth", "timeout", "reset_peer", "slicer", "limit_data", "down"],
)
def test_fault_is_undone_when_the_body_raises(
    toxiproxy: Toxiproxy, proxy: Proxy, make: Callable[[Proxy], AbstractContextManager[ActiveFault]]
) -> None:
    with pytest.raises(RuntimeError, match="scenario failed"), make(proxy):
        raise RuntimeError("scenario failed")
    assert proxy.toxics() == []
    assert toxiproxy.get_proxy(proxy.name).enabled
    assert echo_once(proxy) == b"ping"


def test_fault_tolerates_a_reset_inside_the_block(toxiproxy: Toxiproxy, proxy: Proxy) -> None:
    with faults.latency(proxy, 5), faults.down(proxy):
        toxiproxy.reset()
    assert proxy.toxics() == []


def test_failed_setup_undoes_the_part_already_done(proxy: Proxy, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second toxic of a "both" fault fails to add: the first one must not stay behind."""
    real_add = proxy.add_toxic
    calls: list[str] = []

    def add_then_fail(type: str, **kwargs: Any) -> Toxic:
        calls.append(type)
        if len(calls) == 2:
            raise ToxiproxyError("POST", "stub", 500, "injected failure")
        return real_add(type, **kwargs)

    monkeypatch.setattr(proxy, "add_toxic", add_then_fail)
    with pytest.raises(ToxiproxyError, match="injected"), faults.latency(proxy, 5, stream="both"):
        pytest.fail("the body must not run when setup failed")
    assert proxy.toxics() == []


def test_bad_stream_is_rejected(proxy: Proxy) -> None:
    with pytest.raises(ValueError, match="stream"), faults.latency(proxy, 5, stream="sideways"):  # type: ignore[arg-type]
        pass
