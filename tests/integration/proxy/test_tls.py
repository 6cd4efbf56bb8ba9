"""TLS 1.3 between two real ``sc-proxy`` processes (issue 10, data path): real certificates from a test CA,
real peers (``openssl s_client``, Python's ``ssl``, grpcio, httpx), a byte tap between the proxies.

Addresses: loopback only; upstream apps on 127.0.0.2+ / 127.0.0.31+, client aliases on 127.255.0.x.
"""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509

from support.grpc_env import GrpcServer, ScriptedH2Server
from support.grpc_service import Client as GrpcClient
from support.http1env import VIP, http_endpoint, proxy_config, start_upstreams
from support.meshtls import IDENTITY, NAME, MeshCA, Pki, SecretDir, Tap
from support.procs import free_port
from support.proxy import ProxyProcess, TcpUpstream, wait_for

Start = Callable[..., ProxyProcess]


def server_proxy(
    start: Start,
    app: tuple[str, int],
    protocol: str,
    tls: dict[str, Any] | None,
    name: str = "server",
    **kw: Any,
) -> tuple[ProxyProcess, int]:
    port = free_port()
    ingress: dict[str, Any] = {
        "discoveryName": NAME,
        "address": "127.0.0.1",
        "port": port,
        "appAddress": app[0],
        "appPort": app[1],
        "appProtocol": protocol,
        **kw,
    }
    if tls is not None:
        ingress["tls"] = tls
    cfg: dict[str, Any] = {
        "version": "tls-server",
        "admin": {"address": "127.0.0.1", "port": free_port()},
        "ingress": [ingress],
        "accessLog": {"format": "JSON"},
    }
    return start(cfg, name=name), port


def client_proxy(
    start: Start, hosts: list[tuple[str, int]], protocol: str, tls: dict[str, Any] | None, **extra: Any
) -> tuple[ProxyProcess, int]:
    ep = http_endpoint(NAME, hosts, **extra)
    ep["appProtocol"] = protocol
    if tls is not None:
        ep["tls"] = tls
    cfg, ports = proxy_config([ep], access_log={"format": "JSON"})
    return start(cfg, name="client"), ports[NAME]


def s_client(port: int, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *args],
        input=stdin,
        capture_output=True,
        timeout=20,
    )


def served_serial(port: int, ca_pem: bytes) -> int:
    """The serial of the certificate a fresh Python TLS client is shown."""
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=NAME) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        assert tls.version() == "TLSv1.3"
    return x509.load_der_x509_certificate(der).serial_number


def access_lines(proxy: ProxyProcess) -> list[dict[str, Any]]:
    return [json.loads(line) for line in proxy.output().splitlines() if line.startswith("{")]


def assert_only_tls_crossed(tap: Tap, plaintext: list[bytes]) -> None:
    streams = tap.recorded()
    assert streams, "nothing crossed the tap"
    for sent, answered in streams:
        # A TLS handshake record (content type 22, version 3.x) first, both ways.
        assert sent[:2] == b"\x16\x03", sent[:16]
        assert not answered or answered[:2] == b"\x16\x03", answered[:16]
        for marker in plaintext:
            assert marker not in sent, marker
            assert marker not in answered, marker


# -- the server side: what a TLS client sees ------------------------------------------------------------


@pytest.mark.parametrize(("protocol", "alpn"), [("http", "http/1.1"), ("grpc", "h2"), ("http2", "h2")])
def test_s_client_negotiates_tls13_with_the_certificate_and_alpn(
    start_proxy: Start, pki: Pki, tmp_path: Path, protocol: str, alpn: str
) -> None:
    [app] = start_upstreams(tmp_path, "a")
    server, port = server_proxy(start_proxy, (app.host, app.port), protocol, pki.ingress_tls())
    out = s_client(port, "-servername", NAME, "-alpn", alpn, "-CAfile", pki.bundle.file("ca.crt"),
                   "-verify_return_error")  # fmt: skip
    text = (out.stdout + out.stderr).decode()
    assert out.returncode == 0, text
    assert "New, TLSv1.3, Cipher is TLS_" in text
    assert f"ALPN protocol: {alpn}" in text
    assert f"subject=CN = {NAME}" in text
    assert "Verify return code: 0 (ok)" in text
    assert served_serial(port, pki.ca.pem) == pki.leaf.serial
    assert server.metric("ClientTLSNegotiationErrorCount", DiscoveryName=NAME) == 0
    # /config names the files; no key material in it, the metrics or the log.
    status, shown = server.get("/config")
    assert status == 200
    assert json.loads(shown)["ingress"][0]["tls"]["keyFile"] == pki.server.file("tls.key")
    key_lines = set(pki.leaf.key_pem.splitlines()[1:-1])
    for text in (shown, server.get("/metrics")[1], server.output().encode()):
        assert b"PRIVATE KEY" not in text
        assert not any(line in text for line in key_lines)


def test_tls12_and_plaintext_are_refused_and_counted(start_proxy: Start, pki: Pki, tmp_path: Path) -> None:
    [app] = start_upstreams(tmp_path, "a")
    server, port = server_proxy(start_proxy, (app.host, app.port), "http", pki.ingress_tls())
    out = s_client(port, "-tls1_2", "-servername", NAME)
    assert out.returncode != 0
    # No session: the proxy closes the connection (asyncio's TLS drops the protocol_version alert).
    assert b"New, (NONE), Cipher is (NONE)" in out.stdout
    # Plain HTTP to the TLS port: no answer in plaintext, the connection is closed.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: nginx\r\n\r\n")
        sock.settimeout(5)
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert b"HTTP/1.1" not in answer
    wait_for(
        "two failed handshakes",
        lambda: server.metric("ClientTLSNegotiationErrorCount", DiscoveryName=NAME) == 2,
    )
    failures = [r for r in access_lines(server) if r["transport_failure"] != "-"]
    assert len(failures) == 2
    assert all(r["transport_failure"].startswith("TLS error: ") and r["name"] == NAME for r in failures)
    assert server.alive()


# -- two proxies: every protocol over TLS, and only TLS on the wire -----------------------------------------


def test_http1_between_proxies_is_tls_only(start_proxy: Start, pki: Pki, tmp_path: Path, tap_to: Any) -> None:
    [app] = start_upstreams(tmp_path, "a")
    server, port = server_proxy(start_proxy, (app.host, app.port), "http", pki.ingress_tls())
    tap = tap_to(port)
    client, alias = client_proxy(start_proxy, [("127.0.0.1", tap.port)], "http", pki.endpoint_tls())
    body = b"secret-body-" * 1000
    with httpx.Client(timeout=10) as http:
        for i in range(5):
            r = http.post(f"http://{VIP}:{alias}/upload/{i}", content=body)
            assert r.status_code == 200, r.text
            assert r.json()["body_len"] == len(body)
    assert server.metric("RequestCount", DiscoveryName=NAME) == 5
    assert client.metric("RequestCountPerTarget", TargetDiscoveryName=NAME) == 5
    assert client.metric("TargetTLSNegotiationErrorCount", TargetDiscoveryName=NAME) == 0
    assert_only_tls_crossed(tap, [b"POST /upload", b"HTTP/1.1", b"secret-body-"])


def test_http1_pipelining_and_streaming_over_tls(start_proxy: Start, pki: Pki, tmp_path: Path) -> None:
    [app] = start_upstreams(tmp_path, "a")
    server, port = server_proxy(start_proxy, (app.host, app.port), "http", pki.ingress_tls())
    _, alias = client_proxy(start_proxy, [("127.0.0.1", port)], "http", pki.endpoint_tls())
    # Pipelined: 8 requests in one write, answered in order.
    with socket.create_connection((VIP, alias), timeout=10) as sock:
        sock.sendall(b"".join(f"GET /p/{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for i in range(8)))
        data = b""
        sock.settimeout(10)
        while data.count(b"HTTP/1.1 200") < 8 or not data.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            assert chunk, data[-500:]
            data += chunk
    paths = [json.loads(part[part.index(b"{"):].split(b"\nHTTP/1.1")[0])["path"]
             for part in data.split(b"HTTP/1.1 200")[1:]]  # fmt: skip
    assert paths == [f"/p/{i}" for i in range(8)]
    # 16 MiB up and back through both proxies, TLS between them.
    big = bytes(range(256)) * (16 * 4096)
    with httpx.Client(timeout=30) as http:
        r = http.post(f"http://{VIP}:{alias}/echo", content=big)
    assert r.status_code == 200
    assert r.content == big
    assert server.metric("RequestCount", DiscoveryName=NAME) == 9


def test_grpc_between_proxies_is_tls_only(start_proxy: Start, pki: Pki, tmp_path: Path, tap_to: Any) -> None:
    srv = GrpcServer("task0", "127.0.0.31", tmp_path / "grpc.log")
    try:
        server, port = server_proxy(start_proxy, (srv.host, srv.port), "grpc", pki.ingress_tls())
        tap = tap_to(port)
        _, alias = client_proxy(start_proxy, [("127.0.0.1", tap.port)], "grpc", pki.endpoint_tls())
        client = GrpcClient(f"{VIP}:{alias}")
        try:
            reply, call = client.unary.with_call(b"grpc-secret", timeout=10)
            assert reply == b"grpc-secret"
            assert dict(call.trailing_metadata())["x-trailer"] == "intact"
            streamed = list(client.server_stream(b"5 1000 0", timeout=10))
            assert [len(m) for m in streamed] == [1000] * 5
        finally:
            client.close()
        assert server.metric("GrpcRequestCount", DiscoveryName=NAME) == 2
        assert_only_tls_crossed(tap, [b"PRI * HTTP/2.0", b"grpc-secret", b"application/grpc"])
    finally:
        srv.kill()


def test_http2_between_proxies_is_tls_only(start_proxy: Start, pki: Pki, tap_to: Any) -> None:
    app = ScriptedH2Server("h2app", "127.0.0.41")
    try:
        server, port = server_proxy(start_proxy, (app.host, app.port), "http2", pki.ingress_tls())
        tap = tap_to(port)
        _, alias = client_proxy(start_proxy, [("127.0.0.1", tap.port)], "http2", pki.endpoint_tls())
        with httpx.Client(http1=False, http2=True, timeout=10) as http:
            for _ in range(3):
                r = http.post(f"http://{VIP}:{alias}/x", content=b"h2-secret")
                assert r.status_code == 200
                assert r.http_version == "HTTP/2"
                assert r.content == b"h2-secret"
        # An HTTP/1.1 client of the http2 endpoint: relayed over HTTP/1.1 (ALPN http/1.1) through TLS.
        with httpx.Client(timeout=10) as http:
            r = http.post(f"http://{VIP}:{alias}/x", content=b"h1-secret")
            assert (r.status_code, r.http_version, r.content) == (200, "HTTP/1.1", b"h2app HTTP/1.1")
        assert server.metric("RequestCount", DiscoveryName=NAME) == 4
        assert_only_tls_crossed(tap, [b"PRI * HTTP/2.0", b"h2-secret", b"h1-secret", b"HTTP/1.1"])
    finally:
        app.close()


def test_tcp_between_proxies_is_tls_only(start_proxy: Start, pki: Pki, tap_to: Any) -> None:
    app = TcpUpstream("t", "127.0.0.2", mode="echo")
    try:
        server, port = server_proxy(start_proxy, (app.host, app.port), "tcp", pki.ingress_tls())
        tap = tap_to(port)
        _, alias = client_proxy(start_proxy, [("127.0.0.1", tap.port)], "tcp", pki.endpoint_tls())
        payload = b"tcp-secret-" * 5000
        with socket.create_connection((VIP, alias), timeout=10) as sock:
            sock.sendall(payload)
            # No half-close here: asyncio's TLS transports cannot send one (sidecar/README.md, TLS).
            got = b""
            while len(got) < len(payload) and (chunk := sock.recv(65536)):
                got += chunk
        assert got == payload
        wait_for("the connection counted", lambda: server.metric("RequestCount", DiscoveryName=NAME) == 1)
        assert_only_tls_crossed(tap, [b"tcp-secret-"])
    finally:
        app.close()


# -- certificates a client must refuse -----------------------------------------------------------------


BAD = {
    "untrusted": ("unable to get local issuer certificate", lambda pki: MeshCA("rogue").issue([NAME])),
    "expired": ("certificate has expired", lambda pki: pki.ca.issue([NAME], expired=True)),
    "wrong-name": ("Hostname mismatch", lambda pki: pki.ca.issue(["someone-else"])),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_a_bad_server_certificate_gives_503_and_is_counted(
    start_proxy: Start, pki: Pki, tmp_path: Path, kind: str
) -> None:
    reason, make = BAD[kind]
    [app] = start_upstreams(tmp_path, "a")
    bad = SecretDir(tmp_path / "bad")
    leaf = make(pki)
    bad.write({"tls.crt": leaf.cert_pem, "tls.key": leaf.key_pem})
    tls = {"certFile": bad.file("tls.crt"), "keyFile": bad.file("tls.key")}
    server, port = server_proxy(start_proxy, (app.host, app.port), "http", tls)
    client, alias = client_proxy(start_proxy, [("127.0.0.1", port)], "http", pki.endpoint_tls())
    with httpx.Client(timeout=10) as http:
        r = http.get(f"http://{VIP}:{alias}/")
    assert r.status_code == 503
    # The first attempt and its two retries (to the only task there is) all failed the handshake.
    assert client.metric("TargetTLSNegotiationErrorCount", TargetDiscoveryName=NAME) == 3
    assert client.metric("TargetConnectFailureCount", TargetDiscoveryName=NAME) == 3
    assert server.metric("RequestCount", DiscoveryName=NAME) == 0
    [line] = [r for r in access_lines(client) if r["direction"] == "egress"]
    assert (line["status"], line["response_flags"]) == (503, "UF")
    assert reason in line["transport_failure"], line
    assert client.alive()
    assert server.alive()


def test_a_task_with_a_bad_certificate_is_retried_around_and_ejected(
    start_proxy: Start, pki: Pki, tmp_path: Path
) -> None:
    a, b = start_upstreams(tmp_path, "ab")
    good, good_port = server_proxy(start_proxy, (a.host, a.port), "http", pki.ingress_tls(), name="good")
    rogue = SecretDir(tmp_path / "rogue")
    leaf = MeshCA("rogue").issue([NAME])
    rogue.write({"tls.crt": leaf.cert_pem, "tls.key": leaf.key_pem})
    rogue_tls = {"certFile": rogue.file("tls.crt"), "keyFile": rogue.file("tls.key")}
    _, bad_port = server_proxy(start_proxy, (b.host, b.port), "http", rogue_tls, name="bad")
    client, alias = client_proxy(
        start_proxy, [("127.0.0.1", bad_port), ("127.0.0.1", good_port)], "http", pki.endpoint_tls()
    )
    with httpx.Client(timeout=10) as http:
        statuses = [http.get(f"http://{VIP}:{alias}/{i}").status_code for i in range(20)]
    assert statuses == [200] * 20
    assert good.metric("RequestCount", DiscoveryName=NAME) == 20
    errors = client.metric("TargetTLSNegotiationErrorCount", TargetDiscoveryName=NAME)
    # Outlier detection: five handshake failures eject the task; then it is not tried again.
    assert errors == 5
    assert client.metric("TargetEjectionCount", TargetDiscoveryName=NAME) == 1
    assert client.metric("TargetRetryCount", TargetDiscoveryName=NAME) == 5


# -- rotation -----------------------------------------------------------------------------------------------


def test_rotation_under_load_fails_nothing_and_new_handshakes_get_the_new_certificate(
    start_proxy: Start, pki: Pki, tmp_path: Path
) -> None:
    [app] = start_upstreams(tmp_path, "a")
    server, port = server_proxy(start_proxy, (app.host, app.port), "http", pki.ingress_tls())
    client, alias = client_proxy(start_proxy, [("127.0.0.1", port)], "http", pki.endpoint_tls())
    stop = threading.Event()
    results: list[int] = []
    lock = threading.Lock()

    def load(fresh: bool) -> None:
        # Bounded: at most 2000 requests per thread, and the test stops it within seconds.
        with httpx.Client(timeout=10) as http:
            for i in range(2000):
                if stop.is_set():
                    return
                headers = {"connection": "close"} if fresh else {}
                try:
                    status = http.get(f"http://{VIP}:{alias}/r/{i}", headers=headers).status_code
                except httpx.HTTPError:
                    status = 0
                with lock:
                    results.append(status)

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(load, i % 2 == 0) for i in range(4)]
        wait_for("load running", lambda: len(results) >= 50)
        new = pki.ca.issue([NAME], IDENTITY, serial=2)
        pki.server.write_leaf(new, pki.ca)  # the kubelet's atomic ..data swap
        wait_for(
            "the new certificate served", lambda: served_serial(port, pki.ca.pem) == 2, timeout=15, step=0.2
        )
        seen = len(results)
        wait_for("more load after the swap", lambda: len(results) >= seen + 50)
        stop.set()
        for f in futures:
            f.result()
    assert results
    assert set(results) == {200}, {s: results.count(s) for s in set(results)}
    assert server.metric("TLSReloadCount") == 1
    assert server.metric("TLSReloadErrorCount") == 0
    assert client.metric("TargetTLSNegotiationErrorCount", TargetDiscoveryName=NAME) == 0


def test_ca_rotation_old_and_new_bundle_then_new_leaf_fails_no_connection(
    start_proxy: Start, pki: Pki
) -> None:
    """The operator's CA rotation: clients first trust old + new CA, then the server gets a leaf of the new
    CA, then the old CA leaves the bundle. TCP: every client connection is a new TLS connection."""
    app = TcpUpstream("t", "127.0.0.2", mode="tag")
    try:
        server, port = server_proxy(start_proxy, (app.host, app.port), "tcp", pki.ingress_tls())
        client, alias = client_proxy(start_proxy, [("127.0.0.1", port)], "tcp", pki.endpoint_tls())
        failures: list[bytes] = []

        def connect() -> bool:
            with socket.create_connection((VIP, alias), timeout=10) as sock:
                sock.settimeout(10)
                line = sock.recv(100)
            if not line.startswith(b"t"):
                failures.append(line)
            return True

        new_ca = MeshCA("mesh-ca-2")
        pki.bundle.write({"ca.crt": pki.ca.pem + new_ca.pem})
        wait_for("the client trusting both CAs", lambda: connect() and client.metric("TLSReloadCount") == 1,
                 timeout=15, step=0.2)  # fmt: skip
        pki.server.write_leaf(new_ca.issue([NAME], IDENTITY, serial=7), new_ca)
        both = pki.ca.pem + new_ca.pem
        wait_for("the new leaf served", lambda: connect() and served_serial(port, both) == 7,
                 timeout=15, step=0.2)  # fmt: skip
        pki.bundle.write({"ca.crt": new_ca.pem})
        wait_for("the old CA dropped", lambda: connect() and client.metric("TLSReloadCount") == 2,
                 timeout=15, step=0.2)  # fmt: skip
        assert connect()
        assert failures == []
        assert client.metric("TargetTLSNegotiationErrorCount", TargetDiscoveryName=NAME) == 0
        assert server.metric("ClientTLSNegotiationErrorCount", DiscoveryName=NAME) == 0
    finally:
        app.close()


def test_a_broken_new_certificate_keeps_the_old_one(start_proxy: Start, pki: Pki, tmp_path: Path) -> None:
    [app] = start_upstreams(tmp_path, "a")
    server, port = server_proxy(start_proxy, (app.host, app.port), "http", pki.ingress_tls())
    other = pki.ca.issue([NAME], serial=3)
    # The certificate of one key with another key: refused, the old pair keeps serving.
    pki.server.write({"tls.crt": other.cert_pem, "tls.key": pki.leaf.key_pem, "ca.crt": pki.ca.pem})
    wait_for("the reload error counted", lambda: (served_serial(port, pki.ca.pem) == 1
             and server.metric("TLSReloadErrorCount") == 1), timeout=15, step=0.2)  # fmt: skip
    assert server.metric("TLSReloadCount") == 0
    assert "KEY_VALUES_MISMATCH" in server.output() or "key values mismatch" in server.output().lower()
    assert "PRIVATE KEY" not in server.output()
    # Fixed files are picked up.
    pki.server.write_leaf(other, pki.ca)
    wait_for(
        "the fixed certificate served", lambda: served_serial(port, pki.ca.pem) == 3, timeout=15, step=0.2
    )


# -- mutual TLS (beyond ECS) ---------------------------------------------------------------------------------


FRONTEND = "spiffe://shop-ns/ns/shop/connectservice/frontend"


def test_mutual_tls_admits_listed_callers_and_logs_their_identity(
    start_proxy: Start, pki: Pki, tmp_path: Path
) -> None:
    [app] = start_upstreams(tmp_path, "a")
    tls = pki.ingress_tls(clientCaFile=pki.bundle.file("ca.crt"), allowedCallers=[FRONTEND])
    server, port = server_proxy(start_proxy, (app.host, app.port), "http", tls)
    caller = SecretDir(tmp_path / "tls" / "frontend")
    caller.write_leaf(pki.ca.issue(["frontend"], FRONTEND), pki.ca)
    _client, alias = client_proxy(
        start_proxy, [("127.0.0.1", port)], "http",
        pki.endpoint_tls(certFile=caller.file("tls.crt"), keyFile=caller.file("tls.key")),
    )  # fmt: skip
    with httpx.Client(timeout=10) as http:
        assert http.get(f"http://{VIP}:{alias}/").status_code == 200
    [line] = [r for r in access_lines(server) if r["direction"] == "ingress"]
    assert line["peer_identity"] == FRONTEND
    # No client certificate, or one from another CA: the handshake fails.
    stranger = SecretDir(tmp_path / "stranger")
    leaf = MeshCA("other").issue(["frontend"], FRONTEND)
    stranger.write({"tls.crt": leaf.cert_pem, "tls.key": leaf.key_pem})
    for args in (
        (),
        ("-cert", stranger.file("tls.crt"), "-key", stranger.file("tls.key")),
    ):
        out = s_client(port, "-servername", NAME, "-CAfile", pki.bundle.file("ca.crt"), *args,
                       stdin=b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # fmt: skip
        assert b"HTTP/1.1 200" not in out.stdout
    wait_for("refused handshakes counted",
             lambda: server.metric("ClientTLSNegotiationErrorCount", DiscoveryName=NAME) == 2)  # fmt: skip
    # A caller from the CA that is not in allowedCallers: closed after the handshake, counted.
    intruder = SecretDir(tmp_path / "intruder")
    intruder.write_leaf(
        pki.ca.issue(["intruder"], "spiffe://shop-ns/ns/shop/connectservice/intruder"), pki.ca
    )
    cert_args = ("-cert", intruder.file("tls.crt"), "-key", intruder.file("tls.key"))
    out = s_client(port, "-servername", NAME, *cert_args, stdin=b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"HTTP/1.1 200" not in out.stdout
    wait_for("the intruder rejected", lambda: server.metric("RejectedCount", DiscoveryName=NAME) == 1)
    refused = [r for r in access_lines(server) if r["response_flags"] == "UAEX"]
    assert [r["peer_identity"] for r in refused] == ["spiffe://shop-ns/ns/shop/connectservice/intruder"]
    assert server.metric("RequestCount", DiscoveryName=NAME) == 1


def test_unusable_tls_files_stop_the_start_naming_the_field(
    start_proxy: Start, pki: Pki, tmp_path: Path
) -> None:
    missing = {"certFile": str(tmp_path / "nope.crt"), "keyFile": pki.server.file("tls.key")}
    with pytest.raises(RuntimeError) as err:
        server_proxy(start_proxy, ("127.0.0.1", 9), "http", missing)
    assert f"ingress.0.tls.certFile: cannot read {tmp_path / 'nope.crt'}: No such file" in str(err.value)
    # Readable files that do not go together: the block is named, with OpenSSL's reason.
    other = pki.ca.issue([NAME])
    pki.server.write({"tls.crt": other.cert_pem, "tls.key": pki.leaf.key_pem})
    with pytest.raises(RuntimeError) as err:
        server_proxy(start_proxy, ("127.0.0.1", 9), "http", pki.ingress_tls(), name="mismatch")
    assert "ingress.0.tls: the TLS files cannot be used: KEY_VALUES_MISMATCH" in str(err.value)


def test_timeouts_and_drain_behave_over_tls_as_in_plaintext(
    start_proxy: Start, pki: Pki, tmp_path: Path
) -> None:
    [app] = start_upstreams(tmp_path, "a")
    server, port = server_proxy(start_proxy, (app.host, app.port), "http", pki.ingress_tls())
    client, alias = client_proxy(
        start_proxy,
        [("127.0.0.1", port)],
        "http",
        pki.endpoint_tls(),
        timeouts={"perRequestTimeoutSeconds": 1},
    )
    with httpx.Client(timeout=10) as http:
        assert http.get(f"http://{VIP}:{alias}/delay/3000").status_code == 504
    assert client.metric("TargetTimeoutCount", TargetDiscoveryName=NAME) == 1
    # SIGTERM with requests in flight over pooled TLS connections: every one is answered.
    with ThreadPoolExecutor(8) as pool, httpx.Client(timeout=10) as http:
        futures = [
            pool.submit(lambda: http.get(f"http://{VIP}:{alias}/delay/400").status_code) for _ in range(8)
        ]
        wait_for(
            "requests in flight", lambda: server.metric("ActiveConnectionCount", DiscoveryName=NAME) >= 8
        )
        assert client.popen is not None
        client.popen.send_signal(signal.SIGTERM)
        assert [f.result() for f in futures] == [200] * 8
    assert client.popen.wait(10) == 0


def test_websocket_upgrade_crosses_tls_between_proxies(start_proxy: Start, pki: Pki, tmp_path: Path) -> None:
    from websockets.sync.client import connect

    (ws_up,) = start_upstreams(tmp_path, "w", ws=True)
    try:
        assert ws_up.ws_port is not None
        _, port = server_proxy(start_proxy, (ws_up.host, ws_up.ws_port), "http", pki.ingress_tls())
        _, alias = client_proxy(start_proxy, [("127.0.0.1", port)], "http", pki.endpoint_tls())
        with connect(f"ws://{VIP}:{alias}/ws", open_timeout=5) as ws:
            for message in ("hello", "x" * 100_000, b"\x00\x01binary"):
                ws.send(message)
                assert ws.recv(timeout=5) == message
    finally:
        ws_up.stop()
