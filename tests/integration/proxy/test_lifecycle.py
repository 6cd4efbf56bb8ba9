"""SIGTERM drain of a real sc-proxy (reference §3.5): stop accepting, let open streams finish up to
drainSeconds, then exit 0."""

from __future__ import annotations

import contextlib
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from support.proxy import ProxyProcess, TcpUpstream, free_port, wait_for

Start = Callable[..., ProxyProcess]
Ups = Callable[..., list[TcpUpstream]]


def config(admin_port: int, up: TcpUpstream, alias_port: int, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "version": "drain-test",
        "admin": {"address": "127.0.0.1", "port": admin_port},
        "egress": {"mode": "listeners"},
        "endpoints": [{"name": "echo", "discovery": {"static": [{"address": up.host, "port": up.port}]}}],
        "aliases": [{"address": "127.255.0.1", "port": alias_port, "endpoint": "echo"}],
    }
    cfg.update(extra)
    return cfg


def test_sigterm_when_idle_exits_at_once(admin_port: int, start_proxy: Start, upstreams: Ups) -> None:
    (up,) = upstreams(("a", "127.0.0.2"))
    proxy = start_proxy(config(admin_port, up, free_port("127.255.0.1")))
    t0 = time.monotonic()
    assert proxy.stop(signal.SIGTERM, timeout=10) == 0
    assert time.monotonic() - t0 < 3  # nothing in flight: no need to sit out the 20 s drain time


def test_sigterm_lets_open_streams_finish(admin_port: int, start_proxy: Start, upstreams: Ups) -> None:
    (up,) = upstreams(("a", "127.0.0.2"))
    alias_port = free_port("127.255.0.1")
    proxy = start_proxy(config(admin_port, up, alias_port))
    with socket.create_connection(("127.255.0.1", alias_port), timeout=5) as s:
        s.sendall(b"before")
        assert s.recv(100) == b"before"
        assert proxy.popen is not None
        proxy.popen.send_signal(signal.SIGTERM)
        wait_for("/ready to turn 503", lambda: proxy.get("/ready")[0] == 503)
        # No new connections...
        try:
            socket.create_connection(("127.255.0.1", alias_port), timeout=2).close()
        except ConnectionRefusedError:
            pass
        else:
            raise AssertionError("still accepting while draining")
        # ...but the open one keeps working.
        for i in range(5):
            s.sendall(b"during%d" % i)
            assert s.recv(100) == b"during%d" % i
        assert proxy.alive()
        s.shutdown(socket.SHUT_WR)
        assert s.recv(100) == b""
    t0 = time.monotonic()
    assert proxy.popen.wait(10) == 0
    assert time.monotonic() - t0 < 3
    assert "drained; exiting" in proxy.output()


def test_drain_time_bounds_the_wait(admin_port: int, start_proxy: Start, upstreams: Ups) -> None:
    (up,) = upstreams(("a", "127.0.0.2"))
    alias_port = free_port("127.255.0.1")
    proxy = start_proxy(config(admin_port, up, alias_port, drainSeconds=1))
    with socket.create_connection(("127.255.0.1", alias_port), timeout=5) as s:
        s.sendall(b"x")
        assert s.recv(10) == b"x"
        assert proxy.popen is not None
        t0 = time.monotonic()
        proxy.popen.send_signal(signal.SIGTERM)
        assert proxy.popen.wait(10) == 0
        waited = time.monotonic() - t0
        # The client's connection was cut when the drain time ran out.
        with contextlib.suppress(ConnectionResetError):
            assert s.recv(10) == b""
    assert 0.9 < waited < 4
    assert "drain time over: aborting 1 connections" in proxy.output()


def test_a_server_proxy_keeps_refusing_for_its_linger_time(
    admin_port: int, start_proxy: Start, upstreams: Ups
) -> None:
    """lingerSeconds: after SIGTERM the ingress port refuses at once (a caller retries another task) while the
    process, and so the pod's address, stays up that long; a vanished address would leave callers hanging."""
    (app,) = upstreams(("app", "127.0.0.2"))
    port = free_port("127.0.0.1")
    proxy = start_proxy(
        {
            "version": "linger-test",
            "admin": {"address": "127.0.0.1", "port": admin_port},
            "ingress": [
                {"discoveryName": "app", "address": "127.0.0.1", "port": port, "appAddress": app.host,
                 "appPort": app.port}
            ],
            "lingerSeconds": 2,
        }
    )  # fmt: skip
    assert proxy.popen is not None
    t0 = time.monotonic()
    proxy.popen.send_signal(signal.SIGTERM)
    wait_for("/ready to turn 503", lambda: proxy.get("/ready")[0] == 503)
    wait_for("the linger to begin", lambda: "lingerSeconds" in proxy.output())
    refused = time.monotonic()
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        pass
    else:
        raise AssertionError("still accepting while lingering")
    assert time.monotonic() - refused < 0.5  # refused, not left waiting
    assert proxy.alive()
    assert proxy.popen.wait(10) == 0
    assert 1.9 < time.monotonic() - t0 < 5
    assert "drained; exiting" in proxy.output()
