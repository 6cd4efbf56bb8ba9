"""HTTP/1.1 through a real ``sc-proxy`` process to real upstream server processes on loopback.

Every test starts its own proxy from a real config file (so metrics start at zero); the upstreams are h11
servers in their own processes on 127.0.0.2-4 (three "tasks"), killable like a real task.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.http1env import (
    VIP,
    active_connections,
    http_endpoint,
    proxy_config,
    raw_exchange,
    read_until_close,
    start_upstreams,
    status_of,
    wait_for,
)
from support.procs import free_port
from support.proxy import ProxyProcess
from support.upstreams import UpstreamProcess

LABEL = 'TargetDiscoveryName="backend"'


@pytest.fixture
def upstreams(tmp_path: Path) -> Iterator[list[UpstreamProcess]]:
    ups = start_upstreams(tmp_path)
    yield ups
    for u in ups:
        u.stop()


@pytest.fixture
def proxies(tmp_path: Path) -> Iterator[list[ProxyProcess]]:
    started: list[ProxyProcess] = []
    yield started
    for p in started:
        p.stop(signal.SIGKILL)


def start(proxies: list[ProxyProcess], tmp_path: Path, cfg: dict[str, object]) -> ProxyProcess:
    workdir = tmp_path / f"proxy{len(proxies)}"
    workdir.mkdir()
    proxy = ProxyProcess(cfg, workdir)
    proxies.append(proxy)
    return proxy


def backend(ups: list[UpstreamProcess], **extra: object) -> dict[str, object]:
    return http_endpoint("backend", [(u.host, u.port) for u in ups], **extra)


def test_round_robin_and_service_connect_headers(
    upstreams: list[UpstreamProcess], proxies: list[ProxyProcess], tmp_path: Path
) -> None:
    cfg, ports = proxy_config([backend(upstreams)])
    proxy = start(proxies, tmp_path, cfg)
    url = f"http://{VIP}:{ports['backend']}"
    seen: Counter[str] = Counter()
    with httpx.Client(timeout=5) as client:
        for i in range(30):
            r = client.get(f"{url}/hello?i={i}", headers={"x-request-id": f"req-{i}"} if i == 0 else {})
            assert r.status_code == 200
            doc = r.json()
            seen[doc["name"]] += 1
            # What the app sees (reference §5): Host as sent, request id, proto, expected timeout.
            h = doc["headers"]
            assert h["host"] == f"{VIP}:{ports['backend']}"
            assert h["x-forwarded-proto"] == "http"
            assert h["x-envoy-expected-rq-timeout-ms"] == "15000"
            assert h["x-request-id"] == ("req-0" if i == 0 else h["x-request-id"])
            assert len(h["x-request-id"]) == (5 if i == 0 else 36)
            # What the client sees: Envoy's Server header policy and the upstream service time.
            assert r.headers["server"] == "envoy"
            assert int(r.headers["x-envoy-upstream-service-time"]) >= 0
    assert seen == {"a": 10, "b": 10, "c": 10}
    # One keep-alive client connection, reused for all 30 requests.
    assert proxy.metric("TargetNewConnectionCount", LABEL) == 1


def test_exact_metrics_after_a_known_sequence(
    upstreams: list[UpstreamProcess], proxies: list[ProxyProcess], tmp_path: Path
) -> None:
    cfg, ports = proxy_config([backend(upstreams[:1], retries={"attempts": 0})])
    proxy = start(proxies, tmp_path, cfg)
    url = f"http://{VIP}:{ports['backend']}"
    with httpx.Client(timeout=5) as client:
        assert [client.get(f"{url}/{p}").status_code for p in ("a", "b", "c")] == [200, 200, 200]
        assert client.get(f"{url}/status/302").status_code == 302
        assert client.get(f"{url}/status/404").status_code == 404
        assert client.get(f"{url}/status/503").status_code == 503
        r = client.post(f"{url}/sink", content=b"x" * 1000)
        assert r.json()["body_len"] == 1000
    with httpx.Client(timeout=5) as client:
        assert client.get(f"{url}/again").status_code == 200
    wait_for(lambda: active_connections(proxy) == 0, what="connections closed")
    m = proxy.metrics()
    assert m[f"RequestCountPerTarget{{{LABEL}}}"] == 8
    assert m[f"HTTPCode_Target_2XX_Count{{{LABEL}}}"] == 5
    assert m[f"HTTPCode_Target_3XX_Count{{{LABEL}}}"] == 1
    assert m[f"HTTPCode_Target_4XX_Count{{{LABEL}}}"] == 1
    assert m[f"HTTPCode_Target_5XX_Count{{{LABEL}}}"] == 1
    assert m[f"TargetResponseTime_count{{{LABEL}}}"] == 8
    # Measured, not rounded to the event loop's millisecond clock: fast local answers still add up.
    assert 0 < m[f"TargetResponseTime_sum{{{LABEL}}}"] < 8 * 1000
    assert m[f"TargetNewConnectionCount{{{LABEL}}}"] == 2
    assert m[f"TargetActiveConnectionCount{{{LABEL}}}"] == 0
    assert m[f"TargetRetryCount{{{LABEL}}}"] == 0
    assert m[f"TargetTimeoutCount{{{LABEL}}}"] == 0
    # The 1000-byte request body is in the processed bytes, with every response body and head.
    assert m[f"TargetProcessedBytes{{{LABEL}}}"] > 1000


def test_upstream_killed_under_load_fails_no_request_and_is_ejected(
    upstreams: list[UpstreamProcess], proxies: list[ProxyProcess], tmp_path: Path
) -> None:
    # A long ejection, so a slow machine cannot see the task return (and be ejected again) mid-test.
    outlier = {"baseEjectionSeconds": 300, "maxEjectionSeconds": 300}
    cfg, ports = proxy_config([backend(upstreams, outlier=outlier)])
    proxy = start(proxies, tmp_path, cfg)
    url = f"http://{VIP}:{ports['backend']}"
    statuses: Counter[int] = Counter()
    names: Counter[str] = Counter()
    lock = threading.Lock()
    killed = threading.Event()

    def worker(n: int) -> None:
        with httpx.Client(timeout=10) as client:
            for _ in range(n):
                r = client.get(f"{url}/work")
                with lock:
                    statuses[r.status_code] += 1
                    if r.status_code == 200:
                        names[r.json()["name"] + ("-after" if killed.is_set() else "")] += 1

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(worker, 60) for _ in range(8)]
        wait_for(lambda: sum(statuses.values()) >= 100, what="load running")
        upstreams[1].kill()  # task "b" dies without closing anything
        killed.set()
        for f in futures:
            f.result()
    assert statuses == {200: 480}, statuses
    assert names["b-after"] <= 8  # at most the requests already in flight on b when it died
    m = proxy.metrics()
    assert m[f"TargetEjectionCount{{{LABEL}}}"] == 1
    assert m[f"TargetEjectedHosts{{{LABEL}}}"] == 1
    assert m[f"TargetRetryCount{{{LABEL}}}"] >= 1
    assert m[f"HTTPCode_Target_5XX_Count{{{LABEL}}}"] == 0


def test_per_request_timeout_gives_504(
    upstreams: list[UpstreamProcess], proxies: list[ProxyProcess], tmp_path: Path
) -> None:
    cfg, ports = proxy_config([backend(upstreams[:1], timeouts={"perRequestTimeoutSeconds": 0.5})])
    proxy = start(proxies, tmp_path, cfg)
    url = f"http://{VIP}:{ports['backend']}"
    with httpx.Client(timeout=10) as client:
        r = client.get(f"{url}/")
        assert r.json()["headers"]["x-envoy-expected-rq-timeout-ms"] == "500"
        t0 = time.monotonic()
        r = client.get(f"{url}/delay/3000")
        elapsed = time.monotonic() - t0
        assert r.status_code == 504
        assert r.text == "upstream request timeout"
        assert 0.45 < elapsed < 2.0
        # The connection stays usable after a 504 for a complete request.
        assert client.get(f"{url}/").status_code == 200
    assert proxy.metric("TargetTimeoutCount", LABEL) == 1


def test_idle_timeout_closes_idle_connections_and_wins_over_per_request(
    upstreams: list[UpstreamProcess], proxies: list[ProxyProcess], tmp_path: Path
) -> None:
    timeouts = {"idleTimeoutSeconds": 0.5, "perRequestTimeoutSeconds": 10}
    cfg, ports = proxy_config([backend(upstreams[:1], timeouts=timeouts)])
    proxy = start(proxies, tmp_path, cfg)
    port = ports["backend"]
    with socket.create_connection((VIP, port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: backend\r\n\r\n")
        first = sock.recv(65536)
        assert status_of(first) == 200
        t0 = time.monotonic()
        rest, closed = read_until_close(sock, 5)
        assert closed
        assert rest == b""
        assert 0.4 < time.monotonic() - t0 < 2.0
    # idle (0.5 s) < perRequest (10 s): a request that sees no byte for 0.5 s ends then.
    t0 = time.monotonic()
    response, closed = raw_exchange(port, b"GET /delay/3000 HTTP/1.1\r\nHost: backend\r\n\r\n")
    assert status_of(response) == 504
    assert closed
    assert time.monotonic() - t0 < 2.0
    wait_for(lambda: active_connections(proxy) == 0, what="connections closed")


def test_http10_gets_426_and_is_counted(
    upstreams: list[UpstreamProcess], proxies: list[ProxyProcess], tmp_path: Path
) -> None:
    cfg, ports = proxy_config([backend(upstreams[:1])])
    proxy = start(proxies, tmp_path, cfg)
    response, closed = raw_exchange(ports["backend"], b"GET / HTTP/1.0\r\nHost: backend\r\n\r\n")
    assert status_of(response) == 426
    assert response.endswith(b"Upgrade Required")
    assert closed
    assert proxy.metric("TargetHttp10RefusedCount", LABEL) == 1
    assert proxy.metric("HTTPCode_Target_4XX_Count", LABEL) == 1


def test_expect_100_continue_is_forwarded_before_the_body(
    upstreams: list[UpstreamProcess], proxies: list[ProxyProcess], tmp_path: Path
) -> None:
    cfg, ports = proxy_config([backend(upstreams[:1])])
    start(proxies, tmp_path, cfg)
    with socket.create_connection((VIP, ports["backend"]), timeout=5) as sock:
        sock.sendall(
            b"PUT /sink HTTP/1.1\r\nHost: backend\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
        )
        interim = sock.recv(65536)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"  # the body has not been sent yet
        sock.sendall(b"hello")
        final = sock.recv(65536)
        assert status_of(final) == 200
        assert json.loads(final.split(b"\r\n\r\n", 1)[1])["body_len"] == 5


def test_pipelined_requests_are_answered_in_order(
    upstreams: list[UpstreamProcess], proxies: list[ProxyProcess], tmp_path: Path
) -> None:
    cfg, ports = proxy_config([backend(upstreams)])
    start(proxies, tmp_path, cfg)
    delays = [300, 0, 100, 0, 50]
    data = b"".join(
        b"GET /delay/%d?n=%d HTTP/1.1\r\nHost: backend\r\n\r\n" % (d, i) for i, d in enumerate(delays)
    )
    with socket.create_connection((VIP, ports["backend"]), timeout=5) as sock:
        sock.sendall(data + b"GET /last HTTP/1.1\r\nHost: backend\r\nConnection: close\r\n\r\n")
        raw, closed = read_until_close(sock, 10)
    assert closed
    bodies = [
        json.loads(part.split(b"\r\n\r\n", 1)[1].split(b"HTTP/1.1")[0])
        for part in raw.split(b"HTTP/1.1 200")[1:]
    ]
    assert [b["path"] for b in bodies] == [*(f"/delay/{d}?n={i}" for i, d in enumerate(delays)), "/last"]


def test_64_mib_streams_both_ways_with_bounded_memory(
    upstreams: list[UpstreamProcess], proxies: list[ProxyProcess], tmp_path: Path
) -> None:
    cfg, ports = proxy_config([backend(upstreams[:1])])
    proxy = start(proxies, tmp_path, cfg)
    url = f"http://{VIP}:{ports['backend']}"
    size = 64 * 1024 * 1024
    baseline = proxy.rss_kib()
    peak = [baseline]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], proxy.rss_kib())
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        block = bytes(range(256)) * 256  # 64 KiB
        digest = hashlib.sha256()

        def body() -> Iterator[bytes]:
            for _ in range(size // len(block)):
                digest.update(block)
                yield block

        with httpx.Client(timeout=60) as client:
            r = client.post(f"{url}/sink", content=body())  # chunked: no length given
            assert r.status_code == 200
            assert r.json() == {"name": "a", "body_len": size, "sha256": digest.hexdigest()}
            received = 0
            with client.stream("GET", f"{url}/stream/{size}") as resp:
                assert resp.headers["transfer-encoding"] == "chunked"
                for piece in resp.iter_raw():
                    received += len(piece)
            assert received == size
    finally:
        stop.set()
        sampler.join()
    # Neither body is buffered: the proxy grows by far less than one body (64 MiB).
    assert peak[0] - baseline < 16 * 1024, (baseline, peak[0])


def test_websocket_echo_through_the_proxy(proxies: list[ProxyProcess], tmp_path: Path) -> None:
    from websockets.sync.client import connect

    (ws_up,) = start_upstreams(tmp_path, "w", ws=True)
    try:
        assert ws_up.ws_port is not None
        cfg, ports = proxy_config([http_endpoint("backend", [(ws_up.host, ws_up.ws_port)])])
        start(proxies, tmp_path, cfg)
        with connect(f"ws://{VIP}:{ports['backend']}/ws", open_timeout=5) as ws:
            for message in ("hello", "x" * 100_000, b"\x00\x01binary"):
                ws.send(message)
                assert ws.recv(timeout=5) == message
    finally:
        ws_up.stop()


def test_sigterm_during_load_loses_no_in_flight_request(
    upstreams: list[UpstreamProcess], proxies: list[ProxyProcess], tmp_path: Path
) -> None:
    cfg, ports = proxy_config([backend(upstreams)], drain_seconds=10)
    proxy = start(proxies, tmp_path, cfg)
    url = f"http://{VIP}:{ports['backend']}"
    started = threading.Barrier(17)

    def one() -> int:
        with httpx.Client(timeout=10) as client:
            started.wait()
            return client.get(f"{url}/delay/700").status_code

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(one) for _ in range(16)]
        started.wait()
        wait_for(lambda: active_connections(proxy) == 16, what="16 requests in flight")
        proxy.popen.send_signal(signal.SIGTERM)
        results = [f.result() for f in futures]
    assert results == [200] * 16
    assert proxy.popen.wait(10) == 0


def test_two_hops_egress_to_ingress_to_app(
    upstreams: list[UpstreamProcess], proxies: list[ProxyProcess], tmp_path: Path
) -> None:
    app = upstreams[0]
    ingress_port = free_port()
    server_cfg, _ = proxy_config([])
    server_cfg.pop("egress")
    server_cfg["ingress"] = [
        {
            "discoveryName": "backend",
            "address": "127.0.0.1",
            "port": ingress_port,
            "appAddress": app.host,
            "appPort": app.port,
            "appProtocol": "http",
            "timeouts": {"perRequestTimeoutSeconds": 7},
        }
    ]
    server = start(proxies, tmp_path, server_cfg)
    client_cfg, ports = proxy_config([http_endpoint("backend", [("127.0.0.1", ingress_port)])])
    start(proxies, tmp_path, client_cfg)
    with httpx.Client(timeout=5) as client:
        r = client.get(f"http://{VIP}:{ports['backend']}/two?q=secret", headers={"x-request-id": "trace-1"})
    assert r.status_code == 200
    assert r.headers["server"] == "envoy"
    h = r.json()["headers"]
    # The server-side proxy's own timeout reaches the app; the request id survives both hops.
    assert h["x-envoy-expected-rq-timeout-ms"] == "7000"
    assert h["x-request-id"] == "trace-1"
    assert server.metric("RequestCount", 'DiscoveryName="backend"') == 1
    assert server.metric("HTTPCode_2XX_Count", 'DiscoveryName="backend"') == 1


def test_access_log_json_drops_the_query(
    upstreams: list[UpstreamProcess], proxies: list[ProxyProcess], tmp_path: Path
) -> None:
    cfg, ports = proxy_config([backend(upstreams[:1])], access_log={"format": "JSON"})
    proxy = start(proxies, tmp_path, cfg)
    with httpx.Client(timeout=5) as client:
        client.get(f"http://{VIP}:{ports['backend']}/path?token=secret", headers={"x-request-id": "log-1"})
    proxy.stop()
    records = [json.loads(line) for line in proxy.log.read_text().splitlines() if line.startswith("{")]
    assert len(records) == 1
    rec = records[0]
    assert rec["path"] == "/path"
    assert (rec["method"], rec["status"], rec["request_id"]) == ("GET", 200, "log-1")
    assert rec["upstream_host"] == f"{upstreams[0].host}:{upstreams[0].port}"
    assert "secret" not in proxy.log.read_text()
