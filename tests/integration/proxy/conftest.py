"""Fixtures for the proxy's integration tests: real ``sc-proxy`` processes against real loopback servers.

- ``start_proxy(config)``: write the config, start ``sc-proxy``, wait for ``/ready``; every proxy is
  stopped (SIGKILL if it will not exit) at the end of the test.
- ``admin_port``: a free port for the admin server.
- ``upstreams(*(name, host), mode="echo"|"tag")``: TCP servers in a background thread, closed afterwards.

Distinct 127.0.0.x addresses stand for distinct tasks; client aliases use 127.255.0.x (all loopback).
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.meshtls import Pki, Tap
from support.proxy import ProxyProcess, TcpUpstream, free_port


@pytest.fixture
def admin_port() -> int:
    return free_port()


@pytest.fixture
def start_proxy(tmp_path: Path) -> Iterator[Callable[..., ProxyProcess]]:
    started: list[ProxyProcess] = []

    def start(config: dict[str, Any], name: str = "proxy") -> ProxyProcess:
        proc = ProxyProcess(config, tmp_path, name=name)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop(signal.SIGKILL if proc.alive() else signal.SIGTERM, timeout=5)


@pytest.fixture
def upstreams() -> Iterator[Callable[..., list[TcpUpstream]]]:
    made: list[TcpUpstream] = []

    def make(*specs: tuple[str, str], mode: str = "echo") -> list[TcpUpstream]:
        ups = [TcpUpstream(name, host, mode=mode) for name, host in specs]
        made.extend(ups)
        return ups

    yield make
    for up in made:
        up.close()


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """A mesh CA with server and client certificates (TLS tests)."""
    return Pki(tmp_path)


@pytest.fixture
def tap_to() -> Iterator[Callable[[int], Tap]]:
    """Byte taps in front of a port: what crosses between two proxies (TLS tests)."""
    taps: list[Tap] = []

    def make(port: int) -> Tap:
        tap = Tap(("127.0.0.1", port))
        taps.append(tap)
        return tap

    yield make
    for tap in taps:
        tap.close()
