"""The downstream HTTP/1.1 connection's I/O: an asyncio Protocol driving :mod:`sc_proxy.http1.machine`.

One :class:`Http1Connection` per accepted client connection. It only moves bytes and timers: client bytes,
half-close, loss and write back-pressure go to the :class:`~sc_proxy.http1.machine.Http1Machine`, which
holds every rule (pipelining, retries, timeouts, back-pressure decisions, access log) and asks for I/O
through the :class:`~sc_proxy.http1.machine.Driver` methods here (write, pause/resume reading, timers,
connect, close). Upstream connections report straight to the machine. The states, the transition table
and the timer rules (headerTimeoutSeconds, idleTimeout, perRequestTimeout) are documented there.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import cast

from sc_proxy.cluster import Host
from sc_proxy.http1.machine import Exchange, Http1Machine, Timer, UpstreamPool
from sc_proxy.http1.pool import Pool, UpstreamConn, new_pool
from sc_proxy.pools import pool_for
from sc_proxy.route import Route
from sc_proxy.tls import failure_reason, peer_identity


class Http1Connection(asyncio.Protocol):
    """Server side of one client connection (registered with the route's lifecycle while open)."""

    __slots__ = ("loop", "machine", "pool", "route", "timers", "transport")

    def __init__(self, route: Route) -> None:
        self.route = route
        self.loop = asyncio.get_running_loop()
        self.pool: Pool = pool_for(route, "http1", new_pool)
        self.transport: asyncio.Transport | None = None
        self.timers: list[asyncio.TimerHandle | None] = [None, None, None]  # indexed by Timer
        # The pool only ever gets back the connections it made (the machine is typed for any Upstream).
        self.machine = Http1Machine(route, cast(UpstreamPool, self.pool), self, self.loop.time)

    # --- asyncio.Protocol: events to the machine
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without inheriting from it.
        self.transport = cast(asyncio.Transport, transport)
        peer = (peer_identity(transport) or "-") if self.route.caller_identity else "-"
        self.route.lifecycle.register(self)
        self.machine.connection_made(peer)

    def data_received(self, data: bytes) -> None:
        self.machine.data_received(data)

    def eof_received(self) -> bool | None:
        return self.machine.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.route.lifecycle.unregister(self)
        self.machine.connection_lost()  # cancels its timers

    def pause_writing(self) -> None:
        self.machine.writing_paused()

    def resume_writing(self) -> None:
        self.machine.writing_resumed()

    # --- Drainable
    def drain(self) -> None:
        self.machine.drain()

    def abort(self) -> None:
        self.machine.abort()

    # --- Driver: what the machine asks for
    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None:
            transport.write(data)

    def pause_reading(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    def close(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()

    def reset(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def arm_timer(self, timer: Timer, at: float) -> None:
        old = self.timers[timer]
        if old is not None:
            old.cancel()
        self.timers[timer] = self.loop.call_at(at, self._fire, timer)

    def cancel_timer(self, timer: Timer) -> None:
        old = self.timers[timer]
        if old is not None:
            old.cancel()
            self.timers[timer] = None

    def _fire(self, timer: Timer) -> None:
        self.timers[timer] = None
        self.machine.timer_fired(timer)

    def connect(self, ex: Exchange, host: Host) -> None:
        task = self.loop.create_task(self.pool.connect(host))
        task.add_done_callback(lambda t: self._on_connected(ex, host, t))

    def _on_connected(self, ex: Exchange, host: Host, task: asyncio.Task[UpstreamConn]) -> None:
        exc = None if task.cancelled() else task.exception()
        if task.cancelled() or exc is not None:
            tls = failure_reason(exc) if isinstance(exc, ssl.SSLError) else None
            self.machine.upstream_connect_failed(ex, host, tls)
            return
        self.machine.upstream_connected(ex, host, task.result())


def http1_protocol_factory(route: Route) -> asyncio.Protocol:
    """The handler for ``appProtocol: http`` listeners (registered in the listeners' handler registry)."""
    return Http1Connection(route)
