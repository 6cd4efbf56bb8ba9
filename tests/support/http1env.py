"""Building blocks of the HTTP/1.1 proxy tests: configs, raw-socket exchanges, waiting on metrics."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support.procs import free_port
from support.proxy import ProxyProcess
from support.upstreams import UpstreamProcess

#: The client alias every test uses for the "backend" endpoint (no-privilege listeners mode).
VIP = "127.255.0.1"


def http_endpoint(name: str, hosts: list[tuple[str, int]], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "appProtocol": "http",
        "discovery": {"static": [{"address": h, "port": p} for h, p in hosts]},
        **extra,
    }


def proxy_config(
    endpoints: list[dict[str, Any]],
    *,
    ingress: list[dict[str, Any]] | None = None,
    limits: dict[str, Any] | None = None,
    access_log: dict[str, Any] | None = None,
    drain_seconds: float | None = None,
) -> tuple[dict[str, Any], dict[str, int]]:
    """A config with one alias per endpoint on ``127.255.0.N:free port``; returns (config, {name: port})."""
    ports = {e["name"]: free_port(VIP) for e in endpoints}
    cfg: dict[str, Any] = {
        "version": "test",
        "admin": {"address": "127.0.0.1", "port": free_port()},
        "egress": {"mode": "listeners"},
        "endpoints": endpoints,
        "aliases": [{"address": VIP, "port": ports[e["name"]], "endpoint": e["name"]} for e in endpoints],
    }
    if ingress:
        cfg["ingress"] = ingress
    if limits:
        cfg["limits"] = limits
    if access_log:
        cfg["accessLog"] = access_log
    if drain_seconds is not None:
        cfg["drainSeconds"] = drain_seconds
    return cfg, ports


def start_upstreams(tmp: Path, names: str = "abc", ws: bool = False) -> list[UpstreamProcess]:
    """One upstream process per name, on 127.0.0.2, .3, … (distinct "tasks")."""
    ups = []
    for i, name in enumerate(names):
        host = f"127.0.0.{i + 2}"
        ups.append(
            UpstreamProcess(
                name, host, free_port(host), tmp / f"upstream-{name}.log", free_port(host) if ws else None
            )
        )
    return ups


def raw_exchange(port: int, data: bytes, *, host: str = VIP, timeout: float = 5.0) -> tuple[bytes, bool]:
    """Send ``data``, read until the proxy closes or ``timeout``; (bytes read, closed by the proxy)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(data)
        return read_until_close(sock, timeout)


def read_until_close(sock: socket.socket, timeout: float) -> tuple[bytes, bool]:
    sock.settimeout(timeout)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            piece = sock.recv(65536)
        except TimeoutError:
            return b"".join(chunks), False
        except ConnectionResetError:
            return b"".join(chunks), True
        if not piece:
            return b"".join(chunks), True
        chunks.append(piece)
    return b"".join(chunks), False


def status_of(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response[:100]
    return int(response[9:12])


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def active_connections(proxy: ProxyProcess, endpoint: str = "backend") -> float:
    return proxy.metric("TargetActiveConnectionCount", f'TargetDiscoveryName="{endpoint}"')
