"""TCP relay (appProtocol unset): one upstream connection per downstream connection.

- back-pressure: when one side's write buffer passes its high-water mark, reading from the other side pauses
  until it drains (asyncio's ``pause_writing``/``resume_writing`` callbacks drive it);
- half-close: EOF from one side becomes ``write_eof`` on the other; the pair closes when both sides have
  finished or either side closes;
- connect retries: up to ``route.retries`` more attempts, each to a host that has not failed for this
  connection yet while there is one (:meth:`~sc_proxy.cluster.Cluster.pick_retry`); every failure feeds
  outlier detection;
- idle timeout: no byte either way for ``route.idle_timeout`` seconds closes both sides.

For TCP a "request" is a connection; ``response_time_ms`` records the time to connect upstream.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import cast

from sc_proxy.accesslog import AccessRecord
from sc_proxy.cluster import Host
from sc_proxy.route import Route
from sc_proxy.tls import dial, failure_reason, peer_identity


class _UpstreamSide(asyncio.Protocol):
    """The upstream half; forwards everything to the relay."""

    __slots__ = ("relay",)

    def __init__(self, relay: TcpRelay) -> None:
        self.relay = relay

    def data_received(self, data: bytes) -> None:
        self.relay.upstream_data(data)

    def eof_received(self) -> bool:
        return self.relay.upstream_eof()

    def connection_lost(self, exc: Exception | None) -> None:
        self.relay.upstream_lost()

    def pause_writing(self) -> None:
        self.relay.down_pause()

    def resume_writing(self) -> None:
        self.relay.down_resume()


class TcpRelay(asyncio.Protocol):
    """The downstream half and the relay state."""

    __slots__ = (
        "_bytes_down",
        "_bytes_up",
        "_closed",
        "_down_eof",
        "_failure",
        "_idle_handle",
        "_last",
        "_loop",
        "_pending",
        "_start",
        "_up_eof",
        "down",
        "host",
        "peer",
        "route",
        "up",
    )  # fmt: skip

    def __init__(self, route: Route) -> None:
        self.route = route
        self.down: asyncio.Transport | None = None
        self.up: asyncio.Transport | None = None
        self.host: Host | None = None
        self._loop = asyncio.get_running_loop()
        self._closed = False
        self._down_eof = False
        self._up_eof = False
        self._bytes_up = 0  # client -> upstream
        self._bytes_down = 0  # upstream -> client
        self._last = 0.0
        self._start = 0.0
        self._idle_handle: asyncio.TimerHandle | None = None
        # Client bytes that arrived before the upstream connected (uvloop may deliver data even when
        # reading was paused in connection_made).
        self._pending: list[bytes] | None = []
        self._failure: str | None = None  # the last failed TLS handshake with a task (access log)
        self.peer = "-"  # the caller's mutual-TLS identity (access log)

    # -- downstream callbacks -------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self.down = transport
        self._start = time.time()
        self._last = self._loop.time()
        stats = self.route.stats
        stats.new_connections.inc()
        stats.active_connections.inc()
        stats.request_count.inc()
        if self.route.caller_identity:
            self.peer = peer_identity(transport) or "-"
        self.route.lifecycle.register(self)
        if self._closed:  # accepted while draining: nothing to serve
            return
        # Nothing to forward to yet: leave client bytes in the kernel until the upstream is connected.
        transport.pause_reading()
        if self.route.idle_timeout:
            self._idle_handle = self._loop.call_later(self.route.idle_timeout, self._check_idle)
        self._loop.create_task(self._connect())

    def data_received(self, data: bytes) -> None:
        self._last = self._loop.time()
        n = len(data)
        self._bytes_up += n
        self.route.stats.processed_bytes.inc(n)
        up = self.up
        if up is not None:
            up.write(data)
        elif self._pending is not None:
            self._pending.append(data)
            if self.down is not None:
                self.down.pause_reading()

    def eof_received(self) -> bool:
        self._down_eof = True
        up = self.up
        if up is not None and up.can_write_eof():
            up.write_eof()
        if self._up_eof:
            self._close()
            return False
        return True  # keep the downstream open for the rest of the upstream's answer

    def connection_lost(self, exc: Exception | None) -> None:
        self._close()

    def pause_writing(self) -> None:
        # The client is slow: stop reading from the upstream.
        up = self.up
        if up is not None:
            up.pause_reading()

    def resume_writing(self) -> None:
        up = self.up
        if up is not None and not self._up_eof:
            up.resume_reading()

    # -- upstream side --------------------------------------------------------------------------------
    def upstream_data(self, data: bytes) -> None:
        self._last = self._loop.time()
        n = len(data)
        self._bytes_down += n
        self.route.stats.processed_bytes.inc(n)
        down = self.down
        if down is not None:
            down.write(data)

    def upstream_eof(self) -> bool:
        self._up_eof = True
        down = self.down
        if down is not None and down.can_write_eof():
            down.write_eof()
        if self._down_eof:
            self._close()
            return False
        return True

    def upstream_lost(self) -> None:
        self._close()

    def down_pause(self) -> None:
        down = self.down
        if down is not None:
            down.pause_reading()

    def down_resume(self) -> None:
        down = self.down
        if down is not None and not self._down_eof:
            down.resume_reading()

    # -- connecting -----------------------------------------------------------------------------------
    async def _connect(self) -> None:
        route = self.route
        cluster = route.cluster
        stats = route.stats
        failed: frozenset[Host] = frozenset()
        host: Host | None = None
        for attempt in range(1 + route.retries):
            host = cluster.pick() if host is None else cluster.pick_retry(failed, host)
            if host is None:
                break
            if attempt:
                stats.retries.inc()
            t0 = self._loop.time()
            try:
                transport = cast(
                    asyncio.Transport,
                    await dial(
                        self._loop,
                        lambda: _UpstreamSide(self),
                        host.address,
                        host.port,
                        route.tls,
                        None,
                        route.connect_timeout,
                        route.via,
                    ),
                )
            except (OSError, TimeoutError, ValueError) as exc:
                if isinstance(exc, ssl.SSLError):
                    # A failed handshake is a failed connection: retried, reported to outlier detection.
                    stats.tls_errors.inc()
                    self._failure = failure_reason(exc)
                # ValueError: an address the socket layer refuses; treated like any failed attempt.
                stats.connect_failures.inc()
                cluster.report_failure(host)
                failed = failed | {host}
                if self._closed:
                    return
                continue
            stats.response_time_ms.observe((self._loop.time() - t0) * 1000.0)
            if self._closed:
                transport.close()
                return
            self.up = transport
            self.host = host
            pending, self._pending = self._pending, None
            if pending:
                transport.write(b"".join(pending))
            if self._down_eof:
                if transport.can_write_eof():
                    transport.write_eof()
            elif self.down is not None:
                self.down.resume_reading()
            return
        # No task reachable: close the client connection (as Envoy's tcp_proxy does).
        self._close()

    # -- timers and closing ---------------------------------------------------------------------------
    def _check_idle(self) -> None:
        idle = self.route.idle_timeout
        if self._closed or not idle:
            return
        due = self._last + idle
        now = self._loop.time()
        if now >= due:
            self.route.stats.timeouts.inc()
            self._close()
        else:
            self._idle_handle = self._loop.call_at(due, self._check_idle)

    def drain(self) -> None:
        # A TCP stream has no request boundary: it keeps flowing until the drain time is over.
        if self.up is None:
            self._close()

    def abort(self) -> None:
        for t in (self.down, self.up):
            if t is not None:
                t.abort()
        self._close()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._idle_handle is not None:
            self._idle_handle.cancel()
        # close() flushes what is buffered, then closes.
        for t in (self.down, self.up):
            if t is not None:
                t.close()
        route = self.route
        route.stats.active_connections.dec()
        route.lifecycle.unregister(self)
        log = route.access_log
        if log is not None:
            log.log(
                AccessRecord(
                    start_time=self._start,
                    direction=route.direction,
                    name=route.name,
                    protocol="TCP",
                    bytes_received=self._bytes_up,
                    bytes_sent=self._bytes_down,
                    duration_ms=int((time.time() - self._start) * 1000),
                    upstream_host=str(self.host) if self.host else "-",
                    response_flags="-" if self.host else "UF",
                    transport_failure=self._failure if self._failure and not self.host else "-",
                    peer_identity=self.peer,
                )
            )
