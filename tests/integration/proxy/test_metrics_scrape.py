"""Scraping a real sc-proxy's ``/metrics`` the way Prometheus does: every Service Connect sample names the
proxy's service and cluster (ECS's (DiscoveryName|TargetDiscoveryName, ServiceName, ClusterName) sets)."""

from __future__ import annotations

import re
from collections.abc import Callable

from support.proxy import ProxyProcess, TcpUpstream, free_port, parse_metrics, tcp_roundtrip, wait_for

Start = Callable[..., ProxyProcess]
Ups = Callable[..., list[TcpUpstream]]

_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})? \S+$")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def test_scrape_names_the_calling_service_and_the_cluster(
    admin_port: int, start_proxy: Start, upstreams: Ups
) -> None:
    app, backend = upstreams(("app", "127.0.0.2"), ("backend", "127.0.0.3"))
    listen = free_port()
    alias_port = free_port("127.255.0.1")
    proxy = start_proxy(
        {
            "version": "front-7f3c",
            "service": {"namespace": "shop", "name": "front", "cluster": "prod-eu"},
            "admin": {"address": "127.0.0.1", "port": admin_port},
            "egress": {"mode": "listeners"},
            "endpoints": [
                {"name": "backend",
                 "discovery": {"static": [{"address": backend.host, "port": backend.port}]}}
            ],
            "aliases": [{"address": "127.255.0.1", "port": alias_port, "endpoint": "backend"}],
            "ingress": [
                {"discoveryName": "front", "address": "127.0.0.1", "port": listen, "appAddress": app.host,
                 "appPort": app.port}
            ],
        }
    )  # fmt: skip
    assert tcp_roundtrip("127.0.0.1", listen, b"in") == b"in"
    assert tcp_roundtrip("127.255.0.1", alias_port, b"out") == b"out"
    wait_for(
        "both connections counted and closed",
        lambda: (
            proxy.metric("RequestCount", DiscoveryName="front") == 1
            and proxy.metric("TargetActiveConnectionCount", TargetDiscoveryName="backend") == 0
        ),
    )

    status, body = proxy.get("/metrics")
    assert status == 200
    text = body.decode()
    service_connect = 0
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a Prometheus sample: {line!r}"
        if m.group(1).startswith("process_"):
            continue
        labels = dict(_LABEL.findall(m.group(2) or ""))
        assert labels.get("ServiceName") == "front", line
        assert labels.get("ClusterName") == "prod-eu", line
        service_connect += 1
    assert service_connect > 30  # every ingress and egress family, not a chosen few

    full = parse_metrics(text, constant_labels=True)
    # Ingress: the serving service; egress: the *calling* service (this one), as ECS defines ServiceName.
    assert full['RequestCount{ServiceName="front",ClusterName="prod-eu",DiscoveryName="front"}'] == 1
    key = 'RequestCountPerTarget{ServiceName="front",ClusterName="prod-eu",TargetDiscoveryName="backend"}'
    assert full[key] == 1
