"""The admin HTTP servers: ``/ready``, ``/live``, ``/metrics`` for the pod network; ``/config`` and
``POST /drain`` on loopback only.

A deliberately tiny HTTP/1.1 server (one request per connection, ``Connection: close``): it serves probes
and scrapes, not traffic, so it needs no framework and no keep-alive. It listens twice, as Istio splits its
admin port (15000, localhost) from its stats and health ports (15020/15021):

- the **stats & health** listener (``admin.address:admin.port``, reachable by the kubelet and Prometheus)
  answers ``/ready``, ``/live`` and ``/metrics`` only; anything else is 404;
- the **admin** listener (``admin.localAddress:admin.localPort``, loopback) answers everything:

- ``GET /ready``: 200 ``LIVE`` once every listener is bound; 503 before that and while draining (so the
  kubelet takes the pod out of Services during a drain);
- ``GET /live``: 200 while the event loop answers;
- ``GET /metrics``: Prometheus text;
- ``GET /config``: ``{"version": ..., "config": {...}}``, the running config with the file's keys (every
  task's address, the app port: not for the pod network);
- ``POST /drain`` (``?inboundonly`` = ingress listeners only, like ECS's ``drain_listeners?inboundonly``):
  stop accepting and drain connections; the process keeps running until SIGTERM.

The admin listener also refuses ``/config`` and ``/drain`` (403) to a peer that is not on loopback, in case
a loopback-bound socket is ever reached from outside (``route_localnet``).
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from sc_proxy.netbind import listening_socket

MAX_REQUEST_HEAD = 8192
REQUEST_TIMEOUT = 5.0

_REASONS = {
    200: "OK", 202: "Accepted", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 431: "Request Header Fields Too Large", 503: "Service Unavailable",
}  # fmt: skip


@dataclass
class AdminState:
    """What the admin server reports; main keeps it current."""

    version: str
    config_json: Callable[[], bytes]
    metrics: Callable[[], bytes]
    drain: Callable[[bool], None]  # inbound_only
    ready: bool = False
    draining: bool = False


def _response(status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


#: The paths the stats & health listener serves (the pod network may read them).
PUBLIC_PATHS = frozenset({"/ready", "/live", "/metrics"})


def handle(state: AdminState, method: str, target: str, *, admin: bool, local: bool = True) -> bytes:
    """The response for one request (pure, testable). ``admin``: asked on the loopback admin listener (else
    the stats & health one); ``local``: the caller is on loopback."""
    path, _, query = target.partition("?")
    if path not in PUBLIC_PATHS:
        if not admin:
            return _response(404, b"not found (/config and /drain: the loopback admin port only)\n")
        if path in ("/config", "/drain") and not local:
            return _response(403, f"{path} is answered to loopback only\n".encode())
    if path == "/drain":
        if method != "POST":
            return _response(405, b"use POST\n")
        inbound_only = query == "inboundonly"
        if query and not inbound_only:
            return _response(400, b"the only accepted query is ?inboundonly\n")
        state.drain(inbound_only)
        return _response(202, b"draining\n")
    if method not in ("GET", "HEAD"):
        return _response(405, b"use GET\n")
    if path == "/ready":
        if state.ready and not state.draining:
            return _response(200, b"LIVE\n")
        return _response(503, b"DRAINING\n" if state.draining else b"PRE_INITIALIZING\n")
    if path == "/live":
        return _response(200, b"LIVE\n")
    if path == "/metrics":
        return _response(200, state.metrics(), "text/plain; version=0.0.4; charset=utf-8")
    if path == "/config":
        return _response(200, state.config_json(), "application/json")
    return _response(404, b"not found\n")


class _AdminProtocol(asyncio.Protocol):
    def __init__(self, state: AdminState, admin: bool) -> None:
        self._state = state
        self._admin = admin
        self._buf = b""
        self._transport: asyncio.Transport | None = None
        self._local = False
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        try:
            self._local = ipaddress.ip_address(peer[0]).is_loopback
        except (TypeError, ValueError, IndexError):
            self._local = False
        self._timer = asyncio.get_running_loop().call_later(REQUEST_TIMEOUT, transport.abort)

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        if transport is None:
            return
        self._buf += data
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > MAX_REQUEST_HEAD:
                self._finish(_response(431, b"request head too large\n"))
            return
        line = self._buf[: self._buf.find(b"\r\n")].decode("latin-1")
        parts = line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self._finish(_response(400, b"bad request line\n"))
            return
        response = handle(self._state, parts[0], parts[1], admin=self._admin, local=self._local)
        if parts[0] == "HEAD":  # same head, no body
            response = response[: response.index(b"\r\n\r\n") + 4]
        self._finish(response)

    def _finish(self, response: bytes) -> None:
        transport = self._transport
        self._transport = None
        if self._timer is not None:
            self._timer.cancel()
        if transport is not None:
            transport.write(response)
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()


async def _serve(state: AdminState, host: str, port: int, *, admin: bool) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    what = "admin" if admin else "stats & health"
    try:
        sock = listening_socket(host, port)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot listen on {host}:{port} ({what}): {exc.strerror}") from exc
    return await loop.create_server(lambda: _AdminProtocol(state, admin), sock=sock)


async def start_admin(
    state: AdminState, host: str, port: int, local_host: str, local_port: int
) -> list[asyncio.Server]:
    """Bind the stats & health listener on ``host:port`` and the admin listener on ``local_host:local_port``
    (``::`` accepts IPv4 too)."""
    public = await _serve(state, host, port, admin=False)
    try:
        local = await _serve(state, local_host, local_port, admin=True)
    except OSError:
        public.close()
        raise
    return [public, local]


def close_all(servers: list[asyncio.Server]) -> None:
    for server in servers:
        server.close()
