"""The downstream side of an http2/grpc listener: HTTP/2 with prior knowledge, or HTTP/1.1 handed over.

The first bytes decide: the HTTP/2 connection preface makes this an HTTP/2 connection; anything else is an
HTTP/1.1 client, whose connection (with the bytes already read) is handed to the HTTP/1.1 protocol.

Limits: at most :data:`~sc_proxy.http2.codec.MAX_CONCURRENT_STREAMS` concurrent streams and
``limits.maxHeaderBytes`` of header list (the codec answers a violation with GOAWAY PROTOCOL_ERROR /
ENHANCE_YOUR_CALM; both are counted as rejected), ``limits.maxHeaderCount`` header fields (RST_STREAM), and
the flood defences of ``limits.http2`` (:mod:`~sc_proxy.http2.guard`, GOAWAY ENHANCE_YOUR_CALM), each
counted in ``ProtectionTriggeredCount``. A client that does not read what the proxy writes (the socket's
write buffer over its high-water mark) is not read from either, and is closed when the buffer has not
shrunk for ``limits.http2.unreadTimeoutSeconds``. Drain sends GOAWAY (NO_ERROR, the last stream seen), lets
open streams finish, refuses newer ones with REFUSED_STREAM and closes when the last one ends. A connection
with no stream for ``route.idle_timeout`` is closed the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, Final, cast

from sc_proxy.http2 import codec
from sc_proxy.http2.errors import ErrorCodes, H2Error, LimitExceeded
from sc_proxy.http2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    RequestReceived,
    RequestRefused,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from sc_proxy.http2.frames import SettingCodes
from sc_proxy.http2.guard import UNREAD_ANSWERS
from sc_proxy.http2.side import FlushBatch, H2Side
from sc_proxy.http2.stream import ProxyStream
from sc_proxy.metrics import REGISTRY, Counter, protection_counter
from sc_proxy.tls import peer_identity

if TYPE_CHECKING:
    from collections.abc import Callable

    from sc_proxy.http2.deadlines import Deadlines
    from sc_proxy.http2.interfaces import Pool
    from sc_proxy.route import Route

_HTTP1_NOT_AVAILABLE: Final = (
    b"HTTP/1.1 505 HTTP Version Not Supported\r\ncontent-type: text/plain\r\ncontent-length: 49\r\n"
    b"connection: close\r\nserver: envoy\r\n\r\nthis endpoint speaks HTTP/2 with prior knowledge\n"
)


def _http1_factory() -> Callable[[Route], asyncio.Protocol] | None:
    try:
        from sc_proxy.http1 import http1_protocol_factory  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return None
    return http1_protocol_factory  # type: ignore[no-any-return,unused-ignore]


def grpc_request_counter(discovery_name: str) -> Counter:
    """``GrpcRequestCount`` of one served grpc endpoint (Service Connect metric, label ``DiscoveryName``)."""
    c = REGISTRY.child(
        "GrpcRequestCount", "counter", "gRPC requests received.", "DiscoveryName", discovery_name
    )
    assert isinstance(c, Counter)
    return c


class H2ServerProtocol(H2Side):
    """One client connection on an http2/grpc listener (ingress or egress)."""

    def __init__(
        self,
        route: Route,
        pool: Pool,
        batch: FlushBatch,
        deadlines: Deadlines,
        grpc_requests: Counter | None,
    ) -> None:
        """``pool``, ``batch``, ``deadlines`` and ``grpc_requests`` are shared by the route's connections."""
        super().__init__(batch)
        self.route = route
        self.pool = pool
        self.grpc_requests = grpc_requests
        self.streams: dict[int, ProxyStream] = {}
        self.deadlines = deadlines
        self.h2 = codec.server_connection(route.limits.max_header_bytes, route.limits)
        self._started = False  # preface seen
        self._buf = b""
        self._goaway_last: int | None = None
        self._closing = False
        self._counted = False
        self._timer: asyncio.TimerHandle | None = None
        self._idle_since = 0.0
        # Reading paused because the client does not read: the check, and the buffer size it last saw.
        self._unread_timer: asyncio.TimerHandle | None = None
        self._unread_size = 0
        self.peer = "-"  # the caller's mutual-TLS identity (access log)

    # -- connection ------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not registered as asyncio.Transport subclasses: no isinstance check.
        self.transport = cast("asyncio.Transport", transport)
        if self.route.caller_identity:
            self.peer = peer_identity(transport) or "-"
        self._timer = self.loop.call_later(self.route.limits.header_timeout_seconds, self._preface_timeout)

    def _preface_timeout(self) -> None:
        self._timer = None
        if not self._started and self.transport is not None:
            self.route.stats.rejected.inc()
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._started:
            self._receive(data)
            return
        buf = self._buf + data
        if not codec.is_preface_prefix(buf):
            self._hand_to_http1(buf)
            return
        if len(buf) < len(codec.PREFACE):
            self._buf = buf
            return
        self._buf = b""
        self._start()
        self._receive(buf)

    def _start(self) -> None:
        self._started = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        stats = self.route.stats
        stats.new_connections.inc()
        stats.active_connections.inc()
        self._counted = True
        codec.start(self.h2)
        self.flush()
        self.route.lifecycle.register(self)
        idle = self.route.idle_timeout
        if idle:
            self._idle_since = self.loop.time()
            self._timer = self.loop.call_later(idle, self._check_idle)

    def _hand_to_http1(self, buf: bytes) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        transport = self.transport
        assert transport is not None
        factory = _http1_factory()
        if factory is None:
            transport.write(_HTTP1_NOT_AVAILABLE)
            transport.close()
            return
        proto = factory(self.route)
        self.transport = None
        transport.set_protocol(proto)
        proto.connection_made(transport)
        proto.data_received(buf)

    def _receive(self, data: bytes) -> None:
        h2 = self.h2
        try:
            events = h2.receive_data(data)
        except H2Error as exc:
            # Broken or hostile client (bad frames, too many streams, oversized headers, a flood): the codec
            # queued a GOAWAY with the matching error code.
            self.route.stats.rejected.inc()
            if isinstance(exc, LimitExceeded):
                protection_counter(exc.protection).inc()
            self.flush()
            transport = self.transport
            if transport is not None:
                # A client that does not read would hold a graceful close (and its buffer) forever.
                if self.paused:
                    transport.abort()
                else:
                    transport.close()
            return
        streams = self.streams
        for ev in events:
            if type(ev) is DataReceived:
                s = streams.get(ev.stream_id)
                if s is not None:
                    s.on_request_data(ev.data, ev.flow_controlled_length, ev.stream_ended)
                else:
                    h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif type(ev) is RequestReceived:
                self._request(ev)
            elif type(ev) is StreamEnded:
                s = streams.get(ev.stream_id)
                if s is not None:
                    s.on_request_end()
            elif type(ev) is TrailersReceived:
                s = streams.get(ev.stream_id)
                if s is not None:
                    s.req_trailers = ev.headers
            elif type(ev) is WindowUpdated:
                if ev.stream_id:
                    self.unblock(streams.get(ev.stream_id))
                else:
                    self.unblock_all()
            elif type(ev) is StreamReset:
                s = streams.get(ev.stream_id)
                if s is not None:
                    s.on_downstream_reset(ev.error_code)
            elif type(ev) is RemoteSettingsChanged:
                if SettingCodes.INITIAL_WINDOW_SIZE in ev.changed_settings:
                    self.unblock_all()
            elif type(ev) is ConnectionTerminated:
                # The client is leaving: no new streams; finish (or, after an error, drop) the others.
                self._closing = True
                if ev.error_code:
                    self.abort()
                    return
            elif type(ev) is RequestRefused:
                protection_counter(ev.protection).inc()
        # Written once every connection readable in this loop iteration was read: one write per
        # connection for all of them, rather than one per read.
        self.schedule_flush()
        if self._closing and not self.streams:
            self._close()

    def _request(self, ev: Any) -> None:
        sid: int = ev.stream_id
        route = self.route
        if self._goaway_last is not None and sid > self._goaway_last:
            # Opened after our GOAWAY: the client retries it on a new connection.
            self.h2.reset_stream(sid, ErrorCodes.REFUSED_STREAM)
            return
        route.stats.request_count.inc()
        stream = ProxyStream(self, sid, ev.headers, route, self.pool)
        if stream.grpc and self.grpc_requests is not None:
            self.grpc_requests.inc()
        self.streams[sid] = stream
        stream.begin()

    def stream_done(self, sid: int) -> None:
        self.streams.pop(sid, None)
        if not self.streams:
            self._idle_since = self.loop.time()
            if self._closing:
                self.schedule_flush()
                self.loop.call_soon(self._close_if_empty)

    def _close_if_empty(self) -> None:
        if not self.streams:
            self._close()

    def _close(self) -> None:
        transport = self.transport
        if transport is not None:
            self.flush()
            transport.close()

    def _check_idle(self) -> None:
        self._timer = None
        idle = self.route.idle_timeout
        if not idle or self.transport is None:
            return
        now = self.loop.time()
        if not self.streams and now - self._idle_since >= idle:
            self.drain()
            return
        due = idle if self.streams else max(idle - (now - self._idle_since), 0.01)
        self._timer = self.loop.call_later(due, self._check_idle)

    # -- a client that does not read ----------------------------------------------------------------------
    def flush(self) -> None:
        super().flush()
        if not self.paused:
            # Everything written is in the kernel's hands: the answers queued so far count as taken.
            self.h2.answers_delivered()

    def pause_writing(self) -> None:
        super().pause_writing()
        transport = self.transport
        if transport is None:
            return
        # Back-pressure: what the client sends next (PINGs, SETTINGS, requests) waits in its own socket
        # until it reads what the proxy already answered.
        transport.pause_reading()
        if self._unread_timer is None:
            self._unread_size = transport.get_write_buffer_size()
            self._unread_timer = self.loop.call_later(
                self.route.limits.http2.unread_timeout_seconds, self._check_unread
            )

    def resume_writing(self) -> None:
        if self._unread_timer is not None:
            self._unread_timer.cancel()
            self._unread_timer = None
        transport = self.transport
        if transport is not None:
            with contextlib.suppress(RuntimeError):  # already closing
                transport.resume_reading()
        self.h2.answers_delivered()
        super().resume_writing()

    def _check_unread(self) -> None:
        self._unread_timer = None
        transport = self.transport
        if transport is None or not self.paused:
            return
        size = transport.get_write_buffer_size()
        if size < self._unread_size:
            # The client reads, slowly: give it another period.
            self._unread_size = size
            self._unread_timer = self.loop.call_later(
                self.route.limits.http2.unread_timeout_seconds, self._check_unread
            )
            return
        protection_counter(UNREAD_ANSWERS).inc()
        self.route.stats.rejected.inc()
        transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._unread_timer is not None:
            self._unread_timer.cancel()
            self._unread_timer = None
        for stream in list(self.streams.values()):
            stream.downstream_lost()
        self.streams.clear()
        if self._counted:
            self._counted = False
            self.route.stats.active_connections.dec()
            self.route.lifecycle.unregister(self)

    # -- Drainable -------------------------------------------------------------------------------------
    def drain(self) -> None:
        """GOAWAY: no new streams; close once the open ones finished."""
        transport = self.transport
        if transport is None:
            return
        if not self._started:
            transport.close()
            return
        if self._goaway_last is None:
            self._goaway_last = self.h2.highest_inbound_stream_id
            self.flush()
            transport.write(codec.goaway_frame(self._goaway_last))
        self._closing = True
        if not self.streams:
            self._close()

    def abort(self) -> None:
        transport = self.transport
        if transport is not None:
            transport.abort()
