"""DNS discovery against a real DNS server on loopback: A/AAAA + SRV, live changes, failures keep the last
good set. First the discovery source itself, then through a real sc-proxy process."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator

import pytest

from sc_proxy.cluster import Cluster, Host
from sc_proxy.config import DnsDiscovery
from sc_proxy.discovery import DnsSource
from sc_proxy.main import INITIAL_DISCOVERY_WAIT
from support.dnsserver import LocalDns
from support.proxy import ProxyProcess, TcpUpstream, free_port, wait_for

SVC = "backend-sc.shop.svc.cluster.local"
SRV_NAME = f"_sc._tcp.{SVC}"


@pytest.fixture
def dns() -> Iterator[LocalDns]:
    server = LocalDns()
    yield server
    server.close()


@pytest.mark.parametrize("additional", [True, False], ids=["additional-section", "looked-up"])
async def test_srv_targets_with_their_own_ports_and_addresses(dns: LocalDns, additional: bool) -> None:
    dns.set(
        additional=additional,
        srv={SRV_NAME: [("task-1." + SVC, 15080), ("task-2." + SVC, 15081)]},
        a={"task-1." + SVC: ["10.1.0.1"], "task-2." + SVC: ["10.1.0.2"]},
        aaaa={"task-2." + SVC: ["fd00::2"]},
    )
    cluster = Cluster("backend")
    source = DnsSource(cluster, DnsDiscovery(name=SVC, srv_name=SRV_NAME, resolver=dns.resolver))
    assert await source.refresh()
    # A task on a new ingress port (mid-rollout) is reached on that port.
    assert set(cluster.hosts) == {Host("10.1.0.1", 15080), Host("10.1.0.2", 15081), Host("fd00::2", 15081)}
    # With the additional section one query suffices; without it each target is looked up (A + AAAA).
    assert dns.queries == (1 if additional else 5)


async def test_a_records_with_a_fixed_port(dns: LocalDns) -> None:
    dns.set(a={SVC: ["10.1.0.1", "10.1.0.2"]})
    cluster = Cluster("backend")
    source = DnsSource(cluster, DnsDiscovery(name=SVC, port=8080, resolver=dns.resolver))
    assert await source.refresh()
    assert cluster.hosts == (Host("10.1.0.1", 8080), Host("10.1.0.2", 8080))


async def test_changes_are_picked_up_and_failures_keep_the_last_good_set(dns: LocalDns) -> None:
    dns.set(a={SVC: ["10.1.0.1"]})
    cluster = Cluster("backend")
    source = DnsSource(cluster, DnsDiscovery(name=SVC, port=80, resolver=dns.resolver, interval_seconds=0.05))
    await source.start()
    try:
        assert cluster.hosts == (Host("10.1.0.1", 80),)
        dns.set(a={SVC: ["10.1.0.1", "10.1.0.3"]})
        await _until(lambda: len(cluster.hosts) == 2)
        dns.set(failing=True)
        before = source.failures
        await _until(lambda: source.failures >= before + 3)
        assert len(cluster.hosts) == 2  # SERVFAIL: last good set kept
        dns.set(failing=False, a={})  # NXDOMAIN / no records: kept too
        fails = source.failures
        await _until(lambda: source.failures >= fails + 2)
        assert len(cluster.hosts) == 2
        dns.set(a={SVC: ["10.1.0.4"]})
        await _until(lambda: cluster.hosts == (Host("10.1.0.4", 80),))
    finally:
        await source.close()


async def test_unreachable_resolver_keeps_the_set_and_gives_up_in_time() -> None:
    port = free_port()  # nothing answers there
    cluster = Cluster("backend", hosts=[Host("10.1.0.9", 80)])
    source = DnsSource(
        cluster, DnsDiscovery(name=SVC, port=80, resolver=f"127.0.0.1:{port}", interval_seconds=0.2)
    )
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    assert not await source.refresh()
    assert loop.time() - t0 < 3
    assert cluster.hosts == (Host("10.1.0.9", 80),)


async def _until(check: Callable[[], bool], limit: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


def _tag_of(port: int) -> bytes:
    with socket.create_connection(("127.255.0.1", port), timeout=5) as s:
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(100)
            if not chunk:
                break
            data += chunk
        return data.strip()


def test_proxy_follows_dns(
    dns: LocalDns,
    admin_port: int,
    start_proxy: Callable[..., ProxyProcess],
    upstreams: Callable[..., list[TcpUpstream]],
) -> None:
    a, b = upstreams(("a", "127.0.0.2"), ("b", "127.0.0.3"), mode="tag")
    # Each task on its own port, published through SRV like the headless Service's named port.
    dns.set(srv={SRV_NAME: [("a." + SVC, a.port)]}, a={"a." + SVC: [a.host], "b." + SVC: [b.host]})
    alias_port = free_port("127.255.0.1")
    proxy = start_proxy(
        {
            "version": "dns-test",
            "admin": {"address": "127.0.0.1", "port": admin_port},
            "egress": {"mode": "listeners"},
            "endpoints": [
                {
                    "name": "backend",
                    "discovery": {
                        "dns": {
                            "name": SVC,
                            "srvName": SRV_NAME,
                            "resolver": dns.resolver,
                            "intervalSeconds": 0.1,
                        }
                    },
                }
            ],
            "aliases": [{"address": "127.255.0.1", "port": alias_port, "endpoint": "backend"}],
        }
    )
    assert {_tag_of(alias_port) for _ in range(4)} == {b"a"}
    dns.set(srv={SRV_NAME: [("b." + SVC, b.port)]})
    wait_for("traffic moved to b", lambda: _tag_of(alias_port) == b"b")
    assert {_tag_of(alias_port) for _ in range(4)} == {b"b"}
    dns.set(failing=True)
    queries = dns.queries
    wait_for("a few failed resolutions", lambda: dns.queries > queries + 3)
    assert {_tag_of(alias_port) for _ in range(4)} == {b"b"}
    assert "keeping 1 known hosts" in proxy.output()


async def test_start_retries_quickly_until_the_first_records_appear(dns: LocalDns) -> None:
    """A client started just after its server turned Ready gets NXDOMAIN for a moment (seen on a real
    node): start() keeps trying at short intervals, not once per refresh interval, and returns with the
    hosts as soon as the records exist."""
    cluster = Cluster("backend")
    source = DnsSource(
        cluster, DnsDiscovery(name=SVC, srv_name=SRV_NAME, resolver=dns.resolver, interval_seconds=30)
    )
    started = asyncio.get_running_loop().create_task(source.start())
    try:
        await _until(lambda: source.failures >= 2)  # NXDOMAIN, retried well before the 30 s interval
        assert not started.done()
        dns.set(srv={SRV_NAME: [("a." + SVC, 15080)]}, a={"a." + SVC: ["10.1.0.1"]})
        await asyncio.wait_for(started, 5)
        assert cluster.hosts == (Host("10.1.0.1", 15080),)
    finally:
        await source.close()


def test_a_server_calling_its_own_service_is_ready_before_any_task_of_it_is(
    dns: LocalDns,
    admin_port: int,
    start_proxy: Callable[..., ProxyProcess],
    upstreams: Callable[..., list[TcpUpstream]],
) -> None:
    """The first task of a service that also calls itself finds no ready task of it (NXDOMAIN: it is not
    Ready yet). Its own endpoint must not hold /ready back; on a real node that cost every first task
    the whole initial discovery wait (10 s). Once the task is published, calls through the alias reach it."""
    (app,) = upstreams(("app", "127.0.0.2"), mode="tag")
    ingress_port = free_port("127.0.0.1")
    alias_port = free_port("127.255.0.1")
    proxy = start_proxy(
        {
            "version": "own-service",
            "admin": {"address": "127.0.0.1", "port": admin_port},
            "egress": {"mode": "listeners"},
            "ingress": [
                {"discoveryName": "backend", "address": "127.0.0.1", "port": ingress_port,
                 "appAddress": app.host, "appPort": app.port}
            ],
            "endpoints": [
                {"name": "backend", "discovery": {"dns": {
                    "name": SVC, "srvName": SRV_NAME, "resolver": dns.resolver, "intervalSeconds": 0.2}}}
            ],
            "aliases": [{"address": "127.255.0.1", "port": alias_port, "endpoint": "backend"}],
        }
    )  # fmt: skip
    assert proxy.ready_after is not None
    assert proxy.ready_after < INITIAL_DISCOVERY_WAIT / 2, proxy.output()
    dns.set(srv={SRV_NAME: [("a." + SVC, ingress_port)]}, a={"a." + SVC: ["127.0.0.1"]})
    wait_for("its own task to be reachable", lambda: _tag_of(alias_port) == b"app", timeout=10)
