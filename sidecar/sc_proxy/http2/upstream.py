"""Upstream HTTP/2: multiplexed connections per host, shared by every client stream of a route.

A connection takes streams up to the peer's SETTINGS_MAX_CONCURRENT_STREAMS (capped at
:data:`MAX_STREAMS_PER_CONNECTION`); when every connection to a host is full, or stopped taking streams after
a GOAWAY, the pool opens another. Streams wait on a connection until its first SETTINGS arrive, so the
peer's limit is known before any stream is opened.

A GOAWAY with NO_ERROR stops new streams on the connection; streams above its last-stream-id were not
processed and are retried elsewhere (as a refused stream), the others finish. An idle connection (no stream
for ``route.idle_timeout``) is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import TYPE_CHECKING, Final, cast

from sc_proxy.cluster import Host
from sc_proxy.http2 import codec
from sc_proxy.http2.errors import ErrorCodes, H2Error
from sc_proxy.http2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from sc_proxy.http2.frames import SettingCodes
from sc_proxy.http2.interfaces import CONNECT_ERROR
from sc_proxy.http2.side import FlushBatch, H2Side
from sc_proxy.metrics import REGISTRY, Counter
from sc_proxy.tls import dial, failure_reason

if TYPE_CHECKING:
    from sc_proxy.http2.interfaces import UpstreamStream
    from sc_proxy.route import Route

#: Streams one upstream connection carries at most, whatever the peer allows.
MAX_STREAMS_PER_CONNECTION: Final = 100


class UpstreamConnection(H2Side):
    """One HTTP/2 connection to one task."""

    def __init__(self, pool: UpstreamPool, host: Host) -> None:
        super().__init__(pool.batch)
        self.pool = pool
        self.host = host
        self.h2 = codec.client_connection(pool.route.limits.max_header_bytes)
        self.streams: dict[int, UpstreamStream] = {}
        self.waiting: list[UpstreamStream] = []
        self.ready = False  # the peer's SETTINGS arrived
        self.accepting = True  # False after GOAWAY, errors, or idle close
        self.closed = False
        self._idle_since = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None

    # -- capacity --------------------------------------------------------------------------------------
    def limit(self) -> int:
        if not self.ready:
            return MAX_STREAMS_PER_CONNECTION
        return min(self.h2.remote_max_concurrent_streams, MAX_STREAMS_PER_CONNECTION)

    def has_room(self) -> bool:
        return self.accepting and len(self.streams) + len(self.waiting) < self.limit()

    def add(self, stream: UpstreamStream) -> None:
        if self.ready:
            self._open(stream)
        else:
            stream.queued = self
            self.waiting.append(stream)

    def unqueue(self, stream: UpstreamStream) -> None:
        stream.queued = None
        with contextlib.suppress(ValueError):
            self.waiting.remove(stream)

    def _open(self, stream: UpstreamStream) -> None:
        stream.queued = None
        try:
            sid = self.h2.get_next_available_stream_id()
            # Opens the stream in h2 (which checks the peer's concurrency limit once more).
            self.h2.send_headers(sid, stream.up_headers, end_stream=stream.head_ends_request())
        except H2Error:
            # Stream ids exhausted, or the peer lowered its limit under us: this connection takes no
            # more streams; the stream was not sent, so it goes to another connection.
            self.accepting = False
            self.pool.forget(self)
            self.pool.assign(stream.host or self.host, stream)
            return
        self.streams[sid] = stream
        stream.attached(self, sid)

    def stream_done(self, sid: int) -> None:
        self.streams.pop(sid, None)
        if not self.streams:
            if not self.accepting:
                self._close()
            else:
                self._idle_since = self.loop.time()

    # -- connection ------------------------------------------------------------------------------------
    async def connect(self) -> None:
        route = self.pool.route
        try:
            h = self.host
            await dial(
                self.loop, lambda: self, h.address, h.port, route.tls, "h2", route.connect_timeout, route.via
            )
        except ssl.SSLError as exc:
            # A failed handshake is a failed connection: retried elsewhere, reported to outlier detection.
            route.stats.tls_errors.inc()
            self._fail(CONNECT_ERROR, failure_reason(exc))
        except (OSError, TimeoutError):
            self._fail(CONNECT_ERROR)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not registered as asyncio.Transport subclasses: no isinstance check.
        self.transport = cast("asyncio.Transport", transport)
        codec.start(self.h2)
        self.flush()
        idle = self.pool.route.idle_timeout
        if idle:
            self._idle_since = self.loop.time()
            self._idle_timer = self.loop.call_later(idle, self._check_idle)

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except H2Error:
            # A broken upstream: h2 queued a GOAWAY naming the error.
            self.flush()
            self._fail("upstream protocol error")
            return
        streams = self.streams
        for ev in events:
            if type(ev) is DataReceived:
                s = streams.get(ev.stream_id)
                if s is not None:
                    s.on_response_data(ev.data, ev.flow_controlled_length, ev.stream_ended)
                else:
                    self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif type(ev) is ResponseReceived:
                s = streams.get(ev.stream_id)
                if s is not None:
                    s.on_response(ev.headers, ev.stream_ended)
            elif type(ev) is StreamEnded:
                s = streams.get(ev.stream_id)
                if s is not None:
                    s.on_response_end()
            elif type(ev) is TrailersReceived:
                s = streams.get(ev.stream_id)
                if s is not None:
                    s.on_response_trailers(ev.headers)
            elif type(ev) is WindowUpdated:
                if ev.stream_id:
                    self.unblock(streams.get(ev.stream_id))
                else:
                    self.unblock_all()
            elif type(ev) is StreamReset:
                s = streams.get(ev.stream_id)
                if s is not None:
                    s.on_upstream_reset(ev.error_code)
            elif type(ev) is RemoteSettingsChanged:
                self._settings(ev)
            elif type(ev) is ConnectionTerminated:
                self._goaway(ev)
        # Written once every connection readable in this loop iteration was read: one write per
        # connection for all of them, rather than one per read.
        self.schedule_flush()

    def _settings(self, ev: RemoteSettingsChanged) -> None:
        if not self.ready:
            self.ready = True
            waiting = self.waiting
            self.waiting = []
            room = self.limit()
            for stream in waiting:
                if len(self.streams) < room:
                    self._open(stream)
                else:
                    # The peer allows fewer streams than we queued here: place the rest elsewhere.
                    stream.queued = None
                    self.pool.assign(stream.host or self.host, stream)
        elif SettingCodes.INITIAL_WINDOW_SIZE in ev.changed_settings:
            self.unblock_all()

    def _goaway(self, ev: ConnectionTerminated) -> None:
        self.pool.forget(self)
        self.accepting = False
        if ev.error_code:
            self._fail("upstream closed the connection")
            return
        last = ev.last_stream_id or 0
        for sid, stream in list(self.streams.items()):
            if sid > last:
                # Never processed by the peer: safe to retry anywhere (RFC 9113 §6.8).
                stream.on_upstream_reset(ErrorCodes.REFUSED_STREAM)
        if not self.streams:
            self._close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.closed:
            self._fail("upstream connection closed")

    def _fail(self, message: str, failure: str | None = None) -> None:
        """The connection is unusable: every stream on it (or waiting for it) learns so (``failure``: why
        its TLS handshake failed)."""
        first = not self.closed
        self.closed = True
        self.accepting = False
        self.pool.forget(self)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if first and (not self.ready or self.streams):
            # Connection failures and losses under load count against the host (outlier detection).
            self.pool.route.cluster.report_failure(self.host)
            if not self.ready:
                self.pool.route.stats.connect_failures.inc()
        waiting = self.waiting
        self.waiting = []
        streams = list(self.streams.values())
        self.streams.clear()
        for stream in waiting:
            stream.queued = None
            stream.upstream_failed(message, failure)
        for stream in streams:
            stream.upstream_failed(message)
        if self.transport is not None:
            self.transport.close()

    def _close(self) -> None:
        """Close an unused connection politely."""
        if self.closed:
            return
        self.closed = True
        self.accepting = False
        self.pool.forget(self)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        transport = self.transport
        if transport is not None:
            self.flush()
            transport.write(codec.goaway_frame(0))
            transport.close()

    def _check_idle(self) -> None:
        self._idle_timer = None
        idle = self.pool.route.idle_timeout
        if self.closed or not idle:
            return
        now = self.loop.time()
        if not self.streams and not self.waiting and now - self._idle_since >= idle:
            self._close()
            return
        due = idle if self.streams else max(idle - (now - self._idle_since), 0.01)
        self._idle_timer = self.loop.call_later(due, self._check_idle)


class UpstreamPool:
    """The upstream connections of one route, per host."""

    def __init__(self, route: Route, batch: FlushBatch) -> None:
        self.route = route
        #: Shared with the route's client connections: a stream's frames both ways go out in one flush.
        self.batch = batch
        self.conns: dict[Host, list[UpstreamConnection]] = {}
        #: gRPC status class counters (egress only), bound once.
        self.grpc_status: dict[str, Counter] | None = None
        if route.direction == "egress" and route.app_protocol == "grpc":
            self.grpc_status = grpc_status_counters(route.name)

    def assign(self, host: Host, stream: UpstreamStream) -> None:
        """Open ``stream`` on a connection to ``host`` with room, or on a new one."""
        conns = self.conns.get(host)
        if conns is None:
            conns = self.conns[host] = []
        for conn in conns:
            if conn.has_room():
                conn.add(stream)
                return
        conn = UpstreamConnection(self, host)
        conns.append(conn)
        conn.add(stream)
        conn.loop.create_task(conn.connect())

    def forget(self, conn: UpstreamConnection) -> None:
        """``conn`` takes no new streams."""
        conns = self.conns.get(conn.host)
        if conns is not None and conn in conns:
            conns.remove(conn)


_GRPC_CLASS_NAMES: Final = {
    "ok": ("GrpcCode_Target_OK_Count", "gRPC calls ending with grpc-status OK."),
    "client": (
        "GrpcCode_Target_ClientError_Count",
        "gRPC calls ending with a client-side status (CANCELLED, INVALID_ARGUMENT, NOT_FOUND …).",
    ),
    "server": (
        "GrpcCode_Target_ServerError_Count",
        "gRPC calls ending with a server-side status (UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL …).",
    ),
}


def grpc_status_counters(target: str) -> dict[str, Counter]:
    """The egress gRPC status-class counters of one endpoint (label ``TargetDiscoveryName``)."""
    out: dict[str, Counter] = {}
    for key, (name, help_text) in _GRPC_CLASS_NAMES.items():
        c = REGISTRY.child(name, "counter", help_text, "TargetDiscoveryName", target)
        assert isinstance(c, Counter)
        out[key] = c
    return out
