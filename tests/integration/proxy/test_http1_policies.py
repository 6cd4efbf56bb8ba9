"""Per-request policies of the HTTP/1.1 proxy, end to end: retries (503, reset) to another task with
outlier ejection, the body-replay limit, upstream pooling and its idle timeout, drain of idle keep-alives.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.http1env import VIP, http_endpoint, proxy_config, read_until_close, start_upstreams, status_of
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
def run_proxy(tmp_path: Path) -> Iterator[list[ProxyProcess]]:
    started: list[ProxyProcess] = []
    yield started
    for p in started:
        p.stop(signal.SIGKILL)


def start(
    started: list[ProxyProcess], tmp_path: Path, ups: list[UpstreamProcess], **extra: object
) -> tuple[ProxyProcess, str]:
    cfg, ports = proxy_config([http_endpoint("backend", [(u.host, u.port) for u in ups], **extra)])
    workdir = tmp_path / f"proxy{len(started)}"
    workdir.mkdir()
    proxy = ProxyProcess(cfg, workdir)
    started.append(proxy)
    return proxy, f"http://{VIP}:{ports['backend']}"


@pytest.mark.parametrize("failure", ["503", "reset"])
def test_failures_are_retried_on_another_task_until_it_is_ejected(
    upstreams: list[UpstreamProcess], run_proxy: list[ProxyProcess], tmp_path: Path, failure: str
) -> None:
    outlier = {"baseEjectionSeconds": 300, "maxEjectionSeconds": 300}  # no return while the test runs
    proxy, url = start(run_proxy, tmp_path, upstreams, outlier=outlier)
    answered: Counter[str] = Counter()
    with httpx.Client(timeout=5) as client:
        for _ in range(30):
            r = client.get(f"{url}/fail-on/b/{failure}")
            assert r.status_code == 200
            answered[r.json()["name"]] += 1
    assert answered["b"] == 0
    assert answered["a"] + answered["c"] == 30
    m = proxy.metrics()
    # Each failure on b was retried once elsewhere; the 5th within 30 s ejected b, so it got no more.
    assert m[f"TargetRetryCount{{{LABEL}}}"] == 5
    assert m[f"TargetEjectionCount{{{LABEL}}}"] == 1
    assert m[f"TargetEjectedHosts{{{LABEL}}}"] == 1
    assert m[f"HTTPCode_Target_2XX_Count{{{LABEL}}}"] == 30


def test_only_bodies_up_to_64_kib_are_replayed(
    upstreams: list[UpstreamProcess], run_proxy: list[ProxyProcess], tmp_path: Path
) -> None:
    proxy, url = start(run_proxy, tmp_path, upstreams[:2])  # round robin starts with a, which answers 503
    with httpx.Client(timeout=5) as client:
        big = client.post(f"{url}/fail-on/a/503", content=b"x" * (100 * 1024))
        small_on_b = client.post(f"{url}/fail-on/a/503", content=b"x" * 1024)
        small_on_a = client.post(f"{url}/fail-on/a/503", content=b"x" * 1024)
    assert big.status_code == 503  # not replayable: the task's answer goes to the client
    assert big.text == "status 503 from a"
    assert (small_on_b.status_code, small_on_b.json()["name"]) == (200, "b")
    assert (small_on_a.status_code, small_on_a.json()["name"]) == (200, "b")
    assert small_on_a.json()["body_len"] == 1024  # the replayed body arrived whole
    assert proxy.metric("TargetRetryCount", LABEL) == 1


def test_upstream_connections_are_pooled_and_closed_when_idle(
    upstreams: list[UpstreamProcess], run_proxy: list[ProxyProcess], tmp_path: Path
) -> None:
    _, url = start(run_proxy, tmp_path, upstreams[:1], timeouts={"idleTimeoutSeconds": 1})
    seen = []
    for _ in range(3):
        with httpx.Client(timeout=5) as client:  # a new client connection each time
            seen.append(client.get(f"{url}/").json()["conn_requests"])
    assert seen == [1, 2, 3]  # one upstream connection, reused across client connections
    time.sleep(2.0)  # past the idle timeout: the pooled connection is closed
    with httpx.Client(timeout=5) as client:
        assert client.get(f"{url}/").json()["conn_requests"] == 1


def test_drain_closes_idle_keep_alive_connections_at_once(
    upstreams: list[UpstreamProcess], run_proxy: list[ProxyProcess], tmp_path: Path
) -> None:
    proxy, url = start(run_proxy, tmp_path, upstreams[:1])
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection((VIP, port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: backend\r\n\r\n")
        assert status_of(sock.recv(65536)) == 200
        t0 = time.monotonic()
        proxy.popen.send_signal(signal.SIGTERM)
        rest, closed = read_until_close(sock, 5)
    assert closed
    assert rest == b""
    assert proxy.popen.wait(5) == 0
    assert time.monotonic() - t0 < 3  # not the 20 s drain time: nothing was in flight


def test_a_large_body_is_retried_after_a_connect_failure(
    upstreams: list[UpstreamProcess], run_proxy: list[ProxyProcess], tmp_path: Path
) -> None:
    (tmp_path / "dead").mkdir()
    dead = start_upstreams(tmp_path / "dead", "d")[0]
    dead.kill()  # its address refuses connections: the request was never sent, so any body can go elsewhere
    hosts = [dead, upstreams[0]]
    proxy, url = start(run_proxy, tmp_path, hosts)
    with httpx.Client(timeout=5) as client:
        for _ in range(2):
            r = client.post(f"{url}/sink", content=b"y" * (300 * 1024))
            assert r.status_code == 200
            assert r.json()["body_len"] == 300 * 1024
    # Round robin starts each request at the dead task: two connect failures, each retried once.
    assert proxy.metric("TargetConnectFailureCount", LABEL) == 2
    assert proxy.metric("TargetRetryCount", LABEL) == 2


def test_a_body_after_an_early_answer_is_dropped_cleanly(
    run_proxy: list[ProxyProcess], tmp_path: Path
) -> None:
    # No task at all: the proxy answers 503 at the request head, before the body has arrived.
    proxy, url = start(run_proxy, tmp_path, [])
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection((VIP, port), timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: backend\r\nContent-Length: 20000\r\n\r\n" + b"z" * 10000)
        time.sleep(0.1)
        with contextlib.suppress(OSError):
            sock.sendall(b"z" * 10000)
        data, closed = read_until_close(sock, 5)
    assert status_of(data) == 503
    assert b"no healthy upstream" in data
    assert closed
    assert proxy.alive()
    assert "Traceback" not in proxy.log.read_text()
