"""The admin server's answers as a pure function of its state (sockets: tests/integration/proxy)."""

from __future__ import annotations

import pytest

from sc_proxy.admin import AdminState, handle


def state() -> tuple[AdminState, list[bool]]:
    drains: list[bool] = []
    s = AdminState(version="v", config_json=lambda: b"{}", metrics=lambda: b"m 1\n", drain=drains.append)
    return s, drains


def status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


@pytest.mark.parametrize("admin", [True, False])
def test_ready_follows_binding_and_draining(admin: bool) -> None:
    s, _ = state()
    assert status(handle(s, "GET", "/ready", admin=admin)) == 503
    s.ready = True
    assert status(handle(s, "GET", "/ready", admin=admin)) == 200
    s.draining = True
    assert handle(s, "GET", "/ready", admin=admin).endswith(b"DRAINING\n")


def test_drain_only_by_post_from_loopback() -> None:
    s, drains = state()
    assert status(handle(s, "GET", "/drain", admin=True)) == 405
    assert status(handle(s, "POST", "/drain", admin=True, local=False)) == 403
    assert drains == []
    assert status(handle(s, "POST", "/drain?inboundonly", admin=True)) == 202
    assert status(handle(s, "POST", "/drain", admin=True)) == 202
    assert drains == [True, False]
    assert status(handle(s, "POST", "/drain?all", admin=True)) == 400


def test_metrics_and_config_content_types() -> None:
    s, _ = state()
    assert b"Content-Type: text/plain; version=0.0.4" in handle(s, "GET", "/metrics", admin=True)
    assert b"Content-Type: application/json" in handle(s, "GET", "/config", admin=True)
    assert status(handle(s, "DELETE", "/config", admin=True)) == 405
    assert status(handle(s, "GET", "/other", admin=True)) == 404
    assert status(handle(s, "GET", "/config", admin=True, local=False)) == 403


def test_stats_listener_serves_probes_and_metrics_only() -> None:
    """The pod-reachable listener never reveals the configuration nor lets anyone drain the proxy."""
    s, drains = state()
    s.ready = True
    assert status(handle(s, "GET", "/ready", admin=False, local=False)) == 200
    assert status(handle(s, "GET", "/live", admin=False, local=False)) == 200
    assert handle(s, "GET", "/metrics", admin=False, local=False).endswith(b"m 1\n")
    for method, path in [("GET", "/config"), ("POST", "/drain"), ("POST", "/drain?inboundonly")]:
        for local in (True, False):
            assert status(handle(s, method, path, admin=False, local=local)) == 404
    assert drains == []
