"""The admin servers and start-up of a real sc-proxy: readiness, liveness, metrics, config, drain, refusals,
and the split between the pod-reachable stats & health listener and the loopback admin listener."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from support import tasks
from support.proxy import SC_PROXY, ProxyProcess, TcpUpstream, free_port, http_get

Start = Callable[..., ProxyProcess]


def config(admin_port: int, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "version": "admin-7f3c",
        "service": {"namespace": "shop", "name": "front"},
        "admin": {"address": "127.0.0.1", "port": admin_port, "localPort": free_port()},
    }
    cfg.update(extra)
    return cfg


def test_endpoints(admin_port: int, start_proxy: Start) -> None:
    proxy = start_proxy(config(admin_port))
    assert proxy.get("/ready") == (200, b"LIVE\n")
    assert proxy.get("/live") == (200, b"LIVE\n")
    status, body = proxy.get("/config")
    assert status == 200
    doc = json.loads(body)
    assert doc["version"] == "admin-7f3c"
    assert doc["service"] == {"namespace": "shop", "name": "front", "cluster": ""}
    assert doc["drainSeconds"] == 20
    status, body = proxy.get("/metrics")
    assert status == 200
    assert b"process_resident_memory_bytes" in body
    assert b'\nProxyConfigInfo{ServiceName="front",version="admin-7f3c"} 1\n' in body
    assert proxy.get("/ready", method="HEAD") == (200, b"")
    assert proxy.get("/nope")[0] == 404
    assert proxy.get("/drain")[0] == 405  # GET must not drain
    assert proxy.get("/drain?everything", method="POST")[0] == 400
    assert proxy.get("/ready")[0] == 200
    # The stats & health listener: probes and metrics, never the configuration nor a drain.
    assert proxy.get_stats("/ready") == (200, b"LIVE\n")
    assert proxy.get_stats("/live") == (200, b"LIVE\n")
    assert b"process_resident_memory_bytes" in proxy.get_stats("/metrics")[1]
    assert proxy.get_stats("/config")[0] == 404
    assert proxy.get_stats("/drain", method="POST")[0] == 404
    assert proxy.get_stats("/ready")[0] == 200


def test_unspecified_ipv6_address_accepts_ipv4_too(start_proxy: Start) -> None:
    """``address: "::"`` is dual stack: the kubelet probes an IPv4 pod IP as well as an IPv6 one."""
    port = free_port("::1")
    proxy = start_proxy(config(port) | {"admin": {"address": "::", "port": port, "localAddress": "::1"}})
    for host in ("127.0.0.1", "[::1]"):
        assert http_get(f"http://{host}:{port}/ready") == (200, b"LIVE\n"), host
    assert proxy.get("/config")[0] == 200  # the admin listener on [::1]
    assert proxy.admin.startswith("http://[::1]:")


def test_start_up_is_fast(admin_port: int, start_proxy: Start) -> None:
    proxy = start_proxy(config(admin_port))
    assert proxy.ready_after is not None
    print(f"sc-proxy start to ready: {proxy.ready_after * 1000:.0f} ms")
    # About 0.3 s on an idle 2-core machine (mostly imports); the bound leaves room for a loaded one.
    assert proxy.ready_after < 5.0


def test_post_drain_stops_accepting_and_unreadies(admin_port: int, start_proxy: Start) -> None:
    app = TcpUpstream("app", "127.0.0.1")
    try:
        listen = free_port()
        proxy = start_proxy(
            config(
                admin_port,
                ingress=[
                    {"discoveryName": "front", "address": "127.0.0.1", "port": listen, "appPort": app.port}
                ],
            )
        )
        socket.create_connection(("127.0.0.1", listen), timeout=2).close()
        assert proxy.get("/drain", method="POST") == (202, b"draining\n")
        assert proxy.get("/ready") == (503, b"DRAINING\n")
        try:
            socket.create_connection(("127.0.0.1", listen), timeout=2).close()
        except ConnectionRefusedError:
            pass
        else:
            raise AssertionError("the ingress listener still accepts after POST /drain")
        assert proxy.alive()  # drain is not exit: that is SIGTERM's job
    finally:
        app.close()


def _run(tmp_path: Path, cfg: Any) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return subprocess.run([str(SC_PROXY), "--config", str(path)], capture_output=True, text=True, timeout=30)


def test_invalid_config_is_refused_before_binding(tmp_path: Path, admin_port: int) -> None:
    cfg = config(
        admin_port, endpoints=[{"name": "b", "discovery": {"static": [{"address": "nowhere", "port": 1}]}}]
    )
    # Hold the admin port: a proxy that bound before validating would report that instead.
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", admin_port))
        holder.listen()
        result = _run(tmp_path, cfg)
    assert result.returncode == 2
    assert "endpoints.0.discovery.static.0.address: 'nowhere' is not an IPv4 or IPv6 address" in result.stderr


def test_check_config_subcommand(tmp_path: Path, admin_port: int) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump(config(admin_port)))
    for argv in (["--config", str(path), "check-config"], ["check-config", "--config", str(path)]):
        ok = subprocess.run([str(SC_PROXY), *argv], capture_output=True, text=True, timeout=30)
        assert ok.returncode == 0, ok.stderr
        assert "valid (version admin-7f3c)" in ok.stdout


def test_port_in_use_fails_start_and_never_reports_ready(tmp_path: Path, admin_port: int) -> None:
    listen = free_port()
    cfg = config(
        admin_port, ingress=[{"discoveryName": "f", "address": "127.0.0.1", "port": listen, "appPort": 1}]
    )
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
        holder.bind(("127.0.0.1", listen))
        holder.listen()
        result = _run(tmp_path, cfg)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{listen} (ingress)" in result.stderr


def test_alias_port_taken_by_the_task_in_no_privilege_mode(tmp_path: Path, admin_port: int) -> None:
    alias_port = free_port("127.255.0.1")
    cfg = config(
        admin_port,
        egress={"mode": "listeners"},
        endpoints=[{"name": "b", "discovery": {"static": [{"address": "127.0.0.2", "port": 1}]}}],
        aliases=[{"address": "127.255.0.1", "port": alias_port, "endpoint": "b"}],
    )
    # The task's own container holding the port (in a pod it would bind 0.0.0.0; tests stay on loopback).
    with socket.socket() as app:
        app.bind(("127.255.0.1", alias_port))
        app.listen()
        result = _run(tmp_path, cfg)
    assert result.returncode == 1
    assert f"cannot listen on 127.255.0.1:{alias_port} (egress)" in result.stderr
    assert "cannot share a client-alias port with the task" in result.stderr


def _request(host: str, port: int, path: str, method: str = "GET") -> int:
    conn = http.client.HTTPConnection(host, port, timeout=3)
    try:
        conn.request(method, path)
        return conn.getresponse().status
    finally:
        conn.close()


def test_config_and_drain_are_out_of_reach_of_the_pod_network(tmp_path: Path) -> None:
    """From another pod (a network namespace on a bridge): /ready, /live and /metrics answer, /config and
    /drain do not, on either port; inside the pod the loopback admin port answers everything."""
    if (why := tasks.missing_prerequisites()) is not None:
        pytest.skip(why)
    net = tasks.Network(tmp_path)
    proxy: subprocess.Popen[bytes] | None = None
    try:
        pod, address = net.plug("admin")
        cfg = config(9901) | {"admin": {"address": "0.0.0.0", "port": 9901, "localPort": 9902}}
        path = tmp_path / "proxy.yaml"
        path.write_text(yaml.safe_dump(cfg))
        with (tmp_path / "proxy.log").open("wb") as out:
            proxy = subprocess.Popen(
                ["ip", "netns", "exec", pod, str(SC_PROXY), "--config", str(path)], stdout=out, stderr=out
            )

        def from_peer(port: int, path: str, method: str = "GET") -> int:
            return tasks.in_netns(net.hub, lambda: _request(address, port, path, method))

        deadline = time.monotonic() + 15
        while True:
            assert proxy.poll() is None, (tmp_path / "proxy.log").read_text()
            with contextlib.suppress(OSError):
                if from_peer(9901, "/ready") == 200:
                    break
            assert time.monotonic() < deadline, "the proxy never answered /ready on the pod address"
            time.sleep(0.05)
        assert from_peer(9901, "/live") == 200
        assert from_peer(9901, "/metrics") == 200
        assert from_peer(9901, "/config") == 404
        assert from_peer(9901, "/drain", "POST") == 404
        with pytest.raises(ConnectionRefusedError):
            from_peer(9902, "/config")
        # Inside the pod: everything, on loopback.
        assert tasks.in_netns(pod, lambda: _request("127.0.0.1", 9902, "/config")) == 200
        assert tasks.in_netns(pod, lambda: _request("127.0.0.1", 9902, "/drain", "POST")) == 202
        assert from_peer(9901, "/ready") == 503  # drained: out of Services
    finally:
        if proxy is not None:
            proxy.kill()
            proxy.wait(10)
        net.close()
