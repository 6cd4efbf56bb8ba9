"""The admin server's answers as a pure function of its state (sockets: tests/integration/proxy)."""

from __future__ import annotations

from sc_proxy.admin import AdminState, handle


def state() -> tuple[AdminState, list[bool]]:
    drains: list[bool] = []
    s = AdminState(version="v", config_json=lambda: b"{}", metrics=lambda: b"m 1\n", drain=drains.append)
    return s, drains


def status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def test_ready_follows_binding_and_draining() -> None:
    s, _ = state()
    assert status(handle(s, "GET", "/ready")) == 503
    s.ready = True
    assert status(handle(s, "GET", "/ready")) == 200
    s.draining = True
    assert handle(s, "GET", "/ready").endswith(b"DRAINING\n")


def test_drain_only_by_post_from_loopback() -> None:
    s, drains = state()
    assert status(handle(s, "GET", "/drain")) == 405
    assert status(handle(s, "POST", "/drain", local=False)) == 403
    assert drains == []
    assert status(handle(s, "POST", "/drain?inboundonly")) == 202
    assert status(handle(s, "POST", "/drain")) == 202
    assert drains == [True, False]
    assert status(handle(s, "POST", "/drain?all")) == 400


def test_metrics_and_config_content_types() -> None:
    s, _ = state()
    assert b"Content-Type: text/plain; version=0.0.4" in handle(s, "GET", "/metrics")
    assert b"Content-Type: application/json" in handle(s, "GET", "/config")
    assert status(handle(s, "DELETE", "/config")) == 405
    assert status(handle(s, "GET", "/other")) == 404
