"""Round robin and outlier detection through a real sc-proxy against real TCP upstreams: distribution,
a killed task ejected (visible in /metrics) without failing clients, ejection time growing on repeated
failure, and recovery."""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from support.proxy import ProxyProcess, TcpUpstream, free_port, wait_for

Start = Callable[..., ProxyProcess]
Ups = Callable[..., list[TcpUpstream]]
LBL = {"TargetDiscoveryName": "backend"}


def config(admin_port: int, ups: list[TcpUpstream], alias_port: int, **outlier: Any) -> dict[str, Any]:
    return {
        "version": "outlier-test",
        "admin": {"address": "127.0.0.1", "port": admin_port},
        "egress": {"mode": "listeners"},
        "endpoints": [
            {
                "name": "backend",
                "discovery": {"static": [{"address": u.host, "port": u.port} for u in ups]},
                "outlier": outlier,
            }
        ],
        "aliases": [{"address": "127.255.0.1", "port": alias_port, "endpoint": "backend"}],
    }


def tag(port: int) -> str:
    with socket.create_connection(("127.255.0.1", port), timeout=5) as s:
        return s.makefile().readline().strip()


def test_round_robin_spreads_connections_evenly(admin_port: int, start_proxy: Start, upstreams: Ups) -> None:
    ups = upstreams(("a", "127.0.0.2"), ("b", "127.0.0.3"), ("c", "127.0.0.4"), mode="tag")
    alias_port = free_port("127.255.0.1")
    start_proxy(config(admin_port, ups, alias_port))
    assert Counter(tag(alias_port) for _ in range(30)) == {"a": 10, "b": 10, "c": 10}


def test_killed_task_is_ejected_and_no_client_fails(
    admin_port: int, start_proxy: Start, upstreams: Ups
) -> None:
    ups = upstreams(("a", "127.0.0.2"), ("b", "127.0.0.3"), ("c", "127.0.0.4"), mode="tag")
    alias_port = free_port("127.255.0.1")
    proxy = start_proxy(config(admin_port, ups, alias_port))
    ups[1].kill()
    seen = Counter(tag(alias_port) for _ in range(60))
    # Every connection got an answer: the retries went to the other tasks.
    assert sum(seen.values()) == 60
    assert set(seen) == {"a", "c"}
    m = proxy.metrics()
    assert m['TargetEjectionCount{TargetDiscoveryName="backend"}'] == 1
    assert m['TargetEjectedHosts{TargetDiscoveryName="backend"}'] == 1
    # Ejected after exactly 5 connect failures; none after that (it is out of rotation for 30 s).
    assert m['TargetConnectFailureCount{TargetDiscoveryName="backend"}'] == 5
    assert m['TargetRetryCount{TargetDiscoveryName="backend"}'] == 5
    assert f"outlier: ejected 127.0.0.3:{ups[1].port} from backend for 30.0 s" in proxy.output()


def _ejection_duration(proxy: ProxyProcess, alias_port: int, ejections: int) -> float:
    """Drive connections until the ejection count reaches ``ejections``; time until the host is back."""
    wait_for(
        f"ejection #{ejections}",
        lambda: tag(alias_port) and proxy.metric("TargetEjectionCount", **LBL) >= ejections,
        timeout=20,
    )
    t0 = time.monotonic()
    wait_for("return to rotation", lambda: proxy.metric("TargetEjectedHosts", **LBL) == 0, timeout=20)
    return time.monotonic() - t0


def test_ejection_time_grows_and_the_task_recovers(
    admin_port: int, start_proxy: Start, upstreams: Ups
) -> None:
    ups = upstreams(("a", "127.0.0.2"), ("b", "127.0.0.3"), mode="tag")
    alias_port = free_port("127.255.0.1")
    proxy = start_proxy(config(admin_port, ups, alias_port, baseEjectionSeconds=1, maxEjectionSeconds=10))
    ups[1].kill()
    durations = [_ejection_duration(proxy, alias_port, n) for n in (1, 2, 3)]
    # The proxy's decisions: base x 1, x 2, x 3.
    host = f"127.0.0.3:{ups[1].port}"
    for seconds in ("1.0", "2.0", "3.0"):
        assert f"outlier: ejected {host} from backend for {seconds} s" in proxy.output()
    # And what a client observes (scrape polling on a busy machine blurs the edges a little).
    for expected, seen in zip((1, 2, 3), durations, strict=True):
        assert expected - 0.4 < seen < expected + 1.0, durations
    # The task comes back: after its ejection it gets its share again.
    ups[1].start()
    seen = Counter(tag(alias_port) for _ in range(10))
    assert seen == {"a": 5, "b": 5}
