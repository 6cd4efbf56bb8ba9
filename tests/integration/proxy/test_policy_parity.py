"""One policy, every protocol: the same failure sequence through a real ``sc-proxy`` gives the same retries
and the same ejections over HTTP/1.1, HTTP/2, gRPC and TCP.

The tasks behind the endpoint: ``a`` always answers; ``b`` fails the requests sent while the schedule says
so; ``c`` is dead (nothing listens). ``b``'s failure is what each protocol has: a 503 (HTTP/1.1 and
HTTP/2), a trailers-only UNAVAILABLE (gRPC), a refused connection (TCP: the only failure a TCP proxy
sees). One client sends the requests one by one; each scenario's outcome is worked out by hand from the
seed's rules (retries 2, each avoiding the hosts already tried; 5 failures in 30 s eject; never the last
task) and is the same for every protocol.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from support.grpc_env import VIP as H2_VIP
from support.grpc_env import GrpcServer, ScriptedH2Server, client_config, endpoint
from support.grpc_service import Client
from support.http1env import VIP, http_endpoint, proxy_config, start_upstreams
from support.procs import free_port
from support.proxy import ProxyProcess, TcpUpstream

POLICY: dict[str, Any] = {
    "retries": {"attempts": 2},
    "outlier": {
        "failures": 5,
        "intervalSeconds": 30,
        # Long enough that nothing returns while the test runs.
        "baseEjectionSeconds": 300,
        "maxEjectionSeconds": 300,
        "maxEjectionPercent": 100,
    },
}
FAILED = "failed"  # what a request no task answered gives the client (a 503, UNAVAILABLE, a closed socket)

Start = Callable[..., ProxyProcess]


@dataclass
class Setup:
    """A proxy in front of the tasks, and how to send request ``i`` with ``b`` failing or not."""

    proxy: ProxyProcess
    label: str
    addresses: dict[str, str]  # task name → host:port, as the proxy's log writes it
    send: Callable[[bool], str]  # b fails? → the name of the task that answered, or FAILED
    cleanups: list[Callable[[], object]] = field(default_factory=list)


def _dead(host: str) -> tuple[str, int]:
    return host, free_port(host)


def _addr(host: str, port: int) -> str:
    return f"{host}:{port}"


def http1(start: Start, tmp: Path, tasks: str) -> Setup:
    ups = start_upstreams(tmp, "ab")
    live = {u.name: (u.host, u.port) for u in ups}
    hosts = {**live, "c": _dead("127.0.0.4")}
    cfg, ports = proxy_config([http_endpoint("backend", [hosts[t] for t in tasks], **POLICY)])
    proxy = start(cfg)
    client = httpx.Client(timeout=5)
    url = f"http://{VIP}:{ports['backend']}"

    def send(b_fails: bool) -> str:
        r = client.get(url + ("/fail-on/b/503" if b_fails else "/"))
        return str(r.json()["name"]) if r.status_code == 200 else FAILED

    addresses = {n: _addr(*h) for n, h in hosts.items()}
    return Setup(proxy, "backend", addresses, send, [client.close, *(u.stop for u in ups)])


def http2(start: Start, tmp: Path, tasks: str) -> Setup:
    a, b = ScriptedH2Server("a", "127.0.0.41"), ScriptedH2Server("b", "127.0.0.42")
    hosts = {"a": (a.host, a.port), "b": (b.host, b.port), "c": _dead("127.0.0.43")}
    cfg, ports = client_config([endpoint("web", [hosts[t] for t in tasks], "http2", **POLICY)])
    proxy = start(cfg)
    client = httpx.Client(http1=False, http2=True, timeout=10)
    url = f"http://{H2_VIP}:{ports['web']}"

    def send(b_fails: bool) -> str:
        r = client.get(url + ("/fail-on/b/x" if b_fails else "/ok"))
        assert r.http_version == "HTTP/2"
        return r.headers["x-served-by"] if r.status_code == 200 else FAILED

    addresses = {n: _addr(*h) for n, h in hosts.items()}
    return Setup(proxy, "web", addresses, send, [client.close, a.close, b.close])


def grpc_(start: Start, tmp: Path, tasks: str) -> Setup:
    a = GrpcServer("a", "127.0.0.31", tmp / "a.log")
    b = GrpcServer("b", "127.0.0.32", tmp / "b.log")
    hosts = {"a": (a.host, a.port), "b": (b.host, b.port), "c": _dead("127.0.0.33")}
    cfg, ports = client_config([endpoint("echo", [hosts[t] for t in tasks], **POLICY)])
    proxy = start(cfg)
    client = Client(f"{H2_VIP}:{ports['echo']}")

    def send(b_fails: bool) -> str:
        try:
            reply, call = client.unary.with_call(
                b"ping", metadata=(("x-fail-on", "b"),) if b_fails else (), timeout=10
            )
        except grpc.RpcError as exc:
            code = exc.code()
            return FAILED if code == grpc.StatusCode.UNAVAILABLE else f"unexpected {code}"
        assert reply == b"ping"
        return str(dict(call.trailing_metadata())["x-served-by"])

    addresses = {n: _addr(*h) for n, h in hosts.items()}
    return Setup(proxy, "echo", addresses, send, [client.close, a.kill, b.kill])


def tcp(start: Start, tmp: Path, tasks: str) -> Setup:
    a, b = TcpUpstream("a", "127.0.0.2", mode="tag"), TcpUpstream("b", "127.0.0.3", mode="tag")
    hosts = {"a": (a.host, a.port), "b": (b.host, b.port), "c": _dead("127.0.0.4")}
    alias_port = free_port(VIP)
    static = [{"address": h, "port": p} for h, p in (hosts[t] for t in tasks)]
    proxy = start(
        {
            "version": "parity",
            "admin": {"address": "127.0.0.1", "port": free_port()},
            "egress": {"mode": "listeners"},
            "endpoints": [{"name": "backend", "discovery": {"static": static}, **POLICY}],
            "aliases": [{"address": VIP, "port": alias_port, "endpoint": "backend"}],
        }
    )
    b_up = [True]

    def send(b_fails: bool) -> str:
        # A connection to b cannot be made while b fails: it stops listening for this request.
        if b_fails == b_up[0]:
            b.kill() if b_up[0] else b.start()
            b_up[0] = not b_fails
        with socket.create_connection((VIP, alias_port), timeout=5) as s:
            return s.makefile().readline().strip() or FAILED

    addresses = {n: _addr(*h) for n, h in hosts.items()}
    return Setup(proxy, "backend", addresses, send, [a.close, b.close])


PROTOCOLS = {"http1": http1, "http2": http2, "grpc": grpc_, "tcp": tcp}


@pytest.fixture(params=list(PROTOCOLS))
def make(
    request: pytest.FixtureRequest, start_proxy: Start, tmp_path: Path
) -> Iterator[Callable[[str], Setup]]:
    made: list[Setup] = []

    def build(tasks: str) -> Setup:
        setup = PROTOCOLS[request.param](start_proxy, tmp_path, tasks)
        made.append(setup)
        return setup

    yield build
    for setup in made:
        for close in setup.cleanups:
            close()


def run(setup: Setup, b_fails: Callable[[int], bool], requests: int) -> list[str]:
    return [setup.send(b_fails(i)) for i in range(requests)]


def test_a_task_failing_every_other_request_and_a_dead_task_are_both_ejected(
    make: Callable[[str], Setup],
) -> None:
    # b fails every third request, which under round robin is every other request b receives: it fails
    # requests 1, 4, 7, 10 and 13 and answers 2, 5, 8 and 11 in between. Envoy's consecutive_5xx would never
    # eject it (no two of its failures are consecutive); the seed's "5 in the last 30 s" does, on the 13th.
    # c (dead) fails on requests 1, 3, 4, 6 and 7 and is ejected on the 7th. Every request is answered.
    setup = make("abc")
    served = run(setup, lambda i: i % 3 == 1, 20)
    assert served == ["a", "a", "b", "a", "a", "b", "a", "a", "b", "a", "a", "b"] + ["a"] * 8
    proxy, label = setup.proxy, setup.label
    assert proxy.metric("TargetRetryCount", TargetDiscoveryName=label) == 10
    assert proxy.metric("TargetEjectionCount", TargetDiscoveryName=label) == 2
    assert proxy.metric("TargetEjectedHosts", TargetDiscoveryName=label) == 2
    out = proxy.output()
    ejected_c = out.index(f"outlier: ejected {setup.addresses['c']} from {label} for 300.0 s")
    ejected_b = out.index(f"outlier: ejected {setup.addresses['b']} from {label} for 300.0 s")
    assert ejected_c < ejected_b


def test_a_lone_failing_task_is_retried_and_never_ejected(make: Callable[[str], Setup]) -> None:
    # One task: the retries go back to it (nothing else to try), and the last task is never ejected. b fails
    # every even request: each of those gets the first attempt and 2 retries, all failing.
    setup = make("b")
    served = run(setup, lambda i: i % 2 == 0, 8)
    assert served == [FAILED, "b"] * 4
    proxy, label = setup.proxy, setup.label
    assert proxy.metric("TargetRetryCount", TargetDiscoveryName=label) == 4 * 2
    assert proxy.metric("TargetEjectionCount", TargetDiscoveryName=label) == 0
    assert "outlier: ejected" not in proxy.output()


@pytest.mark.parametrize("protocol", ["http1", "http2"])
def test_a_task_breaking_its_responses_midway_is_ejected(
    protocol: str, start_proxy: Start, tmp_path: Path
) -> None:
    # b sends the head and part of the body, then breaks the response (HTTP/1.1: aborts the connection;
    # HTTP/2: RST_STREAM INTERNAL_ERROR). Too late to retry (the client has the head), but a failure of the
    # task all the same: its 5th broken response within 30 s ejects it, on either protocol.
    if protocol == "http1":
        ups = start_upstreams(tmp_path, "ab")
        cfg, ports = proxy_config([http_endpoint("backend", [(u.host, u.port) for u in ups], **POLICY)])
        url, label, client = f"http://{VIP}:{ports['backend']}", "backend", httpx.Client(timeout=5)
        closers: list[Callable[[], object]] = [u.stop for u in ups]
    else:
        servers = [ScriptedH2Server("a", "127.0.0.41"), ScriptedH2Server("b", "127.0.0.42")]
        cfg, ports = client_config([endpoint("web", [(s.host, s.port) for s in servers], "http2", **POLICY)])
        url, label = f"http://{H2_VIP}:{ports['web']}", "web"
        client = httpx.Client(http1=False, http2=True, timeout=5)
        closers = [s.close for s in servers]
    proxy = start_proxy(cfg)
    served = []
    try:
        for _ in range(14):
            try:
                r = client.get(url + "/fail-on/b/midreset")
                served.append(r.headers.get("x-served-by") or r.json()["name"])
            except httpx.HTTPError:
                served.append("broken")
    finally:
        client.close()
        for close in closers:
            close()
    assert served == ["a", "broken"] * 5 + ["a"] * 4
    assert proxy.metric("TargetEjectionCount", TargetDiscoveryName=label) == 1
    assert proxy.metric("TargetRetryCount", TargetDiscoveryName=label) == 0
