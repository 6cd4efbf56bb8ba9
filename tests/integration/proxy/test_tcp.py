"""TCP relay through a real sc-proxy: echo with half-close, back-pressure, connect retries, idle timeout,
exact metrics. Egress uses the no-privilege per-alias listeners (127.255.0.x) so no iptables is needed."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from support.proxy import ProxyProcess, TcpUpstream, free_port, tcp_roundtrip, wait_for

Start = Callable[..., ProxyProcess]
Ups = Callable[..., list[TcpUpstream]]


def egress_config(
    admin_port: int, hosts: list[tuple[str, int]], alias_port: int, **endpoint: Any
) -> dict[str, Any]:
    return {
        "version": "tcp-test",
        "admin": {"address": "127.0.0.1", "port": admin_port},
        "egress": {"mode": "listeners"},
        "endpoints": [
            {
                "name": "echo",
                "discovery": {"static": [{"address": h, "port": p} for h, p in hosts]},
                **endpoint,
            }
        ],
        "aliases": [{"address": "127.255.0.1", "port": alias_port, "endpoint": "echo"}],
    }


def test_echo_with_half_close_and_exact_metrics(admin_port: int, start_proxy: Start, upstreams: Ups) -> None:
    (up,) = upstreams(("a", "127.0.0.2"))
    alias_port = free_port("127.255.0.1")
    proxy = start_proxy(egress_config(admin_port, [(up.host, up.port)], alias_port))
    payload = os.urandom(1 << 20)
    # The client half-closes after sending: the echo must still arrive in full, then EOF.
    assert tcp_roundtrip("127.255.0.1", alias_port, payload) == payload
    assert tcp_roundtrip("127.255.0.1", alias_port, b"x" * 10) == b"x" * 10
    lbl = {"TargetDiscoveryName": "echo"}
    wait_for("connections closed", lambda: proxy.metric("TargetActiveConnectionCount", **lbl) == 0)
    m = proxy.metrics()
    assert m['RequestCountPerTarget{TargetDiscoveryName="echo"}'] == 2
    assert m['TargetNewConnectionCount{TargetDiscoveryName="echo"}'] == 2
    assert m['TargetProcessedBytes{TargetDiscoveryName="echo"}'] == 2 * (len(payload) + 10)
    assert m['TargetResponseTime_count{TargetDiscoveryName="echo"}'] == 2
    assert m['TargetConnectFailureCount{TargetDiscoveryName="echo"}'] == 0
    assert up.connections == 2


def test_server_half_close_reaches_the_client(admin_port: int, start_proxy: Start, upstreams: Ups) -> None:
    """The upstream speaks first and closes its side; the client still can send afterwards."""
    (up,) = upstreams(("tagger", "127.0.0.2"), mode="tag")
    alias_port = free_port("127.255.0.1")
    start_proxy(egress_config(admin_port, [(up.host, up.port)], alias_port))
    with socket.create_connection(("127.255.0.1", alias_port), timeout=5) as s:
        assert s.recv(100) == b"tagger\n"
        s.sendall(b"after")
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(100):
            data += chunk
        assert data == b"after"


def test_back_pressure_bounds_what_the_proxy_buffers(
    admin_port: int, start_proxy: Start, upstreams: Ups
) -> None:
    """A client that sends but does not read: the echo path fills and the proxy stops reading, so the client's
    sends block after a bounded amount instead of the proxy buffering everything in memory."""
    (up,) = upstreams(("a", "127.0.0.2"))
    alias_port = free_port("127.255.0.1")
    proxy = start_proxy(egress_config(admin_port, [(up.host, up.port)], alias_port))
    rss_before = proxy.rss_kib()
    block = os.urandom(256 * 1024)
    sent = 0
    sent_hash = hashlib.sha256()
    limit = 256 << 20
    with socket.create_connection(("127.255.0.1", alias_port), timeout=5) as s:
        s.setblocking(False)
        stalled_since = None
        deadline = time.monotonic() + 20
        while sent < limit and time.monotonic() < deadline:
            try:
                n = s.send(block)
                sent_hash.update(block[:n])
                sent += n
                stalled_since = None
            except BlockingIOError:
                stalled_since = stalled_since or time.monotonic()
                if time.monotonic() - stalled_since > 1.0:
                    break
                time.sleep(0.01)
        assert stalled_since is not None, f"sent {sent} bytes without ever blocking"
        # Kernel socket buffers on four sockets plus the proxy's high-water marks; far below what was offered.
        assert sent < 64 << 20
        grown = proxy.rss_kib() - rss_before
        assert grown < 32 * 1024, f"proxy grew by {grown} KiB while the client was not reading"
        # Now read: everything comes back intact, in order.
        s.setblocking(True)
        s.shutdown(socket.SHUT_WR)
        h = hashlib.sha256()
        got = 0
        while chunk := s.recv(1 << 20):
            h.update(chunk)
            got += len(chunk)
    assert got == sent
    assert h.hexdigest() == sent_hash.hexdigest()


def test_connect_retries_avoid_the_failed_hosts(admin_port: int, start_proxy: Start, upstreams: Ups) -> None:
    (up,) = upstreams(("a", "127.0.0.4"))
    dead1, dead2 = ("127.0.0.2", free_port("127.0.0.2")), ("127.0.0.3", free_port("127.0.0.3"))
    alias_port = free_port("127.255.0.1")
    # Outlier detection off (threshold unreachable) so every connection meets the dead hosts in round robin.
    proxy = start_proxy(
        egress_config(admin_port, [dead1, dead2, (up.host, up.port)], alias_port, outlier={"failures": 1000})
    )
    for i in range(9):
        assert tcp_roundtrip("127.255.0.1", alias_port, b"ping%d" % i) == b"ping%d" % i
    m = proxy.metrics()
    failures = m['TargetConnectFailureCount{TargetDiscoveryName="echo"}']
    # Each retry advances the round robin too, so every connection meets both dead hosts first, then the live
    # one: two failures and two retries each, and no client ever sees one.
    assert failures == 18
    assert m['TargetRetryCount{TargetDiscoveryName="echo"}'] == failures
    assert up.connections == 9


def test_without_retries_a_dead_host_fails_the_connection(
    admin_port: int, start_proxy: Start, upstreams: Ups
) -> None:
    (up,) = upstreams(("a", "127.0.0.3"))
    dead = ("127.0.0.2", free_port("127.0.0.2"))
    alias_port = free_port("127.255.0.1")
    start_proxy(
        egress_config(
            admin_port,
            [dead, (up.host, up.port)],
            alias_port,
            retries={"attempts": 0},
            outlier={"failures": 1000},
        )
    )
    results = [tcp_roundtrip("127.255.0.1", alias_port, b"hi") for _ in range(4)]
    # The dead host's turns end in a plain close with no bytes.
    assert sorted(results) == [b"", b"", b"hi", b"hi"]


def test_idle_timeout_closes_both_sides(admin_port: int, start_proxy: Start, upstreams: Ups) -> None:
    (up,) = upstreams(("a", "127.0.0.2"))
    alias_port = free_port("127.255.0.1")
    proxy = start_proxy(
        egress_config(admin_port, [(up.host, up.port)], alias_port, timeouts={"idleTimeoutSeconds": 0.5})
    )
    with socket.create_connection(("127.255.0.1", alias_port), timeout=5) as s:
        # Activity keeps it open past the timeout...
        for _ in range(4):
            time.sleep(0.25)
            s.sendall(b"k")
            assert s.recv(10) == b"k"
        # ...silence closes it, half a second after the last byte.
        t0 = time.monotonic()
        assert s.recv(10) == b""
        waited = time.monotonic() - t0
    assert 0.4 < waited < 2.0
    wait_for("upstream side closed", lambda: not up._conns)
    assert proxy.metric("TargetTimeoutCount", TargetDiscoveryName="echo") == 1


def test_idle_timeout_zero_disables(admin_port: int, start_proxy: Start, upstreams: Ups) -> None:
    (up,) = upstreams(("a", "127.0.0.2"))
    alias_port = free_port("127.255.0.1")
    start_proxy(
        egress_config(admin_port, [(up.host, up.port)], alias_port, timeouts={"idleTimeoutSeconds": 0})
    )
    with socket.create_connection(("127.255.0.1", alias_port), timeout=5) as s:
        time.sleep(1.2)
        s.sendall(b"still here")
        assert s.recv(100) == b"still here"


def test_ingress_forwards_to_the_local_app(admin_port: int, start_proxy: Start, upstreams: Ups) -> None:
    (app,) = upstreams(("app", "127.0.0.1"))
    listen = free_port()
    proxy = start_proxy(
        {
            "version": "ingress-test",
            "admin": {"address": "127.0.0.1", "port": admin_port},
            "ingress": [
                {"discoveryName": "front", "address": "127.0.0.1", "port": listen, "appPort": app.port},
            ],
        }
    )
    assert tcp_roundtrip("127.0.0.1", listen, b"hello") == b"hello"
    wait_for("closed", lambda: proxy.metric("ActiveConnectionCount", DiscoveryName="front") == 0)
    m = proxy.metrics()
    assert m['RequestCount{DiscoveryName="front"}'] == 1
    assert m['NewConnectionCount{DiscoveryName="front"}'] == 1
    assert m['ProcessedBytes{DiscoveryName="front"}'] == 10


def test_access_log_for_tcp_connections(admin_port: int, start_proxy: Start, upstreams: Ups) -> None:
    (up,) = upstreams(("a", "127.0.0.2"))
    alias_port = free_port("127.255.0.1")
    cfg = egress_config(admin_port, [(up.host, up.port)], alias_port)
    cfg["accessLog"] = {"format": "JSON"}
    proxy = start_proxy(cfg)
    tcp_roundtrip("127.255.0.1", alias_port, b"12345")
    line = wait_for("access log line", lambda: [x for x in proxy.output().splitlines() if x.startswith("{")])
    assert '"protocol":"TCP"' in line[0]
    assert '"bytes_received":5' in line[0]
    assert '"bytes_sent":5' in line[0]
    assert f'"upstream_host":"127.0.0.2:{up.port}"' in line[0]
