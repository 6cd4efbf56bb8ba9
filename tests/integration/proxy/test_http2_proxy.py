"""Plain HTTP/2 (appProtocol http2) through a real ``sc-proxy`` process: refused streams retried, 504 on
perRequestTimeout, HTTP/1.1 clients on an http2 listener, h2load as an independent client, drain with
GOAWAY, and a slow consumer that must not grow the proxy's memory (those two with TLS on the listener too)."""

from __future__ import annotations

import contextlib
import json
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    PingAckReceived,
    ResponseReceived,
    StreamEnded,
    TrailersReceived,
)
from h2.settings import SettingCodes

from support.grpc_env import (
    VIP,
    GrpcServer,
    RawH2Client,
    ScriptedH2Server,
    client_config,
    endpoint,
    grpc_frame,
    grpc_request_headers,
    server_config,
)
from support.meshtls import NAME, Pki
from support.proxy import ProxyProcess

MiB = 1024 * 1024


@pytest.fixture
def scripted() -> Iterator[Callable[..., ScriptedH2Server]]:
    made: list[ScriptedH2Server] = []

    def make(name: str, host: str, mode: str = "echo", **kw: int) -> ScriptedH2Server:
        srv = ScriptedH2Server(name, host, mode, **kw)
        made.append(srv)
        return srv

    yield make
    for srv in made:
        srv.close()


def one_hop(
    start_proxy: Callable[..., ProxyProcess], servers: list[ScriptedH2Server], **extra: Any
) -> tuple[ProxyProcess, str]:
    cfg, ports = client_config([endpoint("web", [(s.host, s.port) for s in servers], "http2", **extra)])
    return start_proxy(cfg), f"http://{VIP}:{ports['web']}"


def h2_client() -> httpx.Client:
    # http1=False + http2=True: HTTP/2 with prior knowledge on cleartext.
    return httpx.Client(http1=False, http2=True, timeout=10)


def test_refused_streams_are_retried_on_another_task(
    start_proxy: Callable[..., ProxyProcess], scripted: Callable[..., ScriptedH2Server]
) -> None:
    refuse = scripted("refuse", "127.0.0.41", "refuse")
    echo = scripted("echo", "127.0.0.42")
    proxy, url = one_hop(start_proxy, [refuse, echo])
    with h2_client() as client:
        for i in range(10):
            r = client.post(f"{url}/r{i}", content=f"body-{i}".encode())
            assert r.status_code == 200
            assert r.content == f"body-{i}".encode()
            assert r.headers["x-served-by"] == "echo"
            assert r.http_version == "HTTP/2"
    assert refuse.requests >= 1
    retries = proxy.metric("TargetRetryCount", TargetDiscoveryName="web")
    assert retries == refuse.requests
    assert proxy.metric("RequestCountPerTarget", TargetDiscoveryName="web") == 10
    assert proxy.metric("HTTPCode_Target_2XX_Count", TargetDiscoveryName="web") == 10


def test_refused_everywhere_gives_503_after_two_retries(
    start_proxy: Callable[..., ProxyProcess], scripted: Callable[..., ScriptedH2Server]
) -> None:
    servers = [scripted(f"r{i}", f"127.0.0.{43 + i}", "refuse") for i in range(4)]
    proxy, url = one_hop(start_proxy, servers)
    with h2_client() as client:
        r = client.get(f"{url}/x")
    assert r.status_code == 503
    # The first attempt and two retries, each on a task not tried before.
    assert sum(s.requests for s in servers) == 3
    assert proxy.metric("TargetRetryCount", TargetDiscoveryName="web") == 2


def test_failing_task_is_ejected_and_requests_succeed_elsewhere(
    start_proxy: Callable[..., ProxyProcess], scripted: Callable[..., ScriptedH2Server]
) -> None:
    bad = scripted("bad", "127.0.0.58", "fail")
    good = scripted("good", "127.0.0.59")
    proxy, url = one_hop(start_proxy, [bad, good])
    with h2_client() as client:
        for i in range(30):
            r = client.get(f"{url}/o{i}")
            assert r.status_code == 200
            assert r.headers["x-served-by"] == "good"
    # 503s were retried on the other task; 5 failures ejected the bad one, which then saw no more streams.
    assert bad.requests == 5
    assert proxy.metric("TargetEjectionCount", TargetDiscoveryName="web") == 1
    assert proxy.metric("TargetRetryCount", TargetDiscoveryName="web") == 5


def test_access_log_line_per_stream(
    start_proxy: Callable[..., ProxyProcess], scripted: Callable[..., ScriptedH2Server]
) -> None:
    hang = scripted("hang", "127.0.0.60", "hang")
    web = endpoint("web", [(hang.host, hang.port)], "http2", timeouts={"perRequestTimeoutSeconds": 0.3})
    cfg, ports = client_config([web], accessLog={"format": "JSON"})
    proxy = start_proxy(cfg)
    with h2_client() as client:
        r = client.get(f"http://{VIP}:{ports['web']}/logged?token=secret")
    assert r.status_code == 504
    proxy.stop()
    lines = [json.loads(line) for line in proxy.output().splitlines() if line.startswith("{")]
    assert len(lines) == 1
    rec = lines[0]
    assert (rec["protocol"], rec["method"], rec["path"], rec["status"]) == ("HTTP/2", "GET", "/logged", 504)
    assert rec["response_flags"] == "UT"
    assert rec["upstream_host"] == f"{hang.host}:{hang.port}"


def test_per_request_timeout_answers_504(
    start_proxy: Callable[..., ProxyProcess], scripted: Callable[..., ScriptedH2Server]
) -> None:
    hang = scripted("hang", "127.0.0.47", "hang")
    proxy, url = one_hop(start_proxy, [hang], timeouts={"perRequestTimeoutSeconds": 0.5})
    t0 = time.monotonic()
    with h2_client() as client:
        r = client.get(f"{url}/slow")
    assert r.status_code == 504
    assert r.text == "upstream request timeout"
    assert time.monotonic() - t0 < 2.5
    assert proxy.metric("TargetTimeoutCount", TargetDiscoveryName="web") == 1
    assert proxy.metric("HTTPCode_Target_5XX_Count", TargetDiscoveryName="web") == 1


def test_trailers_both_ways_and_headers_of_plain_http2(
    start_proxy: Callable[..., ProxyProcess], scripted: Callable[..., ScriptedH2Server]
) -> None:
    echo = scripted("echo", "127.0.0.48")
    _, url = one_hop(start_proxy, [echo])
    port = int(url.rsplit(":", 1)[1])
    client = RawH2Client(VIP, port)
    try:
        headers = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/t"), (b":authority", b"web")]
        sid = client.request(headers, b"payload", trailers=[(b"x-checksum", b"abc123")])
        seen: dict[str, Any] = {}
        deadline = time.monotonic() + 10
        while "end" not in seen and time.monotonic() < deadline:
            for ev in client.events():
                if isinstance(ev, ResponseReceived):
                    seen["head"] = dict(ev.headers or [])
                elif isinstance(ev, DataReceived):
                    seen["body"] = seen.get("body", b"") + (ev.data or b"")
                elif isinstance(ev, TrailersReceived):
                    seen["trailers"] = dict(ev.headers or [])
                elif isinstance(ev, StreamEnded) and ev.stream_id == sid:
                    seen["end"] = True
    finally:
        client.close()
    assert seen["head"][b":status"] == b"200"
    assert seen["head"][b"server"] == b"envoy"
    assert b"x-envoy-upstream-service-time" in seen["head"]
    assert seen["body"] == b"payload"
    # Response trailers reached the client, and request trailers reached the task.
    assert seen["trailers"] == {b"x-trailer": b"intact", b"x-request-trailer-x-checksum": b"abc123"}


def test_http11_client_on_an_http2_listener(
    start_proxy: Callable[..., ProxyProcess], scripted: Callable[..., ScriptedH2Server]
) -> None:
    echo = scripted("both", "127.0.0.49")
    _, url = one_hop(start_proxy, [echo])
    with httpx.Client(timeout=10) as client:
        r = client.get(f"{url}/plain")
    assert r.http_version == "HTTP/1.1"
    assert r.status_code == 200
    assert r.text == "both HTTP/1.1"


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load (Debian nghttp2-client) is not installed")
def test_h2load_as_an_independent_client(
    start_proxy: Callable[..., ProxyProcess], scripted: Callable[..., ScriptedH2Server]
) -> None:
    servers = [scripted("a", "127.0.0.50"), scripted("b", "127.0.0.51")]
    proxy, url = one_hop(start_proxy, servers)
    out = subprocess.run(
        ["h2load", "-n", "2000", "-c", "4", "-m", "16", f"{url}/load"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed", out)
    assert m, out
    assert m.groups() == ("2000", "2000", "2000", "2000", "0"), out
    assert re.search(r"status codes: 2000 2xx", out), out
    assert proxy.metric("RequestCountPerTarget", TargetDiscoveryName="web") == 2000
    assert servers[0].requests == servers[1].requests == 1000  # round robin per stream
    # 4 client connections, multiplexed onto a bounded number of upstream connections per task.
    assert servers[0].connections <= 2


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load (Debian nghttp2-client) is not installed")
def test_upstream_goaway_streams_above_it_are_retried_even_without_retry_budget(
    start_proxy: Callable[..., ProxyProcess], scripted: Callable[..., ScriptedH2Server]
) -> None:
    # One task that says GOAWAY after every 10 streams (as nginx does after keepalive_requests) while the
    # proxy has more in flight; no retry budget, like an ingress route.
    srv = scripted("tired", "127.0.0.54", "goaway", goaway_after=10)
    proxy, url = one_hop(start_proxy, [srv], retries={"attempts": 0})
    out = subprocess.run(
        ["h2load", "-n", "200", "-c", "1", "-m", "8", f"{url}/g"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert re.search(r"status codes: 200 2xx", out), out
    assert srv.connections >= 20
    # Streams above a GOAWAY were retried on a fresh connection; none was processed twice.
    assert proxy.metric("TargetRetryCount", TargetDiscoveryName="web") >= 1
    assert srv.requests == 200


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load (Debian nghttp2-client) is not installed")
def test_peer_max_concurrent_streams_is_honoured_with_more_connections(
    start_proxy: Callable[..., ProxyProcess], scripted: Callable[..., ScriptedH2Server]
) -> None:
    srv = scripted("narrow", "127.0.0.57", "slow", max_streams=2)
    _, url = one_hop(start_proxy, [srv])
    out = subprocess.run(
        ["h2load", "-n", "32", "-c", "1", "-m", "8", f"{url}/n"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert re.search(r"status codes: 32 2xx", out), out
    # 8 streams at once from one client connection, at most 2 per upstream connection: 4 connections.
    assert srv.connections >= 4
    assert srv.max_open >= 6


def _grpc_ingress(
    tmp_path: Path, start_proxy: Callable[..., ProxyProcess], **extra: Any
) -> tuple[GrpcServer, ProxyProcess, int]:
    srv = GrpcServer("task", "127.0.0.38", tmp_path / "grpc.log")
    cfg, port = server_config("echo", (srv.host, srv.port), **extra)
    return srv, start_proxy(cfg), port


def _tls_ingress(tmp_path: Path, tls: bool) -> tuple[dict[str, Any], tuple[ssl.SSLContext, str] | None]:
    """(ingress extra, client TLS) for a test run with or without TLS on the ingress listener."""
    if not tls:
        return {}, None
    pki = Pki(tmp_path)
    return {"tls": pki.ingress_tls()}, (ssl.create_default_context(cafile=pki.bundle.file("ca.crt")), NAME)


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
@pytest.mark.parametrize("how", ["POST /drain", "SIGTERM"])
def test_drain_sends_goaway_and_lets_open_streams_finish(
    how: str, tls: bool, tmp_path: Path, start_proxy: Callable[..., ProxyProcess]
) -> None:
    extra, client_tls = _tls_ingress(tmp_path, tls)
    srv, proxy, port = _grpc_ingress(tmp_path, start_proxy, **extra)
    client = RawH2Client("127.0.0.1", port, tls=client_tls)
    try:
        sid = client.request(grpc_request_headers("echo", "ServerStream"), grpc_frame(b"20 100 100"))
        body = b""
        goaway: list[ConnectionTerminated] = []
        trailers: dict[bytes, bytes] = {}
        drained = False
        deadline = time.monotonic() + 20
        ended = False
        while not ended and time.monotonic() < deadline:
            for ev in client.events():
                if isinstance(ev, DataReceived):
                    body += ev.data or b""
                    if not drained:
                        if how == "SIGTERM":
                            assert proxy.popen is not None
                            proxy.popen.send_signal(signal.SIGTERM)
                        else:
                            assert proxy.get("/drain", method="POST")[0] == 202
                        drained = True
                elif isinstance(ev, ConnectionTerminated):
                    goaway.append(ev)
                elif isinstance(ev, TrailersReceived):
                    trailers = dict(ev.headers or [])
                elif isinstance(ev, StreamEnded):
                    ended = True
        assert goaway, "no GOAWAY after drain"
        assert goaway[0].error_code == 0
        assert goaway[0].last_stream_id == sid
        # The open stream finished: all 20 messages of 100 bytes, then OK in the trailers.
        assert len(body) == 20 * 105
        assert trailers[b"grpc-status"] == b"0"
        # The proxy closes the connection once its last stream ended (and, on SIGTERM, then exits 0).
        assert client.events(timeout=5) == [None]
        if how == "SIGTERM":
            assert proxy.popen is not None
            assert proxy.popen.wait(10) == 0
    finally:
        client.close()
        srv.kill()


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_slow_consumer_keeps_proxy_memory_bounded(
    tls: bool, tmp_path: Path, start_proxy: Callable[..., ProxyProcess]
) -> None:
    extra, client_tls = _tls_ingress(tmp_path, tls)
    srv, proxy, port = _grpc_ingress(tmp_path, start_proxy, **extra)
    client = RawH2Client("127.0.0.1", port, window=65535, tls=client_tls)
    try:
        # Warm up the proxy's allocator with a small call first.
        sid = client.request(grpc_request_headers("echo", "ServerStream"), grpc_frame(b"4 1000 0"))
        while not any(isinstance(ev, StreamEnded) for ev in client.events()):
            pass
        base = proxy.rss_kib()
        total = 64
        sid = client.request(
            grpc_request_headers("echo", "ServerStream"), grpc_frame(f"{total} {MiB} 0".encode())
        )
        # Read nothing for a while: the server would have sent 64 MiB by now without flow control.
        time.sleep(3)
        stalled = proxy.rss_kib()
        received = 0
        ended = False
        deadline = time.monotonic() + 60
        while not ended and time.monotonic() < deadline:
            for ev in client.events():
                if isinstance(ev, DataReceived) and ev.stream_id == sid:
                    received += len(ev.data or b"")
                elif isinstance(ev, StreamEnded) and ev.stream_id == sid:
                    ended = True
        after = proxy.rss_kib()
    finally:
        client.close()
        srv.kill()
    print(f"proxy RSS: base {base} KiB, stalled {stalled} KiB, after 64 MiB {after} KiB")
    assert received == total * (MiB + 5)
    assert stalled - base < 16 * 1024, (base, stalled)
    assert after - base < 24 * 1024, (base, after)


def _read_until_goaway(client: RawH2Client, seconds: float = 10) -> ConnectionTerminated | None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for ev in client.events(timeout=1):
            if isinstance(ev, ConnectionTerminated):
                return ev
            if ev is None:
                return None
    return None


def test_oversized_headers_end_the_connection_with_enhance_your_calm(
    start_proxy: Callable[..., ProxyProcess], scripted: Callable[..., ScriptedH2Server]
) -> None:
    echo = scripted("echo", "127.0.0.52")
    proxy, url = one_hop(start_proxy, [echo])
    port = int(url.rsplit(":", 1)[1])
    client = RawH2Client(VIP, port)
    try:
        client.events(timeout=2)  # the proxy's SETTINGS
        head = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"web")]
        client.request([*head, (b"x-big", b"v" * 70_000)])
        goaway = _read_until_goaway(client)
    finally:
        client.close()
    assert goaway is not None
    assert goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert echo.requests == 0
    assert proxy.metric("TargetRejectedCount", TargetDiscoveryName="web") == 1


def test_streams_beyond_max_concurrent_streams_are_a_protocol_error(
    start_proxy: Callable[..., ProxyProcess], scripted: Callable[..., ScriptedH2Server]
) -> None:
    hang = scripted("hang", "127.0.0.53", "hang")
    proxy, url = one_hop(start_proxy, [hang])
    port = int(url.rsplit(":", 1)[1])
    client = RawH2Client(VIP, port)
    try:
        client.events(timeout=2)
        advertised = client.h2.remote_settings.max_concurrent_streams
        assert advertised == 128
        # Play a client that ignores the advertised limit (h2 would refuse to send it otherwise).
        client.h2.remote_settings._settings[SettingCodes.MAX_CONCURRENT_STREAMS] = deque([1000])
        head = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"web")]
        for _ in range(advertised + 1):
            client.request(head)
        goaway = _read_until_goaway(client)
    finally:
        client.close()
    assert goaway is not None
    assert goaway.error_code == ErrorCodes.PROTOCOL_ERROR
    assert proxy.metric("TargetRejectedCount", TargetDiscoveryName="web") == 1


def test_idle_connection_is_closed_with_goaway_after_idle_timeout(
    start_proxy: Callable[..., ProxyProcess], scripted: Callable[..., ScriptedH2Server]
) -> None:
    echo = scripted("echo", "127.0.0.55")
    _, url = one_hop(start_proxy, [echo], timeouts={"idleTimeoutSeconds": 0.5})
    client = RawH2Client(VIP, int(url.rsplit(":", 1)[1]))
    try:
        head = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"web")]
        sid = client.request(head)
        while not any(isinstance(ev, StreamEnded) and ev.stream_id == sid for ev in client.events()):
            pass
        t0 = time.monotonic()
        goaway = _read_until_goaway(client, seconds=5)
        idle_for = time.monotonic() - t0
        assert goaway is not None
        assert goaway.error_code == 0
        assert goaway.last_stream_id == sid
        assert 0.3 < idle_for < 2.0
        assert client.events(timeout=2) == [None]  # then closed
    finally:
        client.close()


def _valid_request_bytes() -> bytes:
    from h2.config import H2Configuration
    from h2.connection import H2Connection

    conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    head = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/f"), (b":authority", b"web")]
    conn.send_headers(1, head)
    conn.send_data(1, b"x" * 100, end_stream=True)
    return bytes(conn.data_to_send())


def test_mutated_frames_never_take_the_proxy_down(
    start_proxy: Callable[..., ProxyProcess], scripted: Callable[..., ScriptedH2Server]
) -> None:
    echo = scripted("echo", "127.0.0.56")
    proxy, url = one_hop(start_proxy, [echo])
    port = int(url.rsplit(":", 1)[1])
    rng = random.Random(7)
    valid = _valid_request_bytes()
    preface_len = 24
    deadline = time.monotonic() + 15
    for i in range(150):
        if time.monotonic() > deadline:
            break
        data = bytearray(valid)
        for _ in range(rng.randint(1, 8)):
            pos = rng.randrange(preface_len, len(data))
            data[pos] = rng.randrange(256)
        if i % 5 == 0:
            data = bytearray(valid[:preface_len]) + bytearray(rng.randbytes(rng.randint(1, 300)))
        with socket.create_connection((VIP, port), timeout=5) as sock:
            sock.sendall(bytes(data))
            sock.settimeout(0.3)
            with contextlib.suppress(OSError):
                while sock.recv(65536):
                    pass
    assert proxy.alive()
    with h2_client() as client:
        r = client.post(f"{url}/after", content=b"still here")
    assert r.status_code == 200
    assert r.content == b"still here"
    assert "Traceback" not in proxy.output()


def test_ping_is_answered(
    start_proxy: Callable[..., ProxyProcess], scripted: Callable[..., ScriptedH2Server]
) -> None:
    echo = scripted("echo", "127.0.0.61")
    _, url = one_hop(start_proxy, [echo])
    client = RawH2Client(VIP, int(url.rsplit(":", 1)[1]))
    try:
        client.h2.ping(b"sc-ping!")
        client.sock.sendall(client.h2.data_to_send())
        acks = []
        deadline = time.monotonic() + 5
        while not acks and time.monotonic() < deadline:
            acks = [ev for ev in client.events(timeout=1) if isinstance(ev, PingAckReceived)]
    finally:
        client.close()
    assert acks
    assert acks[0].ping_data == b"sc-ping!"
