"""Upstream HTTP/1.1 connections and their keep-alive pool.

One :class:`Pool` per route (see :mod:`sc_proxy.pools`). A connection is handed back to the pool only after
a complete response to a complete request (never mid-message), at most ``max_idle_per_host`` are kept per
host, and pooled connections idle longer than the route's idle timeout are closed by a sweeper. A pooled
connection the upstream closes leaves the pool at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import TYPE_CHECKING, cast

from sc_proxy.cluster import Cluster, Host
from sc_proxy.config import Via
from sc_proxy.http1.machine import UpstreamOwner
from sc_proxy.http1.parse import ResponseEvent, ResponseReader
from sc_proxy.tls import ClientTls, dial

if TYPE_CHECKING:
    from collections.abc import Callable

    from sc_proxy.route import Route

#: Idle upstream connections kept per task; enough for the downstream connections a sidecar typically
#: multiplexes, small enough that a burst does not leave hundreds of sockets open.
MAX_IDLE_PER_HOST = 128


class UpstreamConn(asyncio.Protocol):
    """One connection to a task. Bound to at most one owner (exchange) at a time."""

    __slots__ = ("closed", "host", "idle_since", "owner", "pool", "raw", "reader", "received", "transport")

    def __init__(self, pool: Pool, host: Host) -> None:
        self.pool = pool
        self.host = host
        self.transport: asyncio.Transport | None = None
        self.owner: UpstreamOwner | None = None
        self.reader: ResponseReader | None = None
        self.received = False  # any response byte on the current request (retry is off after that)
        self.raw = False  # switched to a byte relay after 101
        self.closed = False
        self.idle_since = 0.0

    # --- asyncio.Protocol --------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without inheriting from it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        owner = self.owner
        if owner is None:
            # An idle pooled connection must be silent; anything else means it is unusable.
            self.close()
            return
        self.received = True
        if self.raw:
            owner.upstream_raw(self, data)
            return
        reader = self.reader
        assert reader is not None
        events = reader.feed(data)
        if events:
            owner.upstream_events(self, events)

    def eof_received(self) -> bool | None:
        return False  # close the socket; an HTTP/1.1 peer half-closing is done with us

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        owner = self.owner
        if owner is not None:
            self.owner = None
            owner.upstream_lost(self)
        else:
            self.pool.forget(self)

    def pause_writing(self) -> None:
        if self.owner is not None:
            self.owner.upstream_flow(self, True)

    def resume_writing(self) -> None:
        if self.owner is not None:
            self.owner.upstream_flow(self, False)

    # --- use ---------------------------------------------------------------------------------------------
    def bind(
        self, owner: UpstreamOwner, head_request: bool, max_header_bytes: int, max_header_count: int = 100
    ) -> None:
        """Start a request/response cycle for ``owner``."""
        self.owner = owner
        reader = self.reader
        if reader is not None and reader.reusable:
            reader.reset(head_request)
        else:
            self.reader = ResponseReader(head_request, max_header_bytes, max_header_count)
        self.received = False

    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not self.closed:
            transport.write(data)

    def write_eof(self) -> None:
        transport = self.transport
        if transport is not None and transport.can_write_eof():
            transport.write_eof()

    def pause_reading(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    def feed_eof(self) -> list[ResponseEvent]:
        """What the response parser makes of the connection's end (a close-delimited body ends there)."""
        reader = self.reader
        return reader.feed_eof() if reader is not None else []

    def close(self) -> None:
        self.owner = None
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()
        self.pool.forget(self)

    def abort(self) -> None:
        self.owner = None
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.abort()
        self.pool.forget(self)


class Pool:
    """Idle keep-alive connections of one cluster, per host."""

    __slots__ = (
        "_idle",
        "_loop",
        "_sweeper",
        "cluster",
        "connect_timeout",
        "idle_timeout",
        "max_idle_per_host",
        "tls",
        "via",
    )

    def __init__(
        self,
        cluster: Cluster,
        idle_timeout: float | None,
        connect_timeout: float,
        max_idle_per_host: int = MAX_IDLE_PER_HOST,
        tls: ClientTls | None = None,
        via: Via | None = None,
    ) -> None:
        self.cluster = cluster
        self.tls = tls
        self.via = via
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.max_idle_per_host = max_idle_per_host
        self._idle: dict[Host, deque[UpstreamConn]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweeper: asyncio.TimerHandle | None = None

    def take(self, host: Host) -> UpstreamConn | None:
        """A pooled connection to ``host`` (most recently used first: the least likely to be timed out)."""
        queue = self._idle.get(host)
        while queue:
            conn = queue.pop()
            transport = conn.transport
            if not conn.closed and transport is not None and not transport.is_closing():
                return conn
        return None

    def put(self, conn: UpstreamConn) -> None:
        """Return a connection after a complete response; closes it if the pool is full."""
        conn.owner = None
        if conn.closed:
            return
        queue = self._idle.get(conn.host)
        if queue is None:
            queue = self._idle[conn.host] = deque()
        if len(queue) >= self.max_idle_per_host or conn.host not in self.cluster.hosts:
            conn.close()
            return
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        conn.idle_since = loop.time()
        queue.append(conn)
        if self._sweeper is None and self.idle_timeout is not None:
            self._sweeper = loop.call_later(self._sweep_interval(), self._sweep)

    def forget(self, conn: UpstreamConn) -> None:
        queue = self._idle.get(conn.host)
        if queue:
            with contextlib.suppress(ValueError):
                queue.remove(conn)

    def _sweep_interval(self) -> float:
        assert self.idle_timeout is not None
        return max(0.05, min(self.idle_timeout / 4, 5.0))

    def _sweep(self) -> None:
        self._sweeper = None
        assert self._loop is not None
        assert self.idle_timeout is not None
        deadline = self._loop.time() - self.idle_timeout
        remaining = 0
        for queue in list(self._idle.values()):
            # Oldest first: stop at the first connection still young enough.
            while queue and queue[0].idle_since <= deadline:
                queue.popleft().close()
            remaining += len(queue)
        if remaining:
            self._sweeper = self._loop.call_later(self._sweep_interval(), self._sweep)

    async def connect(self, host: Host) -> UpstreamConn:
        """A new connection to ``host`` (TLS when the route has it); raises ``ssl.SSLError`` (a failed
        handshake), ``OSError`` or ``TimeoutError``."""
        loop = asyncio.get_running_loop()
        conn = UpstreamConn(self, host)
        factory: Callable[[], UpstreamConn] = lambda: conn  # noqa: E731
        await dial(
            loop, factory, host.address, host.port, self.tls, "http/1.1", self.connect_timeout, self.via
        )
        return conn


def new_pool(route: Route) -> Pool:
    """The HTTP/1.1 pool of ``route`` (for :func:`sc_proxy.pools.pool_for`)."""
    return Pool(route.cluster, route.idle_timeout, route.connect_timeout, tls=route.tls, via=route.via)
