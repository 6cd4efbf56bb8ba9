"""Gateway mode on loopback (issue 13, the ``gateway`` network shape): a client proxy whose endpoint has
``via`` → a gateway ``sc-proxy`` → the server's ``sc-proxy`` → the app, with mutual TLS end to end (a byte
tap between the gateway and the server sees only TLS); the gateway refusing every destination that is not
an allowed task, and counting it.

Addresses: loopback only; the app on 127.0.0.2+, client aliases on 127.255.0.x.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from sc_proxy import proxyproto
from support.http1env import VIP, http_endpoint, proxy_config, start_upstreams
from support.meshtls import IDENTITY, NAME, Pki
from support.procs import free_port
from support.proxy import ProxyProcess, wait_for

Start = Callable[..., ProxyProcess]


def gateway_proxy(start: Start, allow: list[tuple[str, int]]) -> tuple[ProxyProcess, int]:
    port = free_port()
    cfg: dict[str, Any] = {
        "version": "gateway",
        "admin": {"address": "127.0.0.1", "port": free_port()},
        "gateway": {
            "address": "127.0.0.1",
            "port": port,
            "headerTimeoutSeconds": 1,
            "allow": [{"static": [{"address": a, "port": p} for a, p in allow]}],
        },
    }
    return start(cfg, name="gateway"), port


def server_proxy(start: Start, app: tuple[str, int], tls: dict[str, Any] | None) -> tuple[ProxyProcess, int]:
    port = free_port()
    cfg: dict[str, Any] = {
        "version": "server",
        "admin": {"address": "127.0.0.1", "port": free_port()},
        "ingress": [
            {
                "discoveryName": NAME,
                "address": "127.0.0.1",
                "port": port,
                "appAddress": app[0],
                "appPort": app[1],
                "appProtocol": "http",
                **({"tls": tls} if tls else {}),
            }
        ],
    }
    return start(cfg, name="server"), port


def client_proxy(
    start: Start, task: tuple[str, int], gateway_port: int, tls: dict[str, Any]
) -> tuple[ProxyProcess, int]:
    ep = http_endpoint(NAME, [task], tls=tls, via={"address": "127.0.0.1", "port": gateway_port})
    cfg, ports = proxy_config([ep])
    return start(cfg, name="client"), ports[NAME]


def gateway_result(gw: ProxyProcess, result: str) -> float:
    return gw.metric("GatewayConnectionCount", Result=result)


def test_client_reaches_the_server_through_the_gateway_with_mtls_end_to_end(
    start_proxy: Start, pki: Pki, tmp_path: Path, tap_to: Any
) -> None:
    [app] = start_upstreams(tmp_path, "a")
    server, server_port = server_proxy(
        start_proxy,
        (app.host, app.port),
        pki.ingress_tls(clientCaFile=pki.bundle.file("ca.crt"), allowedCallers=[IDENTITY]),
    )
    tap = tap_to(server_port)  # the task's address as the client and the gateway know it
    gw, gw_port = gateway_proxy(start_proxy, [("127.0.0.1", tap.port)])
    client, alias = client_proxy(
        start_proxy,
        ("127.0.0.1", tap.port),
        gw_port,
        pki.endpoint_tls(certFile=pki.server.file("tls.crt"), keyFile=pki.server.file("tls.key")),
    )
    body = b"secret-body-" * 500
    with httpx.Client(timeout=10) as http:
        for i in range(5):
            r = http.post(f"http://{VIP}:{alias}/upload/{i}", content=body)
            assert r.status_code == 200, r.text
            assert r.json()["body_len"] == len(body)
    assert server.metric("RequestCount", DiscoveryName=NAME) == 5
    assert client.metric("RequestCountPerTarget", TargetDiscoveryName=NAME) == 5
    assert gateway_result(gw, "routed") >= 1
    assert gateway_result(gw, "refused") == 0
    # What the gateway passed on is TLS from the first byte: the header went no further, and the
    # gateway never saw the request.
    streams = tap.recorded()
    assert streams
    for sent, answered in streams:
        assert sent[:2] == b"\x16\x03", sent[:16]
        assert proxyproto.SIGNATURE not in sent
        assert b"POST /upload" not in sent
        assert b"secret-body-" not in sent
        assert not answered or answered[:2] == b"\x16\x03"


def _exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` to the gateway and read until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
        return got


def test_the_gateway_is_not_an_open_relay(start_proxy: Start, pki: Pki, tmp_path: Path) -> None:
    [app] = start_upstreams(tmp_path, "a")
    server, server_port = server_proxy(start_proxy, (app.host, app.port), pki.ingress_tls())
    gw, gw_port = gateway_proxy(start_proxy, [("127.0.0.1", server_port)])
    request = f"GET / HTTP/1.1\r\nHost: {NAME}\r\nConnection: close\r\n\r\n".encode()
    # The app itself, behind the sidecar's back: refused (the app answers plain HTTP, so any byte back
    # would mean the gateway relayed).
    assert _exchange(gw_port, proxyproto.encode((app.host, app.port)) + request) == b""
    # The task's address on another port (the gateway's own admin port here), and another address.
    assert _exchange(gw_port, proxyproto.encode(("127.0.0.1", gw.config["admin"]["port"])) + request) == b""
    assert _exchange(gw_port, proxyproto.encode(("127.0.0.9", server_port)) + request) == b""
    wait_for("refusals counted", lambda: gateway_result(gw, "refused") == 3)
    # No header, a LOCAL header, version 1's text form: closed as bad headers.
    assert _exchange(gw_port, request) == b""
    assert _exchange(gw_port, b"PROXY TCP4 127.0.0.1 127.0.0.1 1 2\r\n" + request) == b""
    wait_for("bad headers counted", lambda: gateway_result(gw, "bad_header") == 2)
    local = proxyproto.SIGNATURE + bytes.fromhex("20000000")  # LOCAL: no destination
    assert _exchange(gw_port, local + request) == b""
    wait_for("LOCAL refused", lambda: gateway_result(gw, "refused") == 4)
    # A header that never comes: closed after headerTimeoutSeconds.
    with socket.create_connection(("127.0.0.1", gw_port), timeout=5) as s:
        s.sendall(proxyproto.SIGNATURE[:6])
        assert s.recv(10) == b""
    assert gateway_result(gw, "header_timeout") == 1
    assert gateway_result(gw, "routed") == 0
    # The allowed task itself is routed (TLS is the server proxy's business, not the gateway's).
    with socket.create_connection(("127.0.0.1", gw_port), timeout=5) as s:
        s.sendall(proxyproto.encode(("127.0.0.1", server_port)) + request)
        s.recv(1)  # the server proxy answers (a TLS alert to plaintext), so bytes did get through
    wait_for("routed", lambda: gateway_result(gw, "routed") == 1)
    assert server.alive()


def test_a_client_to_a_task_the_gateway_does_not_allow_gets_503(
    start_proxy: Start, pki: Pki, tmp_path: Path
) -> None:
    [app] = start_upstreams(tmp_path, "a")
    _server, server_port = server_proxy(start_proxy, (app.host, app.port), pki.ingress_tls())
    gw, gw_port = gateway_proxy(start_proxy, [("127.0.0.1", free_port())])  # some other task
    _client, alias = client_proxy(start_proxy, ("127.0.0.1", server_port), gw_port, pki.endpoint_tls())
    with httpx.Client(timeout=10) as http:
        assert http.get(f"http://{VIP}:{alias}/").status_code == 503
    assert gateway_result(gw, "refused") >= 1
    assert gateway_result(gw, "routed") == 0


@pytest.mark.parametrize(
    "tls",
    [
        pytest.param(True, id="tls"),
        # Plaintext: the gateway's close can reach the client proxy before its request is written (the
        # connection was closed under it while it was being attached); that is retried too.
        pytest.param(False, id="plaintext"),
    ],
)
def test_a_dead_task_behind_the_gateway_is_retried_on_the_other(
    start_proxy: Start, pki: Pki, tmp_path: Path, tls: bool
) -> None:
    [app] = start_upstreams(tmp_path, "a")
    server, server_port = server_proxy(start_proxy, (app.host, app.port), pki.ingress_tls() if tls else None)
    dead = free_port()  # an allowed task that has died: the gateway's connect is refused
    gw, gw_port = gateway_proxy(start_proxy, [("127.0.0.1", server_port), ("127.0.0.1", dead)])
    ep = http_endpoint(
        NAME,
        [("127.0.0.1", dead), ("127.0.0.1", server_port)],
        via={"address": "127.0.0.1", "port": gw_port},
        **({"tls": pki.endpoint_tls()} if tls else {}),
    )
    cfg, ports = proxy_config([ep])
    client = start_proxy(cfg, name="client")
    with httpx.Client(timeout=5) as http:
        for i in range(6):
            r = http.get(f"http://{VIP}:{ports[NAME]}/{i}")
            assert r.status_code == 200, (i, r.text, client.output()[-2000:])
    assert server.metric("RequestCount", DiscoveryName=NAME) == 6
    assert gateway_result(gw, "connect_failed") >= 1
